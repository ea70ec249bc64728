// A server's backups: made, locked, downloaded, restored and deleted as the caller's permissions
// allow; a running backup's progress comes over the server's live socket.
import { api, backoff, busy, bytes, confirming, el } from "/assets/api.js";
import { loadServerPage, serverApi } from "/assets/serverpage.js";

const $ = (x) => document.getElementById(x);
let backups = [];
let permissions = [];
const may = (p) => permissions.includes(p);

function actions(b) {
  const cell = el("td", { class: "actions" });
  if (b.status === "done" && may("BACKUP_RESTORE")) {
    const download = el("a", { class: "button small secondary", href: serverApi(`/backups/${encodeURIComponent(b.id)}/download`), text: "Download" });
    download.setAttribute("download", "");
    const restore = el("button", { type: "button", class: "small secondary", text: "Restore" });
    confirming(restore, "Confirm restore", () => busy(restore, $("backup-error"), async () => {
      await api("POST", serverApi(`/backups/${encodeURIComponent(b.id)}/restore`));
      $("status").textContent = `Restored “${b.name}”.`;
    }));
    cell.append(download, " ", restore, " ");
  }
  if (may("BACKUP_DELETE") && b.status !== "running") {
    const lock = el("button", { type: "button", class: "small secondary", text: b.locked ? "Unlock" : "Lock" });
    lock.addEventListener("click", () => busy(lock, $("backup-error"), async () => {
      replace(await api("POST", serverApi(`/backups/${encodeURIComponent(b.id)}/lock`), { locked: !b.locked }));
    }));
    const remove = el("button", { type: "button", class: "small danger", text: "Delete" });
    remove.disabled = b.locked;
    if (b.locked) remove.title = "Unlock it first";
    confirming(remove, "Confirm delete", () => busy(remove, $("backup-error"), async () => {
      await api("DELETE", serverApi(`/backups/${encodeURIComponent(b.id)}`));
      backups = backups.filter((x) => x.id !== b.id);
      render();
    }));
    cell.append(lock, " ", remove);
  }
  for (const node of cell.querySelectorAll("a, button")) node.setAttribute("aria-label", `${node.textContent} ${b.name}`);
  return cell;
}

function row(b) {
  const status = b.status === "failed" && b.error ? `failed: ${b.error}` : b.status + (b.locked ? " · locked" : "");
  return el("tr", { "data-id": b.id },
    el("td", { text: b.name }),
    el("td", {}, el("span", { class: "state", "data-state": b.status === "done" ? "running" : b.status === "failed" ? "crashed" : "starting", text: status })),
    el("td", { text: new Date(b.created_ms).toLocaleString() }),
    el("td", { class: "num", text: bytes(b.bytes) }),
    el("td", { class: "num", text: String(b.files) }),
    actions(b));
}

function render() {
  $("backups").replaceChildren(...(backups.length ? backups.map(row)
    : [el("tr", {}, el("td", { colspan: "6", class: "empty", text: "No backups yet." }))]));
}

// A record replaces the shown one, except that a running one never replaces the end of the same
// backup: the socket may bring the end before the answer to the request that started it.
function replace(record) {
  const at = backups.findIndex((x) => x.id === record.id);
  if (at >= 0 && record.status === "running" && backups[at].status !== "running") return;
  if (at >= 0) backups[at] = record;
  else backups.unshift(record);
  render();
}

// Progress and ends of backups, from the server's live socket; reconnects after a blip.
function follow(retry = 0) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(`${scheme}//${location.host}${serverApi("/ws")}`);
  socket.addEventListener("message", (event) => {
    const m = JSON.parse(event.data);
    if (m.type === "hello") {
      retry = 0;
      // What ended while the socket was not yet (or no longer) open.
      api("GET", serverApi("/backups")).then((list) => { for (const b of list.reverse()) replace(b); })
        .catch(() => {});
    }
    if (m.type === "backup") replace(m.backup);
  });
  socket.addEventListener("close", () => setTimeout(() => follow(Math.min(retry + 1, 6)), backoff(retry)));
}

$("backup-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("backup-name").value.trim();
  busy($("backup-create"), $("backup-error"), async () => {
    replace(await api("POST", serverApi("/backups"), name ? { name } : {}));
    $("backup-name").value = "";
  });
});

async function main() {
  ({ permissions } = await loadServerPage());
  $("backup-form").hidden = !may("BACKUP_CREATE");
  backups = await api("GET", serverApi("/backups"));
  render();
  $("status").textContent = "";
  follow();
}

main().catch((e) => { $("status").textContent = e.message || "The backups could not be loaded."; });
