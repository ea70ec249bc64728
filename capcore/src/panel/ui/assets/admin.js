import { ensureSession, setupHeader } from "/assets/api.js";

// The admin index: a link to each admin page this account may use.
async function main() {
  const me = await ensureSession();
  await setupHeader(me);
  let shown = 0;
  for (const link of document.querySelectorAll("#admin-links a")) {
    const allowed = link.dataset.needs.split(" ").some((p) => me.permissions.includes(p));
    link.parentElement.hidden = !allowed;
    shown += allowed ? 1 : 0;
  }
  for (const link of document.querySelectorAll("nav.tabs a")) {
    const item = [...document.querySelectorAll("#admin-links a")].find((a) => a.getAttribute("href") === link.getAttribute("href"));
    if (item) link.hidden = item.parentElement.hidden;
  }
  document.getElementById("status").textContent = shown ? "" : "Your account has no administrative permissions.";
}

main().catch((e) => { document.getElementById("status").textContent = e.message; });
