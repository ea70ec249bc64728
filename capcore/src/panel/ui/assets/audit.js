// The audit log, newest first: who did what to what, how it ended, from where, with its detail.
// The filters (action prefix, actor, target, result, time span) and the page are in the
// address, so a filtered view can be linked and Back returns to the last one.
import { api, busy, el, ensureSession, query, setupHeader, when } from "/assets/api.js";

const $ = (x) => document.getElementById(x);
const PER_PAGE = 50;
const KEYS = ["action", "actor_id", "target", "result", "since", "until"];
let me = null;
// Names of what the caller may list, by kind and id, for the table.
const names = { user: new Map(), server: new Map(), template: new Map(), node: new Map(), role: new Map() };
const PAGES = { server: "/servers/", template: "/admin/templates/", node: "/admin/nodes/" };

function fromUrl() {
  const params = new URLSearchParams(location.search);
  const f = {};
  for (const key of KEYS) f[key] = params.get(key) || "";
  f.page = Math.max(1, Number.parseInt(params.get("page") || "1", 10) || 1);
  return f;
}

// An RFC 3339 time as the value of a datetime-local input (the reader's local time), and back.
function toLocalInput(iso) {
  const d = new Date(iso);
  if (!iso || Number.isNaN(d.getTime())) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function fromLocalInput(value) {
  const d = new Date(value);
  return value && !Number.isNaN(d.getTime()) ? d.toISOString() : "";
}

function fillForm(f) {
  $("f-action").value = f.action;
  if (f.actor_id && ![...$("f-actor").options].some((o) => o.value === f.actor_id)) {
    $("f-actor").append(el("option", { value: f.actor_id, text: names.user.get(f.actor_id) ?? f.actor_id }));
  }
  $("f-actor").value = f.actor_id;
  $("f-target").value = f.target;
  $("f-result").value = f.result;
  $("f-since").value = toLocalInput(f.since);
  $("f-until").value = toLocalInput(f.until);
}

// A link to this page filtered by one more thing.
const filtered = (change) => `/admin/audit${query({ ...fromUrl(), page: "", ...change })}`;

function target(t) {
  if (!t) return "–";
  const [kind, ...rest] = t.split(":");
  const id = rest.join(":");
  const name = names[kind]?.get(id);
  const label = name ? `${kind} ${name}` : t;
  const node = PAGES[kind] && id
    ? el("a", { href: `${PAGES[kind]}${encodeURIComponent(id)}`, text: label })
    : el("span", { text: label });
  return el("span", {}, node, " ", el("a", {
    href: filtered({ target: t }), class: "filter-link", text: "only this", "aria-label": `Only events of ${label}`,
  }));
}

function detail(value) {
  if (value === null || value === undefined) return "";
  if (typeof value !== "object") return String(value);
  const entries = Object.entries(value);
  if (!entries.length) return "";
  return entries.map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`).join("\n");
}

function row(e) {
  const actor = e.actor_id
    ? el("a", { href: filtered({ actor_id: e.actor_id }), text: names.user.get(e.actor_id) ?? e.actor_id,
      title: "Only this actor's events" })
    : el("span", { class: "muted", text: "system" });
  const text = detail(e.detail);
  return el("tr", { "data-id": e.id },
    el("td", { class: "when" }, el("time", { datetime: e.at, text: when(e.at) })),
    el("td", {}, actor),
    el("td", { class: "mono" }, el("a", { href: filtered({ action: e.action }), text: e.action, title: "Only this action" })),
    el("td", { class: "target" }, target(e.target)),
    el("td", {}, el("span", { class: `result ${e.result}`, text: e.result })),
    el("td", { class: "mono", text: e.ip || "–" }),
    el("td", { class: "detail" }, text ? el("span", { class: "mono", text }) : "–"));
}

async function load() {
  const f = fromUrl();
  fillForm(f);
  const list = await api("GET", `/api/audit${query({ ...f, per_page: PER_PAGE })}`);
  const any = KEYS.some((k) => f[k]);
  const empty = any ? "No events match these filters." : "The audit log is empty.";
  $("events").replaceChildren(...(list.data.length ? list.data.map(row)
    : [el("tr", {}, el("td", { colspan: "7", class: "empty" }, empty, " ",
      any ? el("a", { href: "/admin/audit", text: "Show all events" }) : ""))]));
  const pages = Math.max(1, Math.ceil(list.total / PER_PAGE));
  $("count").textContent = `${list.total} event${list.total === 1 ? "" : "s"}${any ? " match" : ""}`;
  $("pager").hidden = pages <= 1 && f.page <= 1;
  $("page-info").textContent = `Page ${f.page} of ${pages}`;
  $("prev").disabled = f.page <= 1;
  $("next").disabled = f.page >= pages;
}

function go(f) {
  history.pushState(null, "", `/admin/audit${query(f)}`);
  return busy(null, $("error"), load);
}

$("filters").addEventListener("submit", (event) => {
  event.preventDefault();
  go({
    action: $("f-action").value.trim(),
    actor_id: $("f-actor").value,
    target: $("f-target").value.trim(),
    result: $("f-result").value,
    since: fromLocalInput($("f-since").value),
    until: fromLocalInput($("f-until").value),
  });
});
$("f-clear").addEventListener("click", (event) => { event.preventDefault(); go({}); });
$("prev").addEventListener("click", () => { const f = fromUrl(); f.page--; go(f); });
$("next").addEventListener("click", () => { const f = fromUrl(); f.page++; go(f); });
// Links that only change the filters stay on this page (no reload).
$("events").addEventListener("click", (event) => {
  const link = event.target.closest("a[href^='/admin/audit']");
  if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  history.pushState(null, "", link.getAttribute("href"));
  busy(null, $("error"), load);
  $("events").closest(".table-wrap").scrollTo?.(0, 0);
});
addEventListener("popstate", () => busy(null, $("error"), load));

// Names for the ids in the log: the first page of each list the caller may read.
async function lookups() {
  const read = (allowed, path) => (allowed ? api("GET", path).catch(() => ({ data: [] })) : { data: [] });
  const may = (p) => me.permissions.includes(p);
  const [users, servers, templates, nodes, roles] = await Promise.all([
    read(may("USER_VIEW"), "/api/users?per_page=100"),
    read(true, "/api/servers?per_page=100"),
    read(may("SYSTEM_TEMPLATES") || may("SERVER_CREATE"), "/api/templates?per_page=100"),
    read(may("SYSTEM_NODES"), "/api/nodes?per_page=100"),
    read(may("USER_PERMISSIONS"), "/api/roles?per_page=100"),
  ]);
  names.user.set(me.id, me.username);
  for (const u of users.data) {
    names.user.set(u.id, u.username);
    $("f-actor").append(el("option", { value: u.id, text: u.username }));
  }
  if (!users.data.length) $("f-actor").append(el("option", { value: me.id, text: `${me.username} (you)` }));
  for (const s of servers.data) names.server.set(s.id, s.name);
  for (const t of templates.data) names.template.set(t.id, t.spec.name);
  for (const n of nodes.data) names.node.set(n.id, n.name);
  for (const r of roles.data) names.role.set(r.id, r.name);
}

async function main() {
  me = await ensureSession();
  await setupHeader(me);
  await lookups();
  await load();
  $("status").textContent = me.permissions.includes("SYSTEM_AUDIT") ? ""
    : "Without the SYSTEM_AUDIT permission you see the events of the servers whose activity you may view.";
  $("content").hidden = false;
}

main().catch((e) => { $("status").textContent = ""; $("error").textContent = e.message || "The audit log could not be loaded."; });
