// The users: who they are, their roles and two-factor state; new users, changes, roles given
// and taken (only roles whose permissions the admin holds), deletion.
import { adminPage, allRoles, api, busy, confirming, el, markField, query, when } from "/assets/api.js";

const $ = (x) => document.getElementById(x);
const PER_PAGE = 50;
let me = null;
let roles = [];
let users = [];
let page = 1;
let search = "";
let editing = null;
let boxes = 0;
const may = (p) => me.permissions.includes(p);

// Whether the admin may give `role`: it holds nothing they do not.
const grantable = (role) => role.permissions.every((p) => me.permissions.includes(p));

// A checkbox for each role, `held` ticked; roles the admin may not give are shown, not changeable.
function roleBoxes(container, held) {
  container.querySelectorAll("label, p").forEach((n) => n.remove());
  for (const role of roles) {
    const id = `role-box-${boxes++}`;
    const box = el("input", { type: "checkbox", id, value: role.name });
    box.checked = held.includes(role.name);
    box.disabled = !grantable(role);
    const label = el("label", { class: "check", for: id }, box, ` ${role.name}`);
    if (role.description) label.title = role.description;
    if (box.disabled) label.append(el("span", { class: "muted", text: " (holds permissions you do not)" }));
    container.append(label);
  }
  if (!roles.length) container.append(el("p", { class: "muted", text: "There are no roles." }));
}

const ticked = (container) => [...container.querySelectorAll("input[type=checkbox]:checked")].map((b) => b.value);

function row(u) {
  const actions = el("td", { class: "actions" });
  if (may("USER_UPDATE") || may("USER_PERMISSIONS") || may("USER_DELETE")) {
    const edit = el("button", { type: "button", class: "small secondary", text: "Edit", "aria-label": `Edit ${u.username}` });
    edit.addEventListener("click", () => openEditor(u));
    actions.append(edit);
  }
  return el("tr", { "data-id": u.id },
    el("td", { text: u.username }),
    el("td", { text: u.email }),
    el("td", { text: u.roles.join(", ") || "–" }),
    el("td", {}, el("span", { class: `pill ${u.totp_enabled ? "online" : ""}`, text: u.totp_enabled ? "On" : "Off" })),
    el("td", { text: u.disabled ? "Disabled" : "Active" }),
    el("td", { text: when(u.created_at) }),
    actions);
}

async function load() {
  const list = await api("GET", `/api/users${query({ page, per_page: PER_PAGE, q: search })}`);
  users = list.data;
  const empty = search ? "No user matches that search." : "There are no users.";
  $("users").replaceChildren(...(users.length ? users.map(row)
    : [el("tr", {}, el("td", { colspan: "7", class: "empty", text: empty }))]));
  const pages = Math.max(1, Math.ceil(list.total / PER_PAGE));
  $("pager").hidden = pages <= 1;
  $("page-info").textContent = `Page ${page} of ${pages} · ${list.total} users`;
  $("prev").disabled = page <= 1;
  $("next").disabled = page >= pages;
}

function openEditor(u) {
  editing = u;
  $("editor-h").textContent = `Edit ${u.username}`;
  $("edit-username").value = u.username;
  $("edit-email").value = u.email;
  $("edit-password").value = "";
  $("edit-disabled").checked = u.disabled;
  const self = u.id === me.id;
  $("edit-email").disabled = self;
  $("edit-password").disabled = self;
  $("edit-disabled").disabled = self;
  $("edit-self").hidden = !self;
  $("edit-form").hidden = !may("USER_UPDATE");
  $("roles-form").hidden = !may("USER_PERMISSIONS");
  roleBoxes($("edit-roles"), u.roles);
  $("delete").hidden = !may("USER_DELETE") || self;
  delete $("delete").dataset.armed;
  $("delete").textContent = "Delete user";
  for (const id of ["edit-error", "edit-saved", "roles-error", "roles-saved", "delete-error"]) $(id).textContent = "";
  markField("", { username: "edit-username", email: "edit-email", password: "edit-password" });
  $("editor").hidden = false;
  $("editor").focus();
  $("editor").scrollIntoView({ block: "start" });
}

function closeEditor() {
  const id = editing?.id;
  editing = null;
  $("editor").hidden = true;
  const edit = id && [...$("users").querySelectorAll("tr")].find((r) => r.dataset.id === id)?.querySelector("button");
  (edit || $("search")).focus();
}

// The edited user as now listed (after a save).
function refreshed(u) {
  editing = u;
  $("editor-h").textContent = `Edit ${u.username}`;
  return load();
}

