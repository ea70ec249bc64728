// One node: what its agent reports, its settings, its allocations, a new install command (with
// a one-time token, shown once and never put into a URL), and its deletion.
import { adminPage, api, busy, bytes, confirming, el, markField, query, when, wholeNumber } from "/assets/api.js";

const $ = (x) => document.getElementById(x);
const id = decodeURIComponent(location.pathname.split("/")[3] || "");
const nodeApi = (rest = "") => `/api/nodes/${encodeURIComponent(id)}${rest}`;
const ALLOC_PER_PAGE = 100;
// How often the status and use are read again.
const REFRESH_MS = 5000;
let node = null;
let servers = null;
let allocPage = 1;

function installCommand(token) {
  return `CAP_NODE_TOKEN=${token} cap-agent --panel-url ${location.origin} --data-dir /var/lib/cap-agent`;
}

function overallocation(percent) {
  return percent < 0 ? "no limit" : `+${percent} %`;
}

function showNode() {
  document.title = `${node.name} · Nodes · Ctrl-Alt-Play`;
  $("name").textContent = node.name;
  $("crumb-name").textContent = node.name;
  const status = $("node-status");
  const state = node.connected ? "Online" : "Offline";
  // Only a change is news for the live region.
  if (status.textContent !== state) status.textContent = state;
  status.className = `pill ${node.connected ? "online" : "offline"}`;
  const a = node.agent;
  const facts = [
    ["Address", node.fqdn],
    ["Description", node.description || "–"],
    ["Memory for servers", `${node.memory_mb} MiB (${overallocation(node.memory_overallocate)})`],
    ["Disk for servers", `${node.disk_mb} MiB (${overallocation(node.disk_overallocate)})`],
    ["Servers", servers ? String(servers.total) : "–"],
  ];
  if (a) {
    facts.push(
      ["Agent", `${a.version} (protocol ${a.protocol})`],
      ["Machine", `${a.hostname} · ${a.os} ${a.kernel} · ${a.arch}`],
      ["CPU", `${Number.isFinite(a.cpu_percent) ? `${a.cpu_percent.toFixed(1)} % of ` : ""}${a.cpus} CPU${a.cpus === 1 ? "" : "s"}`],
      ["Memory", Number.isFinite(a.memory_used_bytes) ? `${bytes(a.memory_used_bytes)} of ${bytes(a.memory_bytes)} used` : bytes(a.memory_bytes)],
      ["Disk", Number.isFinite(a.disk_used_bytes) ? `${bytes(a.disk_used_bytes)} of ${bytes(a.disk_bytes)} used` : bytes(a.disk_bytes)],
      ["Running servers", Number.isFinite(a.servers_running) ? String(a.servers_running) : "–"],
      ["Runtimes", a.runtimes.join(", ") || "none"],
      ["Enforced limits", a.enforced_limits.join(", ") || "none"],
      ["Connected since", when(a.connected_at)],
      ["Last heartbeat", when(a.last_heartbeat_at)],
    );
  } else {
    facts.push(["Agent", "Not connected. Generate an install command below and run it on the machine."]);
  }
  facts.push(["Created", when(node.created_at)]);
  $("facts").replaceChildren(...facts.map(([k, v]) => el("div", {}, el("dt", { text: k }), el("dd", { text: v }))));
  const problems = a?.runtime_problems ?? [];
  $("problems").replaceChildren(...problems.map((p) => el("li", { text: p })));
  $("problems").hidden = problems.length === 0;
}

function fillForm() {
  $("edit-name").value = node.name;
  $("edit-fqdn").value = node.fqdn;
  $("edit-description").value = node.description;
  $("edit-memory").value = String(node.memory_mb);
  $("edit-memory-over").value = String(node.memory_overallocate);
  $("edit-disk").value = String(node.disk_mb);
  $("edit-disk-over").value = String(node.disk_overallocate);
}

async function loadNode() {
  node = await api("GET", nodeApi());
  showNode();
}

async function loadServers(me) {
  if (!me.permissions.includes("SERVER_VIEW")) return;
  try {
    servers = await api("GET", `/api/servers${query({ node_id: id, per_page: 100 })}`);
  } catch {
    servers = null;
  }
}

function serverCell(a) {
  if (!a.server_id) return el("td", { class: "muted", text: "free" });
  const known = servers?.data.find((s) => s.id === a.server_id);
  const link = el("a", { href: `/servers/${encodeURIComponent(a.server_id)}`, text: known ? known.name : a.server_id });
  return el("td", {}, link, a.primary ? el("span", { class: "cell-note", text: "primary" }) : "");
}

function allocationRow(a) {
  const actions = el("td", { class: "actions" });
  if (!a.server_id) {
    const remove = el("button", { type: "button", class: "small danger", text: "Delete", "aria-label": `Delete ${a.ip}:${a.port}` });
    remove.addEventListener("click", () => busy(remove, $("alloc-list-error"), async () => {
      await api("DELETE", nodeApi(`/allocations/${encodeURIComponent(a.id)}`));
      await loadAllocations();
      $("allocations").querySelector("button")?.focus();
    }));
    actions.append(remove);
  }
  return el("tr", { "data-id": a.id },
    el("td", { class: "mono", text: a.ip }),
    el("td", { class: "num mono", text: String(a.port) }),
    serverCell(a), actions);
}

