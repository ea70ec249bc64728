// A new server: its name and owner, the node and the free address it listens on, the template
// with its variables (each with its description, default and rules) and the limits. The panel
// validates; the field its message names is marked. Created, it opens the server's page.
import { adminPage, api, busy, el } from "/assets/api.js";

const $ = (x) => document.getElementById(x);
// Lists are read this many pages of 100 at most.
const MAX_PAGES = 10;
const LIMITS = { memory_mb: "memory", swap_mb: "swap", cpu_percent: "cpu", disk_mb: "disk", io_weight: "io", pids: "pids" };
const FIELDS = {
  name: "name", description: "description", owner_id: "owner", node_id: "node", template_id: "template",
  allocation_id: "allocation",
};
let me = null;
let templates = [];
let nodes = [];
let allocationsFor = "";
const may = (p) => me.permissions.includes(p);

// Every item of a paged list (up to MAX_PAGES pages).
async function all(path) {
  const items = [];
  for (let page = 1; page <= MAX_PAGES; page++) {
    const list = await api("GET", `${path}${path.includes("?") ? "&" : "?"}page=${page}&per_page=100`);
    items.push(...list.data);
    if (items.length >= list.total || list.data.length === 0) break;
  }
  return items;
}

const ruleList = (rules) => (rules || "").split("|").map((r) => r.trim()).filter(Boolean);
const hasRule = (rules, name) => ruleList(rules).some((r) => r.toLowerCase() === name);

// The choices of an `in:a,b,c` rule, if the rules have one.
function choices(rules) {
  const rule = ruleList(rules).find((r) => r.toLowerCase().startsWith("in:"));
  return rule ? rule.slice(3).split(",") : null;
}

function variableField(v, i) {
  const id = `var-${i}`;
  const options = choices(v.rules);
  let input;
  if (options) {
    input = el("select", { id });
    if (!hasRule(v.rules, "required")) input.append(el("option", { value: "", text: "(none)" }));
    for (const option of options) input.append(el("option", { value: option, text: option }));
  } else {
    input = el("input", { id, type: "text", autocomplete: "off", spellcheck: "false" });
  }
  input.value = v.default;
  input.dataset.env = v.env;
  if (hasRule(v.rules, "required")) input.required = true;
  input.setAttribute("aria-describedby", `${id}-about ${id}-hint ${id}-error`);
  input.addEventListener("input", () => { input.removeAttribute("aria-invalid"); $(`${id}-error`).textContent = ""; });
  const notes = [];
  if (!v.user_viewable) notes.push("hidden from the owner");
  else if (!v.user_editable) notes.push("the owner cannot change it");
  const hint = [v.env, v.default ? `default ${v.default}` : "no default", v.rules ? `rules ${v.rules}` : "", ...notes]
    .filter(Boolean).join(" · ");
  return el("div", { class: "variable card" },
    el("label", { for: id }, v.name, input.required ? el("span", { class: "required", text: " (required)" }) : ""),
    el("p", { class: "hint", id: `${id}-about`, text: v.description || "" }),
    input,
    el("p", { class: "hint mono", id: `${id}-hint`, text: hint }),
    el("p", { class: "error", id: `${id}-error` }));
}

function showTemplate() {
  const t = templates.find((x) => x.id === $("template").value);
  $("template-about").textContent = t ? t.spec.description.split(/\r?\n/).find((l) => l.trim()) || "" : "";
  const variables = t ? t.spec.variables : [];
  $("variables").replaceChildren(...variables.map(variableField));
  $("no-variables").hidden = !t || variables.length > 0;
}

async function loadAllocations() {
  const node = $("node").value;
  const select = $("allocation");
  allocationsFor = node;
  select.disabled = true;
  $("allocation-error").replaceChildren();
  if (!node) {
    select.replaceChildren(el("option", { value: "", text: "Choose a node first" }));
    return;
  }
  select.replaceChildren(el("option", { value: "", text: "Loading…" }));
  let free;
  try {
    free = (await all(`/api/nodes/${encodeURIComponent(node)}/allocations`)).filter((a) => !a.server_id);
  } catch (e) {
    if (allocationsFor !== node) return;
    select.replaceChildren(el("option", { value: "", text: "Not available" }));
    $("allocation-error").textContent = e.message || "The allocations could not be loaded.";
    return;
  }
  // Another node was chosen meanwhile: its list wins.
  if (allocationsFor !== node) return;
  if (!free.length) {
    select.replaceChildren(el("option", { value: "", text: "No free allocation" }));
    $("allocation-error").replaceChildren("This node has no free address and port. ",
      el("a", { href: `/admin/nodes/${encodeURIComponent(node)}`, text: "Add allocations on its page" }), ".");
    return;
  }
  select.replaceChildren(el("option", { value: "", text: `First free (${free.length} free)` }),
    ...free.map((a) => el("option", { value: a.id, text: `${a.ip}:${a.port}` })));
  select.disabled = false;
}

function fillSelects(users) {
  const owner = $("owner");
  const meListed = users.some((u) => u.id === me.id);
  if (!meListed) owner.append(el("option", { value: me.id, text: `${me.username} (you)` }));
  for (const u of users) owner.append(el("option", { value: u.id, text: `${u.username} (${u.email})` }));
  owner.value = me.id;
  for (const n of nodes) {
    const option = el("option", { value: n.id, text: n.connected ? n.name : `${n.name} (offline)` });
    $("node").append(option);
  }
  if (nodes.length === 1) $("node").value = nodes[0].id;
  for (const t of templates) $("template").append(el("option", { value: t.id, text: t.spec.name }));
  if (templates.length === 1) $("template").value = templates[0].id;
  // A link from elsewhere may choose the node or template (`?node_id=…&template_id=…`).
  const params = new URLSearchParams(location.search);
  for (const [key, select] of [["node_id", "node"], ["template_id", "template"], ["owner_id", "owner"]]) {
    const value = params.get(key);
    if (value && [...$(select).options].some((o) => o.value === value)) $(select).value = value;
  }
}

