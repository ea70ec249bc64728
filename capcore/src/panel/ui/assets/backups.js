import { loadServerPage } from "/assets/serverpage.js";

loadServerPage().then(() => { document.getElementById("status").textContent = ""; });