async function loadAllocations() {
  const list = await api("GET", nodeApi(`/allocations${query({ page: allocPage, per_page: ALLOC_PER_PAGE })}`));
  const pages = Math.max(1, Math.ceil(list.total / ALLOC_PER_PAGE));
  if (allocPage > pages) {
    allocPage = pages;
    return loadAllocations();
  }
  $("allocations").replaceChildren(...(list.data.length ? list.data.map(allocationRow)
    : [el("tr", {}, el("td", { colspan: "4", class: "empty", text: "No allocations yet: add the ports servers may use." }))]));
  $("alloc-pager").hidden = pages <= 1;
  $("alloc-page").textContent = `Page ${allocPage} of ${pages} · ${list.total} allocations`;
  $("alloc-prev").disabled = allocPage <= 1;
  $("alloc-next").disabled = allocPage >= pages;
}

$("alloc-prev").addEventListener("click", () => { allocPage--; busy(null, $("alloc-list-error"), loadAllocations); });
$("alloc-next").addEventListener("click", () => { allocPage++; busy(null, $("alloc-list-error"), loadAllocations); });

// "25565, 25570-25580" as the API's port list: numbers as numbers, ranges as text.
function portSpecs(text) {
  return text.split(",").map((p) => p.trim()).filter(Boolean).map((p) => (/^[0-9]+$/.test(p) ? Number(p) : p.replace(/\s+/g, "")));
}

$("alloc-form").addEventListener("submit", (event) => {
  event.preventDefault();
  $("alloc-added").textContent = "";
  busy($("alloc-add"), $("alloc-error"), async () => {
    const ip = $("alloc-ip").value.trim();
    const ports = portSpecs($("alloc-ports").value);
    $("alloc-ip").setAttribute("aria-invalid", String(!ip));
    $("alloc-ports").setAttribute("aria-invalid", String(!ports.length));
    if (!ip || !ports.length) throw new Error("Enter an IP address and at least one port.");
    try {
      const added = await api("POST", nodeApi("/allocations"), { ip, ports });
      $("alloc-added").textContent = `Added ${added.length} allocation${added.length === 1 ? "" : "s"}.`;
    } catch (e) {
      const field = e.message.startsWith("ip") ? "alloc-ip" : e.message.startsWith("ports") ? "alloc-ports" : null;
      if (field) $(field).setAttribute("aria-invalid", "true");
      throw e;
    }
    $("alloc-ports").value = "";
    await loadAllocations();
  });
});

// The inputs of the node's fields, to mark the one an API error names (`fqdn: must be…`).
const FIELDS = {
  name: "edit-name", fqdn: "edit-fqdn", description: "edit-description", memory_mb: "edit-memory",
  memory_overallocate: "edit-memory-over", disk_mb: "edit-disk", disk_overallocate: "edit-disk-over",
};


$("edit-form").addEventListener("submit", (event) => {
  event.preventDefault();
  $("edit-saved").textContent = "";
  busy($("edit-save"), $("edit-error"), async () => {
    for (const input of Object.values(FIELDS)) $(input).removeAttribute("aria-invalid");
    const body = {
      name: $("edit-name").value.trim(),
      fqdn: $("edit-fqdn").value.trim(),
      description: $("edit-description").value.trim(),
      memory_mb: wholeNumber("edit-memory", "Memory"),
      memory_overallocate: wholeNumber("edit-memory-over", "Memory overallocation"),
      disk_mb: wholeNumber("edit-disk", "Disk"),
      disk_overallocate: wholeNumber("edit-disk-over", "Disk overallocation"),
    };
    try {
      node = await api("PATCH", nodeApi(), body);
    } catch (e) {
      markField(e.message, FIELDS);
      throw e;
    }
    showNode();
    fillForm();
    $("edit-saved").textContent = "Saved.";
  });
});

async function generate() {
  await busy($("install-generate"), $("install-error"), async () => {
    const created = await api("POST", nodeApi("/token"));
    node = created.node;
    showNode();
    $("install-command").textContent = installCommand(created.token);
    $("install-copied").textContent = "";
    $("install").hidden = false;
    $("install-command").focus();
  });
}

$("install-copy").addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText($("install-command").textContent);
    $("install-copied").textContent = "Copied.";
  } catch {
    const range = document.createRange();
    range.selectNodeContents($("install-command"));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    $("install-copied").textContent = "Selected: press Ctrl+C to copy.";
  }
});

confirming($("delete"), "Confirm: delete this node", () => busy($("delete"), $("delete-error"), async () => {
  await api("DELETE", nodeApi());
  location.assign("/admin/nodes");
}));

// A field marked invalid is unmarked as soon as it is changed.
$("content").addEventListener("input", (event) => event.target.removeAttribute?.("aria-invalid"));

async function main() {
  const me = await adminPage("SYSTEM_NODES", "manage nodes");
  if (!me) return;
  await loadServers(me);
  await loadNode();
  fillForm();
  if (/^[0-9.]+$|:/.test(node.fqdn)) $("alloc-ip").value = node.fqdn;
  await loadAllocations();
  // A connected agent loses its token at its next connection: a second press makes sure.
  if (node.connected) confirming($("install-generate"), "Confirm: replace the token", generate);
  else $("install-generate").addEventListener("click", generate);
  $("status").textContent = "";
  $("content").hidden = false;
  setInterval(() => {
    if (!document.hidden) loadNode().then(() => { $("error").textContent = ""; }, (e) => { $("error").textContent = e.message; });
  }, REFRESH_MS);
}

main().catch((e) => {
  $("status").textContent = "";
  $("error").textContent = e.status === 404 ? "There is no such node." : e.message || "The node could not be loaded.";
});
