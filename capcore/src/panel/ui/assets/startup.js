// A server's startup variables: each with its description, default and rules, editable where the
// template allows it and the caller holds SERVER_UPDATE. The panel validates against the rules;
// its message is shown next to the variable it names.
import { api, busy, el } from "/assets/api.js";
import { loadServerPage, serverApi } from "/assets/serverpage.js";

const $ = (x) => document.getElementById(x);
let variables = [];
let mayEdit = false;

// The choices of an `in:a,b,c` rule, if the rules have one.
function choices(rules) {
  const rule = rules.split("|").find((r) => r.trim().toLowerCase().startsWith("in:"));
  return rule ? rule.trim().slice(3).split(",") : null;
}

function field(v, i) {
  const id = `var-${i}`;
  const options = choices(v.rules);
  const editable = mayEdit && v.user_editable;
  let input;
  if (options) {
    input = el("select", { id });
    for (const option of options) input.append(el("option", { value: option, text: option }));
    input.value = v.value;
  } else {
    input = el("input", { id, type: "text", autocomplete: "off" });
    input.value = v.value;
  }
  input.dataset.env = v.env;
  input.disabled = !editable;
  if (v.rules.split("|").includes("required")) input.required = true;
  const hint = `${v.env}${v.default ? ` · default ${v.default}` : ""}${v.rules ? ` · rules ${v.rules}` : ""}`;
  const error = el("p", { class: "error", id: `${id}-error`, role: "alert" });
  input.setAttribute("aria-describedby", `${id}-hint ${id}-error`);
  return el("div", { class: "variable card" },
    el("label", { for: id, text: v.name }),
    v.description ? el("p", { class: "hint", text: v.description }) : "",
    input,
    el("p", { class: "hint mono", id: `${id}-hint`, text: hint }),
    editable ? "" : el("p", { class: "hint", text: "Read only" }),
    error);
}

function render() {
  $("variables").replaceChildren(...variables.map(field));
  $("variables-form").hidden = false;
  $("variables-save").hidden = !variables.some((v) => mayEdit && v.user_editable);
  $("status").textContent = variables.length ? "" : "This server's template has no startup variables.";
}

// Clears the marks of an earlier attempt and marks the variable an error names.
function mark(message) {
  for (const input of $("variables").querySelectorAll("[data-env]")) {
    input.removeAttribute("aria-invalid");
    $(`${input.id}-error`).textContent = "";
  }
  const named = message && /(?:environment|values)\.([A-Za-z0-9_]+)/.exec(message);
  const input = named && $("variables").querySelector(`[data-env="${CSS.escape(named[1])}"]`);
  if (!input) return false;
  input.setAttribute("aria-invalid", "true");
  const v = variables.find((x) => x.env === named[1]);
  $(`${input.id}-error`).textContent = `${v ? v.name : named[1]}: ${message.slice(named.index + named[0].length).replace(/^[:\s]+/, "")}`;
  input.focus();
  return true;
}

$("variables-form").addEventListener("submit", (event) => {
  event.preventDefault();
  $("variables-saved").textContent = "";
  const values = {};
  for (const input of $("variables").querySelectorAll("[data-env]")) {
    const v = variables.find((x) => x.env === input.dataset.env);
    if (!input.disabled && v && input.value !== v.value) values[v.env] = input.value;
  }
  if (Object.keys(values).length === 0) {
    mark(null);
    $("variables-saved").textContent = "Nothing changed.";
    return;
  }
  busy($("variables-save"), $("variables-error"), async () => {
    try {
      variables = await api("PUT", serverApi("/variables"), { values });
    } catch (e) {
      if (mark(e.message)) {
        $("variables-error").textContent = "Not saved: a value breaks its variable's rules.";
        return;
      }
      throw e;
    }
    render();
    mark(null);
    $("variables-saved").textContent = "Saved. The new values apply at the next start.";
  });
});

async function main() {
  const { permissions } = await loadServerPage();
  mayEdit = permissions.includes("SERVER_UPDATE");
  variables = await api("GET", serverApi("/variables"));
  render();
}

main().catch((e) => { $("status").textContent = e.message || "The variables could not be loaded."; });