// Clears what an earlier attempt marked.
function clearMarks() {
  for (const node of $("server-form").querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
  for (const node of $("server-form").querySelectorAll("p.error")) {
    if (node.id !== "allocation-error") node.textContent = "";
  }
}

// Marks `input` with `message` next to it.
function markInput(input, message) {
  input.setAttribute("aria-invalid", "true");
  const error = $(`${input.id}-error`);
  if (error) error.textContent = message;
}

// Marks the field an API message names (`environment.MOTD: must be…`, `limits.memory_mb: …`).
function markApiError(message) {
  const named = /^([A-Za-z_]+)(?:\.([A-Za-z0-9_]+))?:\s*(.*)$/s.exec(message);
  if (!named) return null;
  const [, top, sub, problem] = named;
  let input = null;
  if (top === "environment" && sub) {
    input = $("variables").querySelector(`[data-env="${CSS.escape(sub)}"]`);
    const label = input && $("variables").querySelector(`label[for="${input.id}"]`);
    if (input) markInput(input, `${label?.firstChild?.textContent || sub}: ${problem}`);
  } else if (top === "limits" && LIMITS[sub]) {
    input = $(LIMITS[sub]);
    markInput(input, problem);
  } else if (FIELDS[top]) {
    input = $(FIELDS[top]);
    markInput(input, problem);
  }
  return input;
}

// The checks the browser can make: what is missing, numbers that are not whole.
function checkForm() {
  const bad = [];
  const need = (input, message) => { markInput(input, message); bad.push(input); };
  if (!$("name").value.trim()) need($("name"), "Enter a name.");
  if (!$("owner").value) need($("owner"), "Choose the owner.");
  if (!$("node").value) need($("node"), "Choose a node.");
  if (!$("template").value) need($("template"), "Choose a template.");
  for (const input of $("variables").querySelectorAll("[data-env]")) {
    if (input.required && !input.value.trim()) {
      const label = $("variables").querySelector(`label[for="${input.id}"]`);
      need(input, `${label?.firstChild?.textContent || input.dataset.env}: a value is required.`);
    }
  }
  for (const id of Object.values(LIMITS)) {
    const input = $(id);
    const min = Number(input.min);
    const max = input.max === "" ? Infinity : Number(input.max);
    const v = input.value.trim();
    if (!/^-?[0-9]+$/.test(v)) need(input, "Enter a whole number.");
    else if (Number(v) < min || Number(v) > max) need(input, max === Infinity ? `At least ${min}.` : `From ${min} to ${max}.`);
  }
  return bad;
}

$("node").addEventListener("change", () => { $("node").removeAttribute("aria-invalid"); $("node-error").textContent = ""; loadAllocations(); });
$("template").addEventListener("change", () => { $("template").removeAttribute("aria-invalid"); $("template-error").textContent = ""; showTemplate(); });

$("server-form").addEventListener("submit", (event) => {
  event.preventDefault();
  clearMarks();
  const bad = checkForm();
  if (bad.length) {
    $("create-error").textContent = bad.length === 1 ? "Not created: check the marked field." : `Not created: check the ${bad.length} marked fields.`;
    bad[0].focus();
    return;
  }
  busy($("create"), $("create-error"), async () => {
    const environment = {};
    for (const input of $("variables").querySelectorAll("[data-env]")) environment[input.dataset.env] = input.value;
    const limits = {};
    for (const [key, id] of Object.entries(LIMITS)) limits[key] = Number($(id).value.trim());
    const body = {
      name: $("name").value.trim(),
      description: $("description").value.trim(),
      owner_id: $("owner").value,
      node_id: $("node").value,
      template_id: $("template").value,
      limits,
      environment,
    };
    if ($("allocation").value) body.allocation_id = $("allocation").value;
    let server;
    try {
      server = await api("POST", "/api/servers", body);
    } catch (e) {
      const input = markApiError(e.message || "");
      input?.focus();
      throw new Error(`Not created: ${e.message}`);
    }
    $("create").disabled = true;
    location.assign(`/servers/${encodeURIComponent(server.id)}`);
  });
});

async function main() {
  me = await adminPage("SERVER_CREATE", "create servers");
  if (!me) return;
  if (!may("SYSTEM_NODES")) {
    $("status").textContent = "";
    $("error").textContent = "Choosing a node needs the SYSTEM_NODES permission.";
    return;
  }
  let users;
  [nodes, templates, users] = await Promise.all([
    all("/api/nodes"),
    all("/api/templates"),
    may("USER_VIEW") ? all("/api/users") : [],
  ]);
  fillSelects(users);
  showTemplate();
  loadAllocations();
  $("status").textContent = [
    nodes.length ? "" : "There are no nodes yet: create one first.",
    templates.length ? "" : "There are no templates yet: import an egg first.",
  ].filter(Boolean).join(" ");
  $("server-form").hidden = false;
  $("name").focus();
}

main().catch((e) => { $("status").textContent = ""; $("error").textContent = e.message || "The form could not be loaded."; });
