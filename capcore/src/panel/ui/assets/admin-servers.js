import { ensureSession, setupHeader } from "/assets/api.js";

ensureSession().then(setupHeader).then(() => { document.getElementById("status").textContent = ""; });
