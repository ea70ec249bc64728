import { api, busy, confirming, el, ensureSession, setupHeader, when } from "/assets/api.js";

const $ = (x) => document.getElementById(x);
let me = null;

function showTotp() {
  $("totp-state").textContent = me.totp_enabled
    ? "Two-factor authentication is on: logging in asks for a code."
    : "Two-factor authentication is off.";
  $("totp-begin").hidden = me.totp_enabled;
  $("totp-form").hidden = !me.totp_enabled && $("totp-setup").hidden;
  $("totp-submit").textContent = me.totp_enabled ? "Turn two-factor off" : "Confirm";
  $("totp-submit").classList.toggle("danger", me.totp_enabled);
}

// A QR code's rows of modules ("1" dark) on a canvas: 4 pixels a module, with the quiet zone of
// four light modules around it that a camera needs.
function drawQr(canvas, rows) {
  canvas.hidden = rows.length === 0;
  const scale = 4, quiet = 4, side = (rows.length + 2 * quiet) * scale;
  canvas.width = side;
  canvas.height = side;
  const g = canvas.getContext("2d");
  g.fillStyle = "#fff";
  g.fillRect(0, 0, side, side);
  g.fillStyle = "#000";
  rows.forEach((row, y) => {
    for (let x = 0; x < row.length; x++) {
      if (row[x] === "1") g.fillRect((x + quiet) * scale, (y + quiet) * scale, scale, scale);
    }
  });
}

$("totp-begin").addEventListener("click", () => busy($("totp-begin"), $("totp-error"), async () => {
  const setup = await api("POST", "/api/me/totp");
  // Groups of four are easier to type.
  $("totp-secret").textContent = setup.secret.replace(/(.{4})/g, "$1 ").trim();
  $("totp-uri").textContent = setup.otpauth_uri;
  drawQr($("totp-qr"), setup.qr);
  $("totp-setup").hidden = false;
  showTotp();
  $("totp-code").focus();
}));

$("totp-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const code = $("totp-code").value.replace(/\s/g, "");
  if (!/^[0-9]{6,8}$/.test(code)) {
    $("totp-error").textContent = "Enter the 6-digit code from your app.";
    $("totp-code").setAttribute("aria-invalid", "true");
    return;
  }
  $("totp-code").removeAttribute("aria-invalid");
  busy($("totp-submit"), $("totp-error"), async () => {
    if (me.totp_enabled) await api("DELETE", "/api/me/totp", { code });
    else await api("POST", "/api/me/totp/confirm", { code });
    me.totp_enabled = !me.totp_enabled;
    $("totp-setup").hidden = true;
    $("totp-code").value = "";
    showTotp();
  });
});

$("password-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const current = $("current-password").value;
  const next = $("new-password").value;
  if (!current || !next) {
    $("password-error").textContent = "Enter the current and the new password.";
    return;
  }
  if (next !== $("repeat-password").value) {
    $("password-error").textContent = "The new passwords differ.";
    $("repeat-password").setAttribute("aria-invalid", "true");
    return;
  }
  $("repeat-password").removeAttribute("aria-invalid");
  const button = event.target.querySelector("button[type=submit]");
  busy(button, $("password-error"), async () => {
    await api("PUT", "/api/me/password", { current_password: current, new_password: next });
    location.assign("/login?next=/account");
  });
});

async function loadKeys() {
  const keys = await api("GET", "/api/me/api-keys");
  const rows = keys.map((key) => {
    const revoke = el("button", { type: "button", class: "small danger", text: "Revoke" });
    revoke.setAttribute("aria-label", `Revoke ${key.name}`);
    confirming(revoke, "Confirm revoke", () => busy(revoke, $("key-error"), async () => {
      await api("DELETE", `/api/me/api-keys/${encodeURIComponent(key.id)}`);
      await loadKeys();
    }));
    return el("tr", {},
      el("td", { text: key.name }),
      el("td", { class: "mono", text: `${key.prefix}…` }),
      el("td", { text: key.permissions.length ? key.permissions.join(", ") : "none" }),
      el("td", { text: when(key.created_at) }),
      el("td", { text: key.last_used_at ? when(key.last_used_at) : "never" }),
      el("td", { text: key.expires_at ? when(key.expires_at) : "never" }),
      el("td", {}, revoke));
  });
  $("keys").replaceChildren(...(rows.length ? rows
    : [el("tr", {}, el("td", { colspan: "7", class: "empty", text: "No API keys yet." }))]));
}

async function loadPermissionChoices() {
  const catalogue = await api("GET", "/api/permissions");
  const mine = catalogue.filter((p) => me.permissions.includes(p.name));
  const boxes = mine.map((p) => {
    const box = el("input", { type: "checkbox", value: p.name, id: `perm-${p.name}` });
    return el("label", { class: "check", for: `perm-${p.name}`, title: p.description }, box, ` ${p.name}`);
  });
  $("key-permissions").append(...(boxes.length ? boxes
    : [el("p", { class: "muted", text: "Your account holds no global permissions; a key can still act on your own servers." })]));
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("key-name").value.trim();
  if (!name) {
    $("key-error").textContent = "Name the key.";
    $("key-name").setAttribute("aria-invalid", "true");
    return;
  }
  $("key-name").removeAttribute("aria-invalid");
  const permissions = [...$("key-permissions").querySelectorAll("input:checked")].map((b) => b.value);
  const expires = $("key-expires").value;
  const body = { name, permissions };
  if (expires) body.expires_at = new Date(`${expires}T23:59:59`).toISOString();
  busy(event.target.querySelector("button[type=submit]"), $("key-error"), async () => {
    const created = await api("POST", "/api/me/api-keys", body);
    $("key-secret").textContent = created.secret;
    $("key-created").hidden = false;
    event.target.reset();
    await loadKeys();
  });
});

async function main() {
  me = await ensureSession();
  await setupHeader(me);
  $("username").textContent = me.username;
  $("email").textContent = me.email;
  showTotp();
  await Promise.all([loadKeys(), loadPermissionChoices()]);
  $("status").textContent = "";
}

main().catch((e) => { $("status").textContent = e.message || "The account could not be loaded."; });
