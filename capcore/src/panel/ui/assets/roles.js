// Roles and the permission matrix: a row for each permission (by category, with what it
// allows), a column for each role. A role changes only as far as the admin's own permissions
// reach; built-in roles keep their names and permissions.
import { adminPage, allRoles, api, busy, confirming, el } from "/assets/api.js";

const $ = (x) => document.getElementById(x);
let me = null;
let roles = [];
let catalogue = [];
let editing = null;
// The ticked permissions of each role (by id), saved or not.
const draft = new Map();
const may = (p) => me.permissions.includes(p);
const held = (p) => me.permissions.includes(p);
const titleCase = (s) => s.charAt(0) + s.slice(1).toLowerCase();

// Why the admin cannot change a role's permissions, or "" when they can.
function locked(role) {
  if (!may("USER_PERMISSIONS")) return "changing roles needs USER_PERMISSIONS";
  if (role.builtin) return "built in";
  if (!role.permissions.every(held)) return "holds permissions you do not";
  return "";
}

const dirty = (role) => {
  const d = draft.get(role.id);
  return d.size !== role.permissions.length || role.permissions.some((p) => !d.has(p));
};

function roleRow(role) {
  const actions = el("td", { class: "actions" });
  if (may("USER_PERMISSIONS")) {
    const rename = el("button", { type: "button", class: "small secondary", text: role.builtin ? "Edit" : "Rename", "aria-label": `Rename ${role.name}` });
    rename.addEventListener("click", () => openEditor(role));
    actions.append(rename);
    if (!role.builtin) {
      const remove = el("button", { type: "button", class: "small danger", text: "Delete", "aria-label": `Delete ${role.name}` });
      confirming(remove, "Confirm delete", () => busy(remove, $("list-error"), async () => {
        await api("DELETE", `/api/roles/${encodeURIComponent(role.id)}`);
        draft.delete(role.id);
        if (editing?.id === role.id) closeEditor();
        await load();
        $("status").textContent = `Deleted the role ${role.name}.`;
      }));
      actions.append(" ", remove);
    }
  }
  return el("tr", { "data-id": role.id },
    el("td", {}, el("strong", { text: role.name }), role.builtin ? el("span", { class: "cell-note", text: "built in" }) : ""),
    el("td", { text: role.description || "–" }),
    el("td", { class: "num", text: `${role.permissions.length} of ${catalogue.length}` }),
    actions);
}

function renderList() {
  $("roles").replaceChildren(...(roles.length ? roles.map(roleRow)
    : [el("tr", {}, el("td", { colspan: "4", class: "empty", text: "There are no roles." }))]));
}

function renderMatrix() {
  const head = el("tr", {}, el("th", { scope: "col", class: "perm", text: "Permission" }));
  for (const role of roles) {
    const why = locked(role);
    const th = el("th", { scope: "col", class: "role" }, el("span", { class: "role-name", text: role.name }));
    if (why) {
      th.append(el("span", { class: "cell-note", text: why }));
    } else {
      const save = el("button", { type: "button", class: "small", "data-save": role.id, text: "Save", "aria-label": `Save the permissions of ${role.name}` });
      save.disabled = !dirty(role);
      th.append(save);
    }
    head.append(th);
  }
  $("matrix-head").replaceChildren(head);
  const rows = [];
  const categories = [...new Set(catalogue.map((p) => p.category))];
  for (const category of categories) {
    rows.push(el("tr", { class: "category" }, el("th", { scope: "colgroup", colspan: String(roles.length + 1), text: titleCase(category) })));
    for (const p of catalogue.filter((x) => x.category === category)) {
      const name = el("th", { scope: "row", class: "perm" }, el("code", { text: p.name }),
        p.server_scoped ? el("span", { class: "tag", text: "per server" }) : "",
        el("span", { class: "cell-note", text: p.description }));
      const row = el("tr", {}, name);
      for (const role of roles) {
        const box = el("input", { type: "checkbox", "data-role": role.id, "data-permission": p.name, "aria-label": `${role.name}: ${p.name}` });
        box.checked = draft.get(role.id).has(p.name);
        box.disabled = Boolean(locked(role)) || !held(p.name);
        if (!held(p.name) && !locked(role)) box.title = "You do not hold this permission";
        row.append(el("td", { class: "cell" }, box));
      }
      rows.push(row);
    }
  }
  $("matrix-body").replaceChildren(...rows);
}

function saveButton(roleId) {
  return [...$("matrix-head").querySelectorAll("button")].find((b) => b.dataset.save === roleId);
}

