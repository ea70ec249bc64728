// What every page of one server shares: the session, the header, the server and its tabs, each
// shown only to who holds the permission it needs.
import { api, ensureSession, setupHeader } from "/assets/api.js";

export const TAB_PERMISSION = {
  server: "SERVER_VIEW",
  files: "FILE_VIEW",
  startup: "SERVER_VIEW",
  backups: "BACKUP_VIEW",
  subusers: "USER_PERMISSIONS",
};

// The server's id, from `/servers/{id}/…`.
export function serverId() {
  return decodeURIComponent(location.pathname.split("/")[2] || "");
}

// The API path of this server: `/api/servers/{id}` and `rest` after it.
export function serverApi(rest = "") {
  return `/api/servers/${encodeURIComponent(serverId())}${rest}`;
}

// Loads the session and the server, fills the header, the crumbs and the tabs.
export async function loadServerPage() {
  const me = await ensureSession();
  await setupHeader(me);
  const id = serverId();
  const server = await api("GET", serverApi());
  const permissions = server.permissions || [];
  document.getElementById("server-name").textContent = server.name;
  for (const link of document.querySelectorAll("#server-tabs a")) {
    const tab = link.dataset.tab;
    const segment = { server: "", subusers: "/users" }[tab] ?? `/${tab}`;
    const href = `/servers/${encodeURIComponent(id)}${segment}`;
    link.setAttribute("href", href);
    link.hidden = !permissions.includes(TAB_PERMISSION[tab]);
    if (href === location.pathname) link.setAttribute("aria-current", "page");
  }
  return { me, server, id, permissions };
}
