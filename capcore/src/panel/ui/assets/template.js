// One template: its name, startup and stop, ready lines, images, variables (with their rules
// and whether users see and change them), install script and the rest, saved as a whole (PUT).
// The panel validates; the field its message names is marked.
import { adminPage, api, busy, confirming, el } from "/assets/api.js";

const $ = (x) => document.getElementById(x);
const id = decodeURIComponent(location.pathname.split("/")[3] || "");
const apiPath = `/api/templates/${encodeURIComponent(id)}`;
let template = null;
let rows = 0;

const lines = (text) => text.split(/\r?\n/).map((l) => l.trim()).filter(Boolean);
// A text as loaded when the form shows it unchanged (a text area reads CRLF back as LF, inputs
// are trimmed), else as the form has it.
const kept = (value, original) => {
  const same = (original ?? "").replace(/\r\n?/g, "\n");
  return value === same || value.trim() === same.trim() ? original : value;
};

// A remove button for a row; focus goes to the next useful place.
function removeButton(label, row, after) {
  const button = el("button", { type: "button", class: "secondary small", text: "Remove", "aria-label": label });
  button.addEventListener("click", () => {
    const next = row.nextElementSibling?.querySelector("input, select");
    row.remove();
    (next || after).focus();
    showEmpty();
  });
  return button;
}

function input(attrs, value) {
  const node = el("input", { type: "text", autocomplete: "off", spellcheck: "false", ...attrs });
  node.value = value ?? "";
  return node;
}

function readyRow(pattern) {
  const n = rows++;
  const type = el("select", { id: `ready-type-${n}`, "data-field": "type", "aria-label": "Match" },
    el("option", { value: "contains", text: "Contains" }), el("option", { value: "regex", text: "Regular expression" }));
  type.value = pattern.type === "regex" ? "regex" : "contains";
  const value = input({ id: `ready-value-${n}`, "data-field": "value", class: "mono", "aria-label": "Console text", maxlength: "1024" }, pattern.value);
  const row = el("div", { class: "row" }, type, value);
  row.append(removeButton("Remove this ready line", row, $("add-ready")));
  return row;
}

function imageRow(image) {
  const n = rows++;
  const label = input({ id: `image-label-${n}`, "data-field": "label", "aria-label": "Image label", placeholder: "Label", maxlength: "191" }, image.label);
  const ref = input({ id: `image-ref-${n}`, "data-field": "image", class: "mono", "aria-label": "Image", placeholder: "ghcr.io/…:tag", maxlength: "500" }, image.image);
  const row = el("div", { class: "row" }, label, ref);
  row.append(removeButton("Remove this image", row, $("add-image")));
  return row;
}

function check(idValue, text, checked, field) {
  const box = el("input", { type: "checkbox", id: idValue, "data-field": field });
  box.checked = checked;
  return el("label", { class: "check", for: idValue }, box, ` ${text}`);
}

function variableRow(v) {
  const n = rows++;
  const f = (name) => `var-${n}-${name}`;
  const field = (name, text, node, hint) => el("div", {},
    el("label", { for: f(name), text }), node, hint ? el("p", { class: "hint", text: hint }) : "");
  const legend = el("legend", { text: v.name || "New variable" });
  const name = input({ id: f("name"), "data-field": "name", maxlength: "191", required: "" }, v.name);
  name.addEventListener("input", () => { legend.textContent = name.value.trim() || "New variable"; });
  const description = el("textarea", { id: f("description"), "data-field": "description", rows: "2", maxlength: "10000" });
  description.value = v.description ?? "";
  const error = el("p", { class: "error", id: f("error"), role: "alert" });
  const row = el("fieldset", { class: "variable-row", "aria-describedby": f("error"), "data-description": v.description ?? "" },
    legend,
    el("div", { class: "grid-form" },
      field("name", "Name", name),
      field("env", "Environment variable",
        input({ id: f("env"), "data-field": "env", class: "mono", maxlength: "191", required: "", autocapitalize: "characters" }, v.env),
        "Letters, digits and _, such as SERVER_JARFILE."),
      field("default", "Default value", input({ id: f("default"), "data-field": "default", maxlength: "10000" }, v.default)),
      field("rules", "Rules", input({ id: f("rules"), "data-field": "rules", class: "mono", maxlength: "2000" }, v.rules))),
    field("description", "Description", description),
    el("div", { class: "checks" },
      check(f("viewable"), "Users see it", v.user_viewable !== false, "user_viewable"),
      check(f("editable"), "Users change it", v.user_editable !== false, "user_editable")),
    error);
  const tools = el("div", { class: "toolbar" });
  tools.append(removeButton(`Remove variable ${v.name || v.env || "(new)"}`, row, $("add-variable")));
  row.append(tools);
  return row;
}

