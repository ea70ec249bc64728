// The JSON API from the browser: session cookies, the CSRF token echoed on every change, one
// refresh of an expired session, and a way back to the login page when the session is gone.

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [k, ...v] = part.trim().split("=");
    if (k === name) return decodeURIComponent(v.join("="));
  }
  return "";
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

let refreshing = null;

async function refresh() {
  refreshing ??= fetch("/api/auth/refresh", { method: "POST", credentials: "same-origin" })
    .then((r) => r.ok)
    .finally(() => { refreshing = null; });
  return refreshing;
}

export function toLogin() {
  const next = location.pathname + location.search;
  location.assign("/login?next=" + encodeURIComponent(next));
}

export async function api(method, path, body, retried = false) {
  const headers = { "Accept": "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRF-Token"] = cookie("cap_csrf");
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401 && !retried && !path.startsWith("/api/auth/")) {
    if (await refresh()) return api(method, path, body, true);
    toLogin();
    throw new ApiError(401, "unauthorized", "Your session ended; log in again.");
  }
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw new ApiError(response.status, data?.error, data?.message);
  return data;
}

// A session for the WebSocket: refreshed first when the access cookie may have expired.
export async function ensureSession() {
  try {
    return await api("GET", "/api/me");
  } catch (e) {
    if (e.status === 401) toLogin();
    throw e;
  }
}

// An element with text children only: every string becomes a text node, never markup.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

export function bytes(n) {
  if (!Number.isFinite(n)) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export async function setupHeader(me) {
  const who = document.getElementById("who");
  if (who && me) who.textContent = me.username ?? me.email ?? "";
  const logout = document.getElementById("logout");
  if (logout && me) {
    logout.hidden = false;
    logout.addEventListener("click", async () => {
      try { await api("POST", "/api/auth/logout"); } finally { location.assign("/login"); }
    });
  }
}
