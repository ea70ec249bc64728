// Every server: its owner, node, template, state and limits, filtered by name, node, owner and
// state (the filters are in the address, so a filtered view can be linked), a page at a time.
import { api, busy, el, ensureSession, query, setupHeader, when } from "/assets/api.js";

const $ = (x) => document.getElementById(x);
const PER_PAGE = 50;
const FILTERS = { q: "filter-q", node_id: "filter-node", owner_id: "filter-owner", state: "filter-state" };
let me = null;
const nodes = new Map();
const users = new Map();
const templates = new Map();
const may = (p) => me.permissions.includes(p);

// The filters and page the address holds.
function fromUrl() {
  const params = new URLSearchParams(location.search);
  const f = {};
  for (const key of Object.keys(FILTERS)) f[key] = params.get(key) || "";
  f.page = Math.max(1, Number.parseInt(params.get("page") || "1", 10) || 1);
  return f;
}

// An option for a value the address names that the list does not have (so it stays chosen).
function ensureOption(select, value, text) {
  if (value && ![...select.options].some((o) => o.value === value)) select.append(el("option", { value, text }));
}

function fillForm(f) {
  ensureOption($("filter-node"), f.node_id, f.node_id);
  ensureOption($("filter-owner"), f.owner_id, users.get(f.owner_id)?.username ?? f.owner_id);
  for (const [key, input] of Object.entries(FILTERS)) $(input).value = f[key];
}

async function userName(id) {
  if (!users.has(id) && may("USER_VIEW")) {
    try {
      users.set(id, await api("GET", `/api/users/${encodeURIComponent(id)}`));
    } catch {
      users.set(id, null);
    }
  }
  return users.get(id)?.username;
}

const mib = (n) => (n === 0 ? "unlimited" : `${n} MiB`);

function row(s, owner) {
  const node = nodes.get(s.node_id);
  const template = templates.get(s.template_id);
  return el("tr", { "data-id": s.id },
    el("td", {}, el("a", { href: `/servers/${encodeURIComponent(s.id)}`, text: s.name }),
      s.description ? el("span", { class: "cell-note", text: s.description }) : ""),
    el("td", {}, owner ?? el("span", { class: "mono", text: s.owner_id })),
    el("td", {}, node ? el("a", { href: `/admin/nodes/${encodeURIComponent(s.node_id)}`, text: node.name })
      : el("span", { class: "mono", text: s.node_id }),
    node && !node.connected ? el("span", { class: "cell-note warn", text: "offline" }) : ""),
    el("td", {}, template ? el("a", { href: `/admin/templates/${encodeURIComponent(s.template_id)}`, text: template.spec.name })
      : el("span", { class: "mono", text: s.template_id })),
    el("td", {}, el("span", { class: "state", "data-state": s.state, text: s.state.replace("_", " ") })),
    el("td", { class: "num", text: mib(s.limits.memory_mb) }),
    el("td", { class: "num", text: s.limits.cpu_percent === 0 ? "unlimited" : `${s.limits.cpu_percent} %` }),
    el("td", { class: "num", text: mib(s.limits.disk_mb) }),
    el("td", { class: "when", text: when(s.created_at) }));
}

async function load() {
  const f = fromUrl();
  fillForm(f);
  const list = await api("GET", `/api/servers${query({ ...f, per_page: PER_PAGE })}`);
  const owners = await Promise.all(list.data.map((s) => userName(s.owner_id)));
  const filtered = Object.keys(FILTERS).some((k) => f[k]);
  const empty = filtered ? "No server matches these filters." : "There are no servers yet.";
  $("servers").replaceChildren(...(list.data.length ? list.data.map((s, i) => row(s, owners[i]))
    : [el("tr", {}, el("td", { colspan: "9", class: "empty" }, empty, " ",
      filtered ? el("a", { href: "/admin/servers", text: "Show all" })
        : may("SERVER_CREATE") ? el("a", { href: "/admin/servers/new", text: "Create one" }) : ""))]));
  const pages = Math.max(1, Math.ceil(list.total / PER_PAGE));
  $("count").textContent = `${list.total} server${list.total === 1 ? "" : "s"}${filtered ? " match" : ""}`;
  $("pager").hidden = pages <= 1 && f.page <= 1;
  $("page-info").textContent = `Page ${f.page} of ${pages}`;
  $("prev").disabled = f.page <= 1;
  $("next").disabled = f.page >= pages;
}

// Shows `f` and puts it in the address (a new history entry, so Back returns to the last view).
function go(f) {
  history.pushState(null, "", `/admin/servers${query(f)}`);
  return busy(null, $("error"), load);
}

$("filters").addEventListener("submit", (event) => {
  event.preventDefault();
  const f = {};
  for (const [key, input] of Object.entries(FILTERS)) f[key] = $(input).value.trim();
  go(f);
});
$("filter-clear").addEventListener("click", (event) => {
  event.preventDefault();
  go({});
});
// Choosing from a list filters at once.
for (const select of ["filter-node", "filter-owner", "filter-state"]) {
  $(select).addEventListener("change", () => $("filters").requestSubmit());
}
$("prev").addEventListener("click", () => { const f = fromUrl(); f.page--; go(f); });
$("next").addEventListener("click", () => { const f = fromUrl(); f.page++; go(f); });
addEventListener("popstate", () => busy(null, $("error"), load));

// The names of nodes, templates and users (what the caller may read), for the table and filters.
async function lookups() {
  const read = (allowed, path) => (allowed ? api("GET", path).catch(() => ({ data: [] })) : { data: [] });
  const [nodeList, templateList, userList] = await Promise.all([
    read(may("SYSTEM_NODES"), "/api/nodes?per_page=100"),
    read(may("SYSTEM_TEMPLATES") || may("SERVER_CREATE"), "/api/templates?per_page=100"),
    read(may("USER_VIEW"), "/api/users?per_page=100"),
  ]);
  for (const n of nodeList.data) {
    nodes.set(n.id, n);
    $("filter-node").append(el("option", { value: n.id, text: n.name }));
  }
  for (const t of templateList.data) templates.set(t.id, t);
  for (const u of userList.data) {
    users.set(u.id, u);
    $("filter-owner").append(el("option", { value: u.id, text: u.username }));
  }
}

async function main() {
  me = await ensureSession();
  await setupHeader(me);
  if (!may("SERVER_VIEW") && !may("SERVER_CREATE")) {
    $("status").textContent = "";
    $("error").textContent = "You are not allowed to see every server: that needs the SERVER_VIEW permission.";
    return;
  }
  $("new-server").hidden = !may("SERVER_CREATE");
  await lookups();
  await load();
  $("status").textContent = may("SERVER_VIEW") ? "" : "Without the SERVER_VIEW permission you see only your own servers.";
  $("content").hidden = false;
}

main().catch((e) => { $("status").textContent = ""; $("error").textContent = e.message || "The servers could not be loaded."; });