$("edit-form").addEventListener("submit", (event) => {
  event.preventDefault();
  $("edit-saved").textContent = "";
  const u = editing;
  busy($("edit-save"), $("edit-error"), async () => {
    const body = {};
    const username = $("edit-username").value.trim();
    const email = $("edit-email").value.trim();
    const password = $("edit-password").value;
    if (username !== u.username) body.username = username;
    if (!$("edit-email").disabled && email !== u.email) body.email = email;
    if (!$("edit-password").disabled && password) body.password = password;
    if (!$("edit-disabled").disabled && $("edit-disabled").checked !== u.disabled) body.disabled = $("edit-disabled").checked;
    if (!Object.keys(body).length) {
      $("edit-saved").textContent = "Nothing changed.";
      return;
    }
    try {
      const saved = await api("PATCH", `/api/users/${encodeURIComponent(u.id)}`, body);
      markField("", { username: "edit-username", email: "edit-email", password: "edit-password" });
      $("edit-password").value = "";
      $("edit-saved").textContent = "Saved.";
      await refreshed(saved);
    } catch (e) {
      markField(e.message, { username: "edit-username", email: "edit-email", password: "edit-password" });
      throw e;
    }
  });
});

$("roles-form").addEventListener("submit", (event) => {
  event.preventDefault();
  $("roles-saved").textContent = "";
  const u = editing;
  busy($("roles-save"), $("roles-error"), async () => {
    const saved = await api("PUT", `/api/users/${encodeURIComponent(u.id)}/roles`, { roles: ticked($("edit-roles")) });
    roleBoxes($("edit-roles"), saved.roles);
    $("roles-saved").textContent = saved.roles.length ? `Roles saved: ${saved.roles.join(", ")}.` : "Roles saved: none.";
    await refreshed(saved);
  });
});

confirming($("delete"), "Confirm: delete this user", () => busy($("delete"), $("delete-error"), async () => {
  const u = editing;
  await api("DELETE", `/api/users/${encodeURIComponent(u.id)}`);
  editing = null;
  $("editor").hidden = true;
  await load();
  $("status").textContent = `Deleted ${u.username}.`;
  $("search").focus();
}));

$("edit-close").addEventListener("click", closeEditor);
$("editor").addEventListener("keydown", (event) => { if (event.key === "Escape") closeEditor(); });

function showForm(show) {
  $("user-form").hidden = !show;
  $("new-user").setAttribute("aria-expanded", String(show));
  if (show) {
    roleBoxes($("new-roles"), ["user"]);
    $("new-username").focus();
  } else {
    $("new-user").focus();
  }
}

$("new-user").addEventListener("click", () => showForm($("user-form").hidden));
$("new-cancel").addEventListener("click", () => showForm(false));

$("user-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const fields = { username: "new-username", email: "new-email", password: "new-password" };
  busy($("new-create"), $("new-error"), async () => {
    const body = { username: $("new-username").value.trim(), email: $("new-email").value.trim(), password: $("new-password").value };
    const missing = Object.entries(body).filter(([, v]) => !v).map(([k]) => k);
    markField(missing.length ? `${missing[0]}:` : "", fields);
    if (missing.length) throw new Error(`Enter the ${missing.join(", ")}.`);
    if (may("USER_PERMISSIONS")) body.roles = ticked($("new-roles"));
    try {
      const created = await api("POST", "/api/users", body);
      event.target.reset();
      showForm(false);
      await load();
      $("status").textContent = `Created ${created.username}.`;
    } catch (e) {
      markField(e.message, fields);
      throw e;
    }
  });
});

$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  search = $("search").value.trim();
  page = 1;
  busy(null, $("error"), load);
});
$("prev").addEventListener("click", () => { page--; busy(null, $("error"), load); });
$("next").addEventListener("click", () => { page++; busy(null, $("error"), load); });

// A field marked invalid is unmarked as soon as it is changed.
$("content").addEventListener("input", (event) => event.target.removeAttribute?.("aria-invalid"));

async function main() {
  me = await adminPage("USER_VIEW", "see users");
  if (!me) return;
  [roles] = await Promise.all([allRoles(), load()]);
  $("new-roles").hidden = !may("USER_PERMISSIONS");
  $("new-user").hidden = !may("USER_CREATE");
  $("status").textContent = "";
  $("content").hidden = false;
}

main().catch((e) => { $("status").textContent = ""; $("error").textContent = e.message || "The users could not be loaded."; });
