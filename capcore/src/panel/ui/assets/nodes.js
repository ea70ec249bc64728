// The nodes: each with its agent's status and what it reports; a new node, with the command
// that installs its agent (holding the one-time token, which never goes into a URL).
import { adminPage, api, busy, bytes, el, markField, query, when, wholeNumber } from "/assets/api.js";

const $ = (x) => document.getElementById(x);
const PER_PAGE = 50;
// How often the status and use of the nodes are read again.
const REFRESH_MS = 10000;
let page = 1;
let total = 0;
let countServers = false;

// The command an admin runs on the machine: the token in the environment (not in `ps`).
function installCommand(token) {
  return `CAP_NODE_TOKEN=${token} cap-agent --panel-url ${location.origin} --data-dir /var/lib/cap-agent`;
}

function usage(used, of) {
  if (!Number.isFinite(used)) return "–";
  return Number.isFinite(of) && of > 0 ? `${bytes(used)} / ${bytes(of)}` : bytes(used);
}

function row(node, servers) {
  const a = node.agent;
  const link = el("a", { href: `/admin/nodes/${encodeURIComponent(node.id)}`, text: node.name });
  const status = el("span", { class: `pill ${node.connected ? "online" : "offline"}`, text: node.connected ? "Online" : "Offline" });
  const problems = a?.runtime_problems?.length ? el("span", { class: "cell-note warn", text: `${a.runtime_problems.length} runtime problem(s)` }) : "";
  return el("tr", { "data-id": node.id },
    el("td", {}, link, node.description ? el("span", { class: "cell-note", text: node.description }) : ""),
    el("td", {}, status, problems),
    el("td", { class: "mono", text: node.fqdn }),
    el("td", { class: "num", text: servers === undefined ? "–" : String(servers) }),
    el("td", { class: "num", text: a && Number.isFinite(a.cpu_percent) ? `${a.cpu_percent.toFixed(1)} %` : "–" }),
    el("td", { text: a ? usage(a.memory_used_bytes, a.memory_bytes) : `${node.memory_mb} MiB configured` }),
    el("td", { text: a ? usage(a.disk_used_bytes, a.disk_bytes) : `${node.disk_mb} MiB configured` }),
    el("td", { text: a ? `${a.version} (${a.os} ${a.arch})` : "–" }),
    el("td", { text: a ? when(a.last_heartbeat_at || a.connected_at) : "–" }));
}

async function serverCount(node) {
  if (!countServers) return undefined;
  try {
    return (await api("GET", `/api/servers${query({ node_id: node.id, per_page: 1 })}`)).total;
  } catch {
    return undefined;
  }
}

async function load() {
  const list = await api("GET", `/api/nodes${query({ page, per_page: PER_PAGE })}`);
  total = list.total;
  const counts = await Promise.all(list.data.map(serverCount));
  $("nodes").replaceChildren(...(list.data.length ? list.data.map((n, i) => row(n, counts[i]))
    : [el("tr", {}, el("td", { colspan: "9", class: "empty", text: "No nodes yet. Create one, then run its install command on the machine." }))]));
  const pages = Math.max(1, Math.ceil(total / PER_PAGE));
  $("pager").hidden = pages <= 1;
  $("page-info").textContent = `Page ${page} of ${pages}`;
  $("prev").disabled = page <= 1;
  $("next").disabled = page >= pages;
  $("error").textContent = "";
}

function showForm(show) {
  $("node-form").hidden = !show;
  $("new-node").setAttribute("aria-expanded", String(show));
  if (show) $("node-name").focus();
  else $("new-node").focus();
}

$("new-node").addEventListener("click", () => showForm($("node-form").hidden));
$("node-cancel").addEventListener("click", () => showForm(false));
$("prev").addEventListener("click", () => { page--; load().catch(showError); });
$("next").addEventListener("click", () => { page++; load().catch(showError); });

// The inputs of the node's fields, to mark the one an API error names (`fqdn: must be…`).
const FIELDS = {
  name: "node-name", fqdn: "node-fqdn", description: "node-description", memory_mb: "node-memory",
  memory_overallocate: "node-memory-over", disk_mb: "node-disk", disk_overallocate: "node-disk-over",
};


$("node-form").addEventListener("submit", (event) => {
  event.preventDefault();
  busy($("node-create"), $("node-error"), async () => {
    for (const input of Object.values(FIELDS)) $(input).removeAttribute("aria-invalid");
    const name = $("node-name").value.trim();
    const fqdn = $("node-fqdn").value.trim();
    $("node-name").setAttribute("aria-invalid", String(!name));
    $("node-fqdn").setAttribute("aria-invalid", String(!fqdn));
    if (!name || !fqdn) throw new Error("Enter the node's name and address.");
    const body = {
      name,
      fqdn,
      description: $("node-description").value.trim(),
      memory_mb: wholeNumber("node-memory", "Memory"),
      memory_overallocate: wholeNumber("node-memory-over", "Memory overallocation"),
      disk_mb: wholeNumber("node-disk", "Disk"),
      disk_overallocate: wholeNumber("node-disk-over", "Disk overallocation"),
    };
    let created;
    try {
      created = await api("POST", "/api/nodes", body);
    } catch (e) {
      markField(e.message, FIELDS);
      throw e;
    }
    event.target.reset();
    $("node-form").hidden = true;
    $("new-node").setAttribute("aria-expanded", "false");
    $("created-name").textContent = created.node.name;
    $("created-command").textContent = installCommand(created.token);
    $("created-link").setAttribute("href", `/admin/nodes/${encodeURIComponent(created.node.id)}`);
    $("created-copied").textContent = "";
    $("created").hidden = false;
    $("created").focus();
    await load();
  });
});

$("created-copy").addEventListener("click", async () => {
  const text = $("created-command").textContent;
  try {
    await navigator.clipboard.writeText(text);
    $("created-copied").textContent = "Copied.";
  } catch {
    const range = document.createRange();
    range.selectNodeContents($("created-command"));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    $("created-copied").textContent = "Selected: press Ctrl+C to copy.";
  }
});

function showError(e) {
  $("error").textContent = e.message || "The nodes could not be loaded.";
}

// A field marked invalid is unmarked as soon as it is changed.
$("content").addEventListener("input", (event) => event.target.removeAttribute?.("aria-invalid"));

async function main() {
  const me = await adminPage("SYSTEM_NODES", "manage nodes");
  if (!me) return;
  countServers = me.permissions.includes("SERVER_VIEW");
  await load();
  $("status").textContent = "";
  $("content").hidden = false;
  $("new-node").hidden = false;
  // Not while the reader is in the table: a new table would take their focus away.
  setInterval(() => {
    if (!document.hidden && !$("nodes").contains(document.activeElement)) load().catch(showError);
  }, REFRESH_MS);
}

main().catch((e) => { $("status").textContent = ""; showError(e); });