$("matrix-body").addEventListener("change", (event) => {
  const box = event.target;
  if (!box.matches("input[type=checkbox]")) return;
  const role = roles.find((r) => r.id === box.dataset.role);
  if (!role) return;
  const d = draft.get(role.id);
  if (box.checked) d.add(box.dataset.permission);
  else d.delete(box.dataset.permission);
  box.parentElement.classList.toggle("changed", box.checked !== role.permissions.includes(box.dataset.permission));
  $("matrix-saved").textContent = "";
  const save = saveButton(role.id);
  if (save) save.disabled = !dirty(role);
});

$("matrix-head").addEventListener("click", (event) => {
  const save = event.target.closest("button[data-save]");
  if (!save) return;
  const role = roles.find((r) => r.id === save.dataset.save);
  $("matrix-saved").textContent = "";
  busy(save, $("matrix-error"), async () => {
    // In catalogue order, as the API lists them.
    const permissions = catalogue.map((p) => p.name).filter((p) => draft.get(role.id).has(p));
    const saved = await api("PATCH", `/api/roles/${encodeURIComponent(role.id)}`, { permissions });
    Object.assign(role, saved);
    draft.set(role.id, new Set(saved.permissions));
    for (const cell of $("matrix-body").querySelectorAll("td.changed")) {
      if (cell.firstChild.dataset.role === role.id) cell.classList.remove("changed");
    }
    renderList();
    $("matrix-saved").textContent = `Saved the permissions of ${role.name}.`;
  }).finally(() => { save.disabled = !dirty(role); });
});

function openEditor(role) {
  editing = role;
  $("editor-h").textContent = `Edit the role ${role.name}`;
  $("edit-name").value = role.name;
  $("edit-name").disabled = role.builtin;
  $("edit-description").value = role.description;
  $("edit-builtin").hidden = !role.builtin;
  $("edit-error").textContent = "";
  $("edit-name").removeAttribute("aria-invalid");
  $("editor").hidden = false;
  (role.builtin ? $("edit-description") : $("edit-name")).focus();
}

function closeEditor() {
  const id = editing?.id;
  editing = null;
  $("editor").hidden = true;
  const row = [...$("roles").querySelectorAll("tr")].find((r) => r.dataset.id === id);
  row?.querySelector("button")?.focus();
}

$("edit-close").addEventListener("click", closeEditor);
$("editor").addEventListener("keydown", (event) => { if (event.key === "Escape") closeEditor(); });

$("edit-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const role = editing;
  busy($("edit-save"), $("edit-error"), async () => {
    const body = {};
    const name = $("edit-name").value.trim();
    const description = $("edit-description").value.trim();
    if (!role.builtin && name !== role.name) body.name = name;
    if (description !== role.description) body.description = description;
    if (!Object.keys(body).length) {
      closeEditor();
      return;
    }
    try {
      await api("PATCH", `/api/roles/${encodeURIComponent(role.id)}`, body);
    } catch (e) {
      $("edit-name").setAttribute("aria-invalid", String(/^name:|role with that name/.test(e.message)));
      throw e;
    }
    await load();
    closeEditor();
    $("status").textContent = `Saved the role ${name}.`;
  });
});

function showForm(show) {
  $("role-form").hidden = !show;
  $("new-role").setAttribute("aria-expanded", String(show));
  (show ? $("new-name") : $("new-role")).focus();
}

$("new-role").addEventListener("click", () => showForm($("role-form").hidden));
$("new-cancel").addEventListener("click", () => showForm(false));

$("role-form").addEventListener("submit", (event) => {
  event.preventDefault();
  busy($("new-create"), $("new-error"), async () => {
    const name = $("new-name").value.trim();
    $("new-name").setAttribute("aria-invalid", String(!name));
    if (!name) throw new Error("Enter the role's name.");
    try {
      await api("POST", "/api/roles", { name, description: $("new-description").value.trim(), permissions: [] });
    } catch (e) {
      $("new-name").setAttribute("aria-invalid", String(/^name:|role with that name/.test(e.message)));
      throw e;
    }
    event.target.reset();
    showForm(false);
    await load();
    $("status").textContent = `Created the role ${name}: tick its permissions in the matrix.`;
  });
});

// Reads the roles again, keeping unsaved ticks of roles that are still there.
async function load() {
  roles = await allRoles();
  for (const role of roles) if (!draft.has(role.id)) draft.set(role.id, new Set(role.permissions));
  renderList();
  renderMatrix();
}

// A field marked invalid is unmarked as soon as it is changed.
$("content").addEventListener("input", (event) => event.target.removeAttribute?.("aria-invalid"));

async function main() {
  me = await adminPage("USER_VIEW", "see roles");
  if (!me) return;
  catalogue = await api("GET", "/api/permissions");
  await load();
  $("new-role").hidden = !may("USER_PERMISSIONS");
  $("status").textContent = "";
  $("content").hidden = false;
}

main().catch((e) => { $("status").textContent = ""; $("error").textContent = e.message || "The roles could not be loaded."; });
