import { ensureSession, setupHeader } from "/assets/api.js";

// The admin index: a link to each admin page this account may use (the header shows only those).
async function main() {
  const me = await ensureSession();
  await setupHeader(me);
  const shown = [...document.querySelectorAll("#admin-links li")].filter((li) => !li.hidden).length;
  document.getElementById("status").textContent = shown ? "" : "Your account has no administrative permissions.";
}

main().catch((e) => { document.getElementById("status").textContent = e.message; });
