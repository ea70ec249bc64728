import { backoff, bytes, ensureSession } from "/assets/api.js";
import { ConsoleView } from "/assets/console.js";
import { loadServerPage, serverId } from "/assets/serverpage.js";

const id = serverId();
const $ = (x) => document.getElementById(x);
const view = new ConsoleView($("console"), $("follow"));
const POWER = { start: "SERVER_START", stop: "SERVER_STOP", restart: "SERVER_RESTART", kill: "SERVER_STOP" };
// Which power actions make sense in which state.
const ALLOWED = {
  start: ["offline", "crashed"],
  stop: ["starting", "running"],
  restart: ["running"],
  kill: ["starting", "running", "stopping"],
};
let socket = null;
let permissions = [];
let state = "";
let nodeOnline = true;
let retry = 0;
const history = [];
let historyAt = 0;
const cpuSamples = [];

function showState() {
  $("state").textContent = state;
  $("state").dataset.state = state;
  $("node").hidden = nodeOnline;
  for (const button of $("power").querySelectorAll("button")) {
    const action = button.dataset.action;
    button.hidden = !permissions.includes(POWER[action]);
    button.disabled = !nodeOnline || !ALLOWED[action].includes(state) || !socket || socket.readyState !== WebSocket.OPEN;
  }
}

function chart() {
  const max = Math.max(100, ...cpuSamples);
  const step = cpuSamples.length > 1 ? 300 / (cpuSamples.length - 1) : 0;
  const points = cpuSamples.map((v, i) => `${(i * step).toFixed(1)},${(60 - (v / max) * 58).toFixed(1)}`);
  $("cpu-line").setAttribute("points", points.join(" "));
}

function stats(m) {
  $("cpu").textContent = `${m.cpu_percent.toFixed(1)} %`;
  $("memory").textContent = bytes(m.memory_bytes);
  $("disk").textContent = bytes(m.disk_bytes);
}

function onMessage(m) {
  switch (m.type) {
    case "hello":
      permissions = m.permissions || [];
      state = m.state;
      nodeOnline = m.node_online;
      retry = 0;
      $("link").textContent = "Connected";
      $("console-section").hidden = !permissions.includes("SERVER_CONSOLE");
      $("no-console").hidden = permissions.includes("SERVER_CONSOLE");
      $("command-form").hidden = !permissions.includes("SERVER_CONSOLE");
      view.clear();
      break;
    case "console":
      view.push(m.line);
      break;
    case "state":
      state = m.state;
      // The panel publishes `unknown` when the server's node goes away, and a real state only
      // from a connected node.
      nodeOnline = m.state !== "unknown";
      break;
    case "stats":
      stats(m);
      cpuSamples.push(m.cpu_percent);
      if (cpuSamples.length > 120) cpuSamples.shift();
      chart();
      break;
    case "history":
      cpuSamples.splice(0, cpuSamples.length, ...m.samples.map((s) => s.cpu_percent).slice(-120));
      if (m.samples.length) stats(m.samples[m.samples.length - 1]);
      chart();
      break;
    case "error":
      $("notice").textContent = m.message || m.error;
      break;
  }
  showState();
}

// `checked`: the session was just found valid (the page's first connection), so the access
// cookie is not checked again first.
async function connect(checked = false) {
  $("link").textContent = retry ? "Reconnecting…" : "Connecting…";
  try {
    if (!checked) await ensureSession();
  } catch {
    return schedule();
  }
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  socket = new WebSocket(`${scheme}//${location.host}/api/servers/${encodeURIComponent(id)}/ws`);
  socket.addEventListener("message", (event) => onMessage(JSON.parse(event.data)));
  socket.addEventListener("close", () => { showState(); schedule(); });
}

function schedule() {
  $("link").textContent = "Disconnected; reconnecting…";
  const delay = backoff(retry);
  retry = Math.min(retry + 1, 6);
  setTimeout(connect, delay);
}

function send(message) {
  if (!socket || socket.readyState !== WebSocket.OPEN) {
    $("notice").textContent = "Not connected.";
    return;
  }
  $("notice").textContent = "";
  socket.send(JSON.stringify(message));
}

$("power").addEventListener("click", (event) => {
  const action = event.target.closest("button")?.dataset.action;
  if (action) send({ type: "power", action });
});

$("command-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("command");
  const command = input.value;
  if (!command.trim()) return;
  send({ type: "command", command });
  if (history[history.length - 1] !== command) history.push(command);
  if (history.length > 100) history.shift();
  historyAt = history.length;
  input.value = "";
});

$("command").addEventListener("keydown", (event) => {
  if (event.key === "ArrowUp" && historyAt > 0) {
    historyAt--;
    event.target.value = history[historyAt];
    event.preventDefault();
  } else if (event.key === "ArrowDown" && historyAt < history.length) {
    historyAt++;
    event.target.value = history[historyAt] ?? "";
    event.preventDefault();
  }
});

async function main() {
  const { server } = await loadServerPage();
  $("name").textContent = server.name;
  document.title = `${server.name} · Ctrl-Alt-Play`;
  state = server.state;
  permissions = server.permissions || [];
  showState();
  connect(true);
}

main().catch((e) => { $("notice").textContent = e.message || "The server could not be loaded."; });
