import { api, backoff, bytes, el, ensureSession, setupHeader } from "/assets/api.js";

const list = document.getElementById("servers");
const status = document.getElementById("status");
// Live state and use for this many servers at most (one socket each).
const LIVE = 50;

// Use is shown only while the game runs: the last figures of a stopped one are history.
const RUNS = ["starting", "running", "stopping"];

// A server's live state and use; the socket comes back after a drop (backing off, the session
// renewed first if it expired).
function watch(server, stateNode, useNode, retry = 0) {
  const show = (state, nodeOnline) => {
    stateNode.textContent = nodeOnline ? state : `${state} (node offline)`;
    stateNode.dataset.state = state;
    if (!RUNS.includes(state)) useNode.textContent = "";
  };
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(`${scheme}//${location.host}/api/servers/${server.id}/ws?summary=true`);
  socket.addEventListener("message", (event) => {
    const m = JSON.parse(event.data);
    if (m.type === "hello") {
      retry = 0;
      stateNode.classList.remove("stale");
      stateNode.removeAttribute("title");
      show(m.state, m.node_online);
    } else if (m.type === "state") {
      // `unknown` is what the panel publishes when the server's node goes away.
      show(m.state, m.state !== "unknown");
    } else if (m.type === "stats" && RUNS.includes(stateNode.dataset.state)) {
      useNode.textContent = `CPU ${m.cpu_percent.toFixed(1)} % · ${bytes(m.memory_bytes)}`;
    }
  });
  socket.addEventListener("close", () => {
    // What is shown is no longer live until the socket is back.
    stateNode.classList.add("stale");
    stateNode.title = "Reconnecting…";
    setTimeout(async () => {
      try { await ensureSession(); } catch { /* tried again on the next drop */ }
      watch(server, stateNode, useNode, Math.min(retry + 1, 6));
    }, backoff(retry));
  });
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