function showEmpty() {
  $("no-variables").hidden = $("variables").children.length > 0;
}

function show(t) {
  template = t;
  const s = t.spec;
  $("title").textContent = s.name;
  $("crumb-name").textContent = s.name;
  document.title = `${s.name} · Ctrl-Alt-Play`;
  $("name").value = s.name;
  $("author").value = s.author;
  $("description").value = s.description;
  $("startup").value = s.startup;
  $("source").textContent = s.source_format ? `Format ${s.source_format}.` : "";
  const stopType = s.stop.type === "signal" ? "signal" : "command";
  $("stop-type").value = stopType;
  $("stop-command").value = stopType === "command" ? s.stop.value : "";
  $("stop-signal").value = stopType === "signal" ? s.stop.value : "SIGTERM";
  showStop();
  $("ready").replaceChildren(...s.ready_patterns.map(readyRow));
  $("images").replaceChildren(...s.images.map(imageRow));
  $("variables").replaceChildren(...s.variables.map(variableRow));
  showEmpty();
  $("install-entrypoint").value = s.install?.entrypoint ?? "bash";
  $("install-image").value = s.install?.image ?? "";
  $("install-script").value = s.install?.script ?? "";
  $("features").value = s.features.join("\n");
  $("denylist").value = s.file_denylist.join("\n");
  $("config-files").value = JSON.stringify(s.config_files, null, 2);
  $("backup-hooks").value = s.backup_hooks ? JSON.stringify(s.backup_hooks, null, 2) : "";
  $("export").setAttribute("href", `${apiPath}/export`);
  $("export").setAttribute("download", `egg-${s.name.replace(/[^A-Za-z0-9._-]+/g, "-").toLowerCase()}.json`);
}

function showStop() {
  const signal = $("stop-type").value === "signal";
  $("stop-command-box").hidden = signal;
  $("stop-signal-box").hidden = !signal;
}

// A JSON text area's value, or the field marked and a message.
function json(node, what, empty) {
  const text = node.value.trim();
  if (!text) return empty;
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new FieldError(node, `${what}: not valid JSON (${e.message})`);
  }
}

class FieldError extends Error {
  constructor(node, message) {
    super(message);
    this.node = node;
  }
}

// The spec as the form now has it; what the form does not show is kept as loaded.
function spec() {
  const rowsOf = (container) => [...container.children];
  const value = (row, field) => row.querySelector(`[data-field="${field}"]`);
  const script = $("install-script").value;
  const stop = $("stop-type").value === "signal"
    ? { type: "signal", value: $("stop-signal").value }
    : { type: "command", value: $("stop-command").value };
  if (stop.type === "command" && !stop.value.trim()) throw new FieldError($("stop-command"), "Enter the stop command, or stop with a signal.");
  return {
    ...template.spec,
    name: $("name").value.trim(),
    author: kept($("author").value.trim(), template.spec.author),
    description: kept($("description").value, template.spec.description),
    startup: kept($("startup").value.trim(), template.spec.startup),
    stop,
    ready_patterns: rowsOf($("ready")).map((r) => ({ type: value(r, "type").value, value: value(r, "value").value }))
      .filter((p) => p.value !== ""),
    images: rowsOf($("images")).map((r) => ({ label: value(r, "label").value.trim(), image: value(r, "image").value.trim() }))
      .filter((i) => i.image !== ""),
    variables: rowsOf($("variables")).map((r) => ({
      name: value(r, "name").value.trim(),
      description: kept(value(r, "description").value, r.dataset.description),
      env: value(r, "env").value.trim(),
      default: value(r, "default").value,
      user_viewable: value(r, "user_viewable").checked,
      user_editable: value(r, "user_editable").checked,
      rules: value(r, "rules").value.trim(),
    })),
    install: script.trim()
      ? { script: kept(script, template.spec.install?.script), entrypoint: $("install-entrypoint").value.trim() || "bash", image: $("install-image").value.trim() }
      : null,
    features: lines($("features").value),
    file_denylist: lines($("denylist").value),
    config_files: json($("config-files"), "Config files", []),
    backup_hooks: json($("backup-hooks"), "Backup hooks", null) ?? undefined,
  };
}

