import { api, el, bytes, ensureSession, setupHeader } from "/assets/api.js";

const list = document.getElementById("servers");
const status = document.getElementById("status");
// Live state and use for this many servers at most (one socket each).
const LIVE = 50;

function watch(server, stateNode, useNode) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(`${scheme}//${location.host}/api/servers/${server.id}/ws?summary=true`);
  socket.addEventListener("message", (event) => {
    const m = JSON.parse(event.data);
    if (m.type === "hello" || m.type === "state") {
      stateNode.textContent = m.state;
      stateNode.dataset.state = m.state;
      if (m.type === "hello" && !m.node_online) stateNode.textContent = `${m.state} (node offline)`;
    } else if (m.type === "stats") {
      useNode.textContent = `CPU ${m.cpu_percent.toFixed(1)} % · ${bytes(m.memory_bytes)}`;
    }
  });
  return socket;
}

async function main() {
  const me = await ensureSession();
  await setupHeader(me);
  const page = await api("GET", "/api/servers?per_page=100");
  list.replaceChildren();
  if (page.data.length === 0) {
    status.textContent = "You have no servers yet.";
    return;
  }
  status.textContent = page.total > page.data.length
    ? `${page.data.length} of ${page.total} servers`
    : `${page.total} server${page.total === 1 ? "" : "s"}`;
  page.data.forEach((server, i) => {
    const state = el("span", { class: "state", "data-state": server.state, text: server.state });
    const use = el("span", { class: "use" });
    const link = el("a", { href: `/servers/${encodeURIComponent(server.id)}`, class: "name", text: server.name });
    list.append(el("li", { class: "server" }, link, state, use));
    if (i < LIVE) watch(server, state, use);
  });
}

main().catch((e) => { status.textContent = e.message || "The servers could not be loaded."; });
