// A server's subusers: who else may use it and with which of the server's permissions (at most
// the caller's own, which the panel checks too).
import { api, busy, confirming, el, when } from "/assets/api.js";
import { loadServerPage, serverApi } from "/assets/serverpage.js";

const $ = (x) => document.getElementById(x);
let grantable = [];
let counter = 0;

// Checkboxes of the permissions the caller may grant, grouped by category, `held` ticked.
function permissionBoxes(container, held) {
  const groups = new Map();
  for (const p of grantable) {
    if (!groups.has(p.category)) groups.set(p.category, []);
    groups.get(p.category).push(p);
  }
  for (const [category, list] of groups) {
    const group = el("div", { class: "perm-group" }, el("p", { class: "perm-category", text: category.toLowerCase() }));
    for (const p of list) {
      const id = `perm-${counter++}`;
      const box = el("input", { type: "checkbox", id, value: p.name });
      box.checked = held.includes(p.name);
      group.append(el("label", { class: "check", for: id, title: p.description }, box, ` ${p.name}`));
    }
    container.append(group);
  }
}

const ticked = (container) => [...container.querySelectorAll("input[type=checkbox]:checked")].map((b) => b.value);

function card(sub) {
  const boxes = el("div", { class: "perm-boxes" });
  permissionBoxes(boxes, sub.permissions);
  const error = el("p", { class: "error", role: "alert" });
  const save = el("button", { type: "button", class: "small", text: "Save permissions" });
  save.addEventListener("click", () => busy(save, error, async () => {
    await api("PUT", serverApi(`/subusers/${encodeURIComponent(sub.user_id)}`), { permissions: ticked(boxes) });
    error.textContent = "";
    await load();
  }));
  const remove = el("button", { type: "button", class: "small danger", text: "Remove" });
  remove.setAttribute("aria-label", `Remove ${sub.username}`);
  confirming(remove, "Confirm remove", () => busy(remove, error, async () => {
    await api("DELETE", serverApi(`/subusers/${encodeURIComponent(sub.user_id)}`));
    await load();
  }));
  return el("section", { class: "card subuser", "aria-label": sub.username },
    el("h2", { text: sub.username }),
    el("p", { class: "muted", text: `${sub.email} · added ${when(sub.created_at)}` }),
    boxes, error, el("div", { class: "toolbar" }, save, remove));
}

async function load() {
  const subusers = await api("GET", serverApi("/subusers"));
  $("subusers").replaceChildren(...(subusers.length ? subusers.map(card)
    : [el("p", { class: "empty", text: "Nobody else has access to this server." })]));
}

$("subuser-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const email = $("subuser-email").value.trim();
  if (!email.includes("@")) {
    $("subuser-error").textContent = "Enter the email address of the account to add.";
    $("subuser-email").setAttribute("aria-invalid", "true");
    return;
  }
  $("subuser-email").removeAttribute("aria-invalid");
  busy($("subuser-add"), $("subuser-error"), async () => {
    await api("POST", serverApi("/subusers"), { email, permissions: ticked($("subuser-permissions")) });
    event.target.reset();
    await load();
  });
});

async function main() {
  const { permissions } = await loadServerPage();
  const catalogue = await api("GET", "/api/permissions");
  grantable = catalogue.filter((p) => p.server_scoped && permissions.includes(p.name));
  permissionBoxes($("subuser-permissions"), ["SERVER_VIEW", "SERVER_CONSOLE"]);
  await load();
  $("status").textContent = "";
}

main().catch((e) => { $("status").textContent = e.message || "The users could not be loaded."; });