function clearMarks() {
  for (const node of $("template-form").querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
  for (const node of $("variables").querySelectorAll(".variable-row > .error")) node.textContent = "";
}

// The input an API message names (`variables[2].rules: unknown rule…`), marked, with the
// message next to it when it is a variable's.
function mark(message) {
  const field = /^([A-Za-z_]+)(?:\[(\d+)\])?(?:\.([A-Za-z_]+))?(?:\[\d+\])?:/.exec(message);
  if (!field) return null;
  const [, top, index, sub] = field;
  const nth = (container) => container.children[Number(index)];
  let node = null;
  if (top === "variables" && index !== undefined) {
    const row = nth($("variables"));
    if (row) {
      node = (sub && row.querySelector(`[data-field="${sub}"]`)) || row.querySelector("input");
      row.querySelector(".error").textContent = message.replace(/^variables\[\d+\]\.?[A-Za-z_]*:\s*/, "");
    }
  } else if (top === "ready_patterns" && index !== undefined) {
    node = nth($("ready"))?.querySelector("input");
  } else if (top === "images" && index !== undefined) {
    node = nth($("images"))?.querySelector(`[data-field="${sub || "image"}"]`);
  } else {
    const fields = {
      name: "name", author: "author", description: "description", startup: "startup", stop: "stop-command",
      install: "install-script", features: "features", file_denylist: "denylist", config_files: "config-files",
      backup_hooks: "backup-hooks",
    };
    node = fields[top] ? $(fields[top]) : null;
    if (node?.closest("details")) node.closest("details").open = true;
  }
  node?.setAttribute("aria-invalid", "true");
  return node;
}

$("stop-type").addEventListener("change", showStop);
$("add-ready").addEventListener("click", () => {
  const row = readyRow({ type: "contains", value: "" });
  $("ready").append(row);
  row.querySelector("input").focus();
});
$("add-image").addEventListener("click", () => {
  const row = imageRow({ label: "", image: "" });
  $("images").append(row);
  row.querySelector("input").focus();
});
$("add-variable").addEventListener("click", () => {
  const row = variableRow({ name: "", env: "", default: "", rules: "nullable|string", description: "" });
  $("variables").append(row);
  showEmpty();
  row.querySelector("input").focus();
});

$("template-form").addEventListener("submit", (event) => {
  event.preventDefault();
  $("saved").textContent = "";
  clearMarks();
  busy($("save"), $("save-error"), async () => {
    try {
      const body = spec();
      show(await api("PUT", apiPath, body));
      $("saved").textContent = "Saved.";
    } catch (e) {
      const node = e instanceof FieldError ? e.node : mark(e.message || "");
      if (node) {
        node.setAttribute("aria-invalid", "true");
        if (node.closest("details")) node.closest("details").open = true;
        node.focus();
      }
      throw new Error(`Not saved: ${e.message}`);
    }
  });
});

confirming($("delete"), "Confirm: delete this template", () => busy($("delete"), $("error"), async () => {
  await api("DELETE", apiPath);
  location.assign("/admin/templates");
}));

async function main() {
  if (!(await adminPage("SYSTEM_TEMPLATES", "change templates"))) return;
  show(await api("GET", apiPath));
  $("status").textContent = "";
  $("template-form").hidden = false;
  $("template-tools").hidden = false;
}

main().catch((e) => {
  $("status").textContent = "";
  $("error").textContent = e.status === 404 ? "There is no such template." : e.message || "The template could not be loaded.";
});
