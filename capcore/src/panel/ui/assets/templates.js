// The templates: each with its variables, an export as an egg and deletion; a new one imported
// from a Pterodactyl or Pelican egg file, or started from a name and a startup command.
import { api, busy, confirming, el, ensureSession, query, request, setupHeader } from "/assets/api.js";

const $ = (x) => document.getElementById(x);
const PER_PAGE = 50;
let page = 1;
let manage = false;

// A file name for an export: the template's name without characters file systems refuse.
function fileName(name) {
  const safe = name.replace(/[^A-Za-z0-9._ -]+/g, "").trim().replace(/\s+/g, "-").toLowerCase();
  return `egg-${safe || "template"}.json`;
}

function firstLine(text) {
  const line = (text || "").split(/\r?\n/).find((l) => l.trim()) || "";
  return line.length > 160 ? `${line.slice(0, 157)}…` : line;
}

function row(t) {
  const spec = t.spec;
  const href = `/admin/templates/${encodeURIComponent(t.id)}`;
  const actions = el("td", { class: "actions" });
  if (manage) {
    const exportLink = el("a", {
      class: "button small secondary", href: `/api/templates/${encodeURIComponent(t.id)}/export`,
      download: fileName(spec.name), text: "Export", "aria-label": `Export ${spec.name} as an egg`,
    });
    const remove = el("button", { type: "button", class: "small danger", text: "Delete", "aria-label": `Delete ${spec.name}` });
    confirming(remove, "Confirm delete", () => busy(remove, $("error"), async () => {
      await api("DELETE", `/api/templates/${encodeURIComponent(t.id)}`);
      $("imported").hidden = true;
      $("status").textContent = `Deleted ${spec.name}.`;
      await load();
    }));
    actions.append(exportLink, " ", remove);
  }
  return el("tr", { "data-id": t.id },
    el("td", {}, el("a", { href, text: spec.name }), spec.author ? el("span", { class: "cell-note", text: spec.author }) : ""),
    el("td", { class: "description", text: firstLine(spec.description) || "–" }),
    el("td", { class: "num", text: String(spec.variables.length) }),
    el("td", { text: spec.source_format || "–" }),
    actions);
}

async function load() {
  const list = await api("GET", `/api/templates${query({ page, per_page: PER_PAGE })}`);
  const pages = Math.max(1, Math.ceil(list.total / PER_PAGE));
  if (page > pages) {
    page = pages;
    return load();
  }
  const empty = manage ? "No templates yet. Import an egg or create one." : "There are no templates.";
  $("templates").replaceChildren(...(list.data.length ? list.data.map(row)
    : [el("tr", {}, el("td", { colspan: "5", class: "empty", text: empty }))]));
  $("pager").hidden = pages <= 1;
  $("page-info").textContent = `Page ${page} of ${pages} · ${list.total} templates`;
  $("prev").disabled = page <= 1;
  $("next").disabled = page >= pages;
  return undefined;
}

function showImported(template) {
  const spec = template.spec;
  const count = spec.variables.length;
  $("imported").replaceChildren(
    `Imported ${spec.name} (${spec.source_format || "egg"}) with ${count} variable${count === 1 ? "" : "s"}. `,
    el("a", { href: `/admin/templates/${encodeURIComponent(template.id)}`, text: "Open it" }));
  $("imported").hidden = false;
}

$("egg-file").addEventListener("change", () => {
  const file = $("egg-file").files[0];
  if (!file) return;
  $("imported").hidden = true;
  $("status").textContent = `Importing ${file.name}…`;
  busy(null, $("error"), async () => {
    try {
      const yaml = /\.ya?ml$/i.test(file.name);
      const body = await file.text();
      const template = await request("POST", "/api/templates/import", body, yaml ? "application/yaml" : "application/json");
      showImported(template);
      page = 1;
      await load();
    } catch (e) {
      throw new Error(`${file.name} could not be imported: ${e.message || "the panel refused it"}`);
    } finally {
      $("status").textContent = "";
      $("egg-file").value = "";
    }
  });
});

function showForm(show) {
  $("template-form").hidden = !show;
  $("new-template").setAttribute("aria-expanded", String(show));
  if (show) $("new-name").focus();
  else $("new-template").focus();
}

$("new-template").addEventListener("click", () => showForm($("template-form").hidden));
$("new-cancel").addEventListener("click", () => showForm(false));

$("template-form").addEventListener("submit", (event) => {
  event.preventDefault();
  busy($("new-create"), $("new-error"), async () => {
    const name = $("new-name").value.trim();
    const startup = $("new-startup").value.trim();
    $("new-name").setAttribute("aria-invalid", String(!name));
    $("new-startup").setAttribute("aria-invalid", String(!startup));
    if (!name || !startup) throw new Error("Enter the template's name and startup command.");
    const stop = $("new-stop").value.trim();
    const spec = {
      name,
      startup,
      stop: stop ? { type: "command", value: stop } : { type: "signal", value: "SIGTERM" },
      source_format: "cap_v1",
    };
    let created;
    try {
      created = await api("POST", "/api/templates", spec);
    } catch (e) {
      $("new-name").setAttribute("aria-invalid", String(e.message.startsWith("name:")));
      $("new-startup").setAttribute("aria-invalid", String(e.message.startsWith("startup:")));
      throw e;
    }
    location.assign(`/admin/templates/${encodeURIComponent(created.id)}`);
  });
});

$("prev").addEventListener("click", () => { page--; busy(null, $("error"), load); });
$("next").addEventListener("click", () => { page++; busy(null, $("error"), load); });

async function main() {
  const me = await ensureSession();
  await setupHeader(me);
  manage = me.permissions.includes("SYSTEM_TEMPLATES");
  if (!manage && !me.permissions.includes("SERVER_CREATE")) {
    $("status").textContent = "";
    $("egg-hint").hidden = true;
    $("error").textContent = "You are not allowed to see templates: that needs the SYSTEM_TEMPLATES permission.";
    return;
  }
  await load();
  $("template-actions").hidden = !manage;
  $("egg-hint").hidden = !manage;
  $("status").textContent = "";
  $("content").hidden = false;
}

main().catch((e) => { $("status").textContent = ""; $("error").textContent = e.message || "The templates could not be loaded."; });
