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
  refreshing ??= fetch("/api/auth/refresh", {
    method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": cookie("cap_csrf") },
  })
    .then((r) => r.ok)
    .finally(() => { refreshing = null; });
  return refreshing;
}

export function toLogin() {
  const next = location.pathname + location.search;
  location.assign("/login?next=" + encodeURIComponent(next));
}

export async function api(method, path, body) {
  return request(method, path, body === undefined ? undefined : JSON.stringify(body), "application/json");
}

// A request with a body as it is (a file's bytes, an uploaded egg): `contentType` names it.
export async function request(method, path, body, contentType, retried = false) {
  const headers = { "Accept": "application/json" };
  if (body !== undefined) headers["Content-Type"] = contentType;
  if (method !== "GET") headers["X-CSRF-Token"] = cookie("cap_csrf");
  const response = await fetch(path, { method, headers, credentials: "same-origin", body });
  if (response.status === 401 && !retried && !path.startsWith("/api/auth/")) {
    if (await refresh()) return request(method, path, body, contentType, true);
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

// How long to wait before reconnecting after `retry` failed attempts: doubling from half a
// second up to 15 s, with jitter so many pages do not come back in step.
export function backoff(retry) {
  return Math.min(15000, 500 * 2 ** retry) * (0.5 + Math.random() / 2);
}

// Global permissions that open an admin page: those the admin tabs need (`data-needs`).
export const ADMIN_PERMISSIONS = [
  "SERVER_VIEW", "SERVER_CREATE", "SYSTEM_NODES", "USER_VIEW", "SYSTEM_TEMPLATES", "SYSTEM_AUDIT",
];

export async function setupHeader(me) {
  const who = document.getElementById("who");
  if (who && me) who.textContent = me.username ?? me.email ?? "";
  const admin = document.getElementById("nav-admin");
  if (admin && me) admin.hidden = !ADMIN_PERMISSIONS.some((p) => me.permissions.includes(p));
  const account = document.getElementById("nav-account");
  if (account && me) account.hidden = false;
  // Links to pages that need a permission (`data-needs`: one of these) are shown to those
  // holding one.
  for (const link of document.querySelectorAll("a[data-needs]")) {
    const allowed = !!me && link.dataset.needs.split(" ").some((p) => me.permissions.includes(p));
    (link.closest("li") ?? link).hidden = !allowed;
  }
  for (const link of document.querySelectorAll("nav a[href]")) {
    if (link.getAttribute("href") === location.pathname) link.setAttribute("aria-current", "page");
  }
  const logout = document.getElementById("logout");
  if (logout && me) {
    logout.hidden = false;
    logout.addEventListener("click", async () => {
      try { await api("POST", "/api/auth/logout"); } finally { location.assign("/login"); }
    });
  }
}

// A query string from an object, leaving out empty values.
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}

// A time as the reader's local date and time.
export function when(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}

// A button that asks once more before doing something that cannot be undone: the first press
// arms it ("Confirm …"), a second press within five seconds runs `action`.
export function confirming(button, label, action) {
  const original = button.textContent;
  let timer = null;
  button.addEventListener("click", async () => {
    if (!button.dataset.armed) {
      button.dataset.armed = "1";
      button.textContent = label;
      timer = setTimeout(() => { delete button.dataset.armed; button.textContent = original; }, 5000);
      return;
    }
    clearTimeout(timer);
    delete button.dataset.armed;
    button.textContent = original;
    await action();
  });
}

// Runs `work` with `button` disabled, putting an error's message into `errorNode` (as text).
export async function busy(button, errorNode, work) {
  if (errorNode) errorNode.textContent = "";
  if (button) button.disabled = true;
  try {
    return await work();
  } catch (e) {
    if (errorNode) errorNode.textContent = e.message || "That did not work.";
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

// Marks the inputs that an API error names (`fields`: the API's field name to the input's id;
// the message starts `fqdn: must be…`), and unmarks the others.
export function markField(message, fields) {
  for (const [field, input] of Object.entries(fields)) {
    document.getElementById(input).setAttribute("aria-invalid", String(message.startsWith(`${field}:`)));
  }
}

// The whole number in the input `id`; when it is not one, the input is marked and the error
// names `label`.
export function wholeNumber(id, label) {
  const input = document.getElementById(id);
  const v = input.value.trim();
  const ok = /^-?[0-9]+$/.test(v);
  input.setAttribute("aria-invalid", String(!ok));
  if (!ok) throw new Error(`${label} must be a whole number.`);
  return Number(v);
}

// An admin page's start: the session and the header, then the caller's account if they hold
// `permission`; otherwise the page says what `permission` is needed for and shows its
// `#denied` part, if it has one, and the answer is null.
export async function adminPage(permission, needed) {
  const me = await ensureSession();
  await setupHeader(me);
  if (me.permissions.includes(permission)) return me;
  document.getElementById("status").textContent = "";
  document.getElementById("error").textContent =
    `You are not allowed to ${needed}: that needs the ${permission} permission.`;
  const denied = document.getElementById("denied");
  if (denied) denied.hidden = false;
  return null;
}

// Every role, page by page, built-in ones first.
export async function allRoles() {
  const all = [];
  for (let n = 1; ; n++) {
    const list = await api("GET", `/api/roles?per_page=100&page=${n}`);
    all.push(...list.data);
    if (!list.data.length || all.length >= list.total) break;
  }
  return all.sort((a, b) => (b.builtin - a.builtin) || a.name.localeCompare(b.name));
}
