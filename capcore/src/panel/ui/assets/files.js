// A server's file manager: folders browsed with the path in the address (`?path=`), a text
// editor for one file (`?edit=`), uploads, downloads, renames, copies, permissions, deletes and
// archives, each offered only to who holds the permission it needs. Every name and every
// byte of content goes into the page as text.
import { ApiError, api, busy, bytes, confirming, el, ensureSession, query, request } from "/assets/api.js";
import { loadServerPage, serverApi } from "/assets/serverpage.js";

const $ = (x) => document.getElementById(x);
const PAGE = 100;
// Files larger than this are offered for download, not opened in the editor.
const EDIT_LIMIT = 4 * 1024 * 1024;
const ARCHIVE = /\.(tar\.gz|tgz|tar\.zst|zip)$/i;
const BINARY = /\.(tar|gz|tgz|zst|zip|7z|rar|xz|bz2|jar|class|so|dll|exe|bin|png|jpe?g|gif|webp|ico|bmp|mp3|ogg|wav|mp4|mca|mcr|nbt|db|sqlite|pdf)$/i;

let permissions = [];
const may = (p) => permissions.includes(p);

// What is shown: a folder (or a search under it), or one file in the editor.
let view = { dir: "", q: "", edit: "" };
let order = "name";
let descending = false;
let offset = 0;
let entries = [];
let total = 0;
const selected = new Set();
let loads = 0;
let menus = 0;
let notice = "";
// What gets the focus once the list is shown again: the current crumb, or an entry by name.
const CRUMB = Symbol("crumb");
let focusAfter = null;

// Paths as the API takes them: `/`-separated, relative to the server's directory.
const clean = (p) => (p || "").split("/").filter((x) => x && x !== ".").join("/");
const join = (dir, name) => clean(dir ? `${dir}/${name}` : name);
const parentOf = (p) => clean(p).split("/").slice(0, -1).join("/");
const baseName = (p) => clean(p).split("/").pop() || "";
const contentUrl = (path, download) => serverApi("/files/content" + query({ path, download: download ? "true" : "" }));
const pageUrl = (params) => location.pathname + query(params);

function say(message) {
  $("status").textContent = message;
}

function fail(message) {
  $("files-error").textContent = message;
}

// ---------------------------------------------------------------------------------------------
// Where the page is: read from and written to the address, so reload and Back work.

function readLocation() {
  const params = new URLSearchParams(location.search);
  const edit = clean(params.get("edit"));
  return { dir: edit ? parentOf(edit) : clean(params.get("path")), q: edit ? "" : (params.get("q") || "").trim(), edit };
}

function go(params, { push = true, from = "" } = {}) {
  const url = pageUrl(params);
  if (push) history.pushState({ from }, "", url);
  else history.replaceState({ from }, "", url);
  return route();
}

async function route() {
  const next = readLocation();
  const folderChanged = next.dir !== view.dir || next.q !== view.q;
  view = next;
  crumbs();
  if (view.edit) return openEditor(view.edit);
  closeEditorView();
  if (folderChanged) {
    offset = 0;
    selected.clear();
  }
  $("search").value = view.q;
  return load();
}

// The breadcrumbs: the server's directory, then each folder down to where the page is, each a
// link; the current one is marked.
function crumbs() {
  const parts = clean(view.edit || view.dir).split("/").filter(Boolean);
  const items = [crumb("Home", "", parts.length === 0 && !view.q)];
  let at = "";
  parts.forEach((part, i) => {
    at = join(at, part);
    const last = i === parts.length - 1;
    items.push(view.edit && last ? el("li", {}, el("span", { "aria-current": "page", text: part })) : crumb(part, at, last && !view.q));
  });
  if (view.q) items.push(el("li", {}, el("span", { "aria-current": "page", text: `Search: “${view.q}”` })));
  $("path").replaceChildren(...items);
}

function crumb(text, path, current) {
  const link = el("a", { href: pageUrl({ path }), "data-path": path, text });
  if (current) link.setAttribute("aria-current", "location");
  return el("li", {}, link);
}

// Links inside the page (crumbs, folders, files) change the view without a reload; a click with
// a modifier key keeps its usual meaning (a new tab).
function followLinks(event) {
  const link = event.target.closest("a[data-path], a[data-edit]");
  if (!link || event.defaultPrevented || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  focusAfter = CRUMB;
  if (link.dataset.edit !== undefined) go({ edit: link.dataset.edit }, { from: "list" });
  else go({ path: link.dataset.path });
}

// ---------------------------------------------------------------------------------------------
// The folder.

async function load() {
  const mine = ++loads;
  const table = $("files");
  table.setAttribute("aria-busy", "true");
  say(view.q ? "Searching…" : "Loading…");
  fail("");
  $("listing").hidden = false;
  try {
    if (view.q) {
      const found = await api("GET", serverApi("/files/search" + query({ path: view.dir, query: view.q, limit: 500 })));
      if (mine !== loads) return;
      entries = found.entries;
      total = entries.length;
      notice ||= found.truncated ? `The first ${total} matches; narrow the search to see the rest.` : "";
    } else {
      const listing = await api("GET", serverApi("/files" + query({ path: view.dir, order, descending: descending ? "true" : "", offset, limit: PAGE })));
      if (mine !== loads) return;
      entries = listing.entries;
      total = listing.total;
    }
  } catch (e) {
    if (mine !== loads) return;
    entries = [];
    total = 0;
    fail(e.message || "The folder could not be read.");
  }
  for (const name of [...selected]) if (!entries.some((x) => key(x) === name)) selected.delete(name);
  render();
  table.removeAttribute("aria-busy");
  say(notice || summary());
  notice = "";
  if (focusAfter === CRUMB) $("path").querySelector("[aria-current]")?.focus();
  else if (focusAfter) [...table.querySelectorAll(".entry")].find((a) => a.dataset.name === focusAfter)?.focus();
  focusAfter = null;
}

function summary() {
  if (view.q) return total === 1 ? "1 match." : `${total} matches.`;
  const folders = entries.filter((x) => x.kind === "directory").length;
  const files = entries.length - folders;
  const shown = `${folders} ${folders === 1 ? "folder" : "folders"}, ${files} ${files === 1 ? "file" : "files"}`;
  return total > entries.length ? `${shown} of ${total} entries.` : `${shown}.`;
}

// Entries are told apart by name in a folder and by path in search results.
const key = (entry) => (view.q ? entry.path : entry.name);

const picking = () => !view.q && (may("FILE_DELETE") || may("FILE_ARCHIVE"));

function render() {
  const table = $("file-table");
  table.classList.toggle("no-pick", !picking());
  for (const th of table.querySelectorAll("th[data-order]")) {
    const sorted = !view.q && th.dataset.order === order;
    if (sorted) th.setAttribute("aria-sort", descending ? "descending" : "ascending");
    else th.removeAttribute("aria-sort");
    th.querySelector("button").disabled = !!view.q;
  }
  const rows = entries.map(row);
  if (!rows.length && !$("files-error").textContent) {
    const text = view.q ? `Nothing here has “${view.q}” in its name.` : "This folder is empty.";
    rows.push(el("tr", {}, el("td", { colspan: "5", class: "empty", text })));
  }
  $("files").replaceChildren(...rows);
  $("pager").hidden = view.q || total <= PAGE;
  $("page-info").textContent = `${offset + 1}–${offset + entries.length} of ${total}`;
  $("prev").disabled = offset === 0;
  $("next").disabled = offset + entries.length >= total;
  $("clear-search").hidden = !view.q;
  for (const id of ["new-folder", "new-file", "upload-box"]) $(id).hidden = !may("FILE_WRITE") || !!view.q;
  $("drop-hint").hidden = !may("FILE_WRITE") || !!view.q;
  selection();
}

const isText = (entry) => entry.kind === "file" && entry.size <= EDIT_LIMIT && !BINARY.test(entry.name);

function row(entry) {
  const name = view.q ? entry.path : entry.name;
  let label;
  if (entry.kind === "directory") {
    label = el("a", { class: "entry dir", href: pageUrl({ path: entry.path }), "data-path": entry.path, text: name });
  } else if (entry.kind === "file" && may("FILE_READ") && isText(entry)) {
    label = el("a", { class: "entry file", href: pageUrl({ edit: entry.path }), "data-edit": entry.path, text: name });
  } else if (entry.kind === "file" && may("FILE_READ")) {
    label = el("a", { class: "entry file", href: contentUrl(entry.path, true), download: "", text: name });
  } else {
    label = el("span", { class: `entry ${entry.kind === "symlink" ? "link" : "file"}`, tabindex: "-1", text: name });
  }
  label.dataset.name = key(entry);
  const nameCell = el("td", { class: "name" }, label);
  if (entry.kind === "symlink") nameCell.append(el("span", { class: "muted target", text: ` → ${entry.target ?? "?"}` }));
  if (entry.kind === "other") nameCell.append(el("span", { class: "muted target", text: " (special file)" }));

  const pick = el("td", { class: "pick" });
  if (picking()) {
    const box = el("input", { type: "checkbox", "aria-label": `Select ${name}` });
    box.checked = selected.has(key(entry));
    box.addEventListener("change", () => {
      if (box.checked) selected.add(key(entry));
      else selected.delete(key(entry));
      selection();
    });
    pick.append(box);
  }
  const modified = new Date(entry.modified_ms);
  const when = el("td", { class: "when", text: modified.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }) });
  when.title = modified.toISOString();
  return el("tr", { "data-name": key(entry), "data-kind": entry.kind },
    pick, nameCell,
    el("td", { class: "num", text: entry.kind === "directory" ? "" : bytes(entry.size) }),
    when,
    actions(entry, name));
}

// A row's actions, behind one button: a menu shown above the page (a popover), closed by Escape
// or a click elsewhere.
function actions(entry, name) {
  const cell = el("td", { class: "actions" });
  const items = [];
  const item = (text, act, run) => {
    const button = el("button", { type: "button", class: "small secondary", "data-act": act, text });
    if (run) button.addEventListener("click", () => run(button));
    items.push(button);
    return button;
  };
  if (entry.kind === "file" && may("FILE_READ")) {
    if (isText(entry)) {
      const open = el("a", { class: "button small secondary", href: pageUrl({ edit: entry.path }), "data-edit": entry.path, "data-act": "edit", text: may("FILE_WRITE") ? "Edit" : "View" });
      items.push(open);
    }
    items.push(el("a", { class: "button small secondary", href: contentUrl(entry.path, true), download: "", "data-act": "download", text: "Download" }));
  }
  if (may("FILE_WRITE")) {
    item("Rename or move", "rename", () => rename(entry));
    if (entry.kind === "file" || entry.kind === "directory") {
      item("Make a copy", "copy", (b) => duplicate(entry, b));
      item("Permissions", "chmod", () => chmod(entry));
    }
  }
  if (may("FILE_ARCHIVE") && entry.kind === "file" && ARCHIVE.test(entry.name)) item("Unpack", "decompress", () => decompress(entry));
  if (may("FILE_DELETE")) {
    const remove = item("Delete", "delete");
    remove.classList.replace("secondary", "danger");
    confirming(remove, "Confirm delete", () => busy(remove, $("files-error"), async () => {
      await api("POST", serverApi("/files/delete"), { paths: [entry.path] });
      closeMenus();
      notice = `Deleted “${name}”.`;
      const at = entries.findIndex((x) => x.path === entry.path);
      const next = entries[at + 1] ?? entries[at - 1];
      focusAfter = next ? key(next) : null;
      await load();
    }));
  }
  if (!items.length) return cell;
  const id = `menu-${++menus}`;
  const menu = el("div", { id, class: "menu", popover: "auto", role: "group", "aria-label": `Actions for ${name}` }, ...items);
  const opener = el("button", { type: "button", class: "small secondary more", popovertarget: id, "aria-label": `Actions for ${name}`, text: "⋯" });
  // Hidden (by the style sheet) until placed, so it never shows where it does not belong.
  menu.addEventListener("beforetoggle", (event) => {
    if (event.newState === "open") delete menu.dataset.placed;
  });
  menu.addEventListener("toggle", (event) => {
    if (event.newState === "open") place(menu, opener);
  });
  menu.addEventListener("click", (event) => {
    const hit = event.target.closest("a, button");
    if (hit && hit.dataset.act !== "delete") menu.hidePopover();
  });
  cell.append(opener, menu);
  return cell;
}

// Puts a menu under its button (or above it when there is no room below), inside the window.
function place(menu, opener) {
  const at = opener.getBoundingClientRect();
  const width = menu.offsetWidth;
  const height = menu.offsetHeight;
  const left = Math.max(8, Math.min(at.right - width, window.innerWidth - width - 8));
  const below = at.bottom + 4;
  const top = below + height > window.innerHeight - 8 ? Math.max(8, at.top - height - 4) : below;
  menu.style.left = `${left}px`;
  menu.style.top = `${top}px`;
  menu.dataset.placed = "";
  menu.querySelector("a, button")?.focus();
}

function closeMenus() {
  for (const menu of document.querySelectorAll(".menu:popover-open")) menu.hidePopover();
}

function selection() {
  const picked = selected.size;
  const boxes = [...$("files").querySelectorAll("input[type=checkbox]")];
  const all = $("select-all");
  all.checked = boxes.length > 0 && boxes.every((b) => b.checked);
  all.indeterminate = picked > 0 && !all.checked;
  all.disabled = boxes.length === 0;
  $("selection").hidden = picked === 0;
  $("selection").textContent = `${picked} selected`;
  $("delete-selected").hidden = picked === 0 || !may("FILE_DELETE");
  $("compress-selected").hidden = picked === 0 || !may("FILE_ARCHIVE");
}

// ---------------------------------------------------------------------------------------------
// A question asked in a dialog: a name or a path, checked by the server when it is sent; the
// dialog stays open with the server's answer when that answer is no. `action` resolves to what
// to do once the dialog is closed (show the list again, open the editor).

let answer = null;
let returnTo = null;

function ask({ title, label, value = "", hint = "", ok, select }, action) {
  $("prompt-title").textContent = title;
  $("prompt-label").textContent = label;
  $("prompt-hint").textContent = hint;
  $("prompt-ok").textContent = ok;
  $("prompt-error").textContent = "";
  const input = $("prompt-input");
  input.value = value;
  input.removeAttribute("aria-invalid");
  answer = action;
  const active = document.activeElement;
  returnTo = active?.closest?.(".menu")?.previousElementSibling ?? active;
  closeMenus();
  $("prompt").showModal();
  input.focus();
  if (select) input.setSelectionRange(0, select);
  else input.select();
}

$("prompt-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("prompt-input");
  const value = input.value.trim();
  if (!value) {
    input.setAttribute("aria-invalid", "true");
    $("prompt-error").textContent = `${$("prompt-label").textContent}: enter something first.`;
    return;
  }
  input.removeAttribute("aria-invalid");
  const then = await busy($("prompt-ok"), $("prompt-error"), () => answer(value));
  if (!then) {
    input.setAttribute("aria-invalid", "true");
    return;
  }
  $("prompt").close();
  await then();
});

$("prompt-cancel").addEventListener("click", () => $("prompt").close());
$("prompt").addEventListener("close", () => {
  if (returnTo?.isConnected && !returnTo.closest("[hidden]")) returnTo.focus();
  returnTo = null;
});

// Whether something is at `path` already: told by the folder shown when it is all on this
// page, else by the server (a missing entry is a 404).
async function exists(path) {
  if (!view.q && parentOf(path) === view.dir && offset === 0 && entries.length === total) {
    return entries.some((x) => x.name === baseName(path));
  }
  try {
    await api("GET", serverApi("/files/stat" + query({ path })));
    return true;
  } catch (e) {
    if (e.status === 404) return false;
    throw e;
  }
}

// Where a typed name leads: from the server's directory when it starts with `/`, else from `dir`.
const target = (dir, typed) => (typed.startsWith("/") ? clean(typed) : join(dir, typed));

function newFolder() {
  ask({ title: "New folder", label: "Folder name", hint: "Slashes make folders inside folders: a/b/c.", ok: "Create folder" }, async (typed) => {
    const path = target(view.dir, typed);
    if (await exists(path)) throw new Error(`“${path}” already exists.`);
    await api("POST", serverApi("/files/directory"), { path });
    notice = `Created the folder “${baseName(path)}”.`;
    focusAfter = baseName(path);
    return () => (parentOf(path) === view.dir ? load() : go({ path: parentOf(path) }));
  });
}

function newFile() {
  ask({ title: "New file", label: "File name", hint: "It is created empty and opened in the editor.", ok: "Create file" }, async (typed) => {
    const path = target(view.dir, typed);
    if (await exists(path)) throw new Error(`“${path}” already exists.`);
    await request("PUT", contentUrl(path), "", "text/plain; charset=utf-8");
    return () => go({ edit: path }, { from: "list" });
  });
}

function rename(entry) {
  const dot = entry.kind === "file" ? entry.name.lastIndexOf(".") : -1;
  ask({
    title: `Rename “${entry.name}”`,
    label: "New name",
    value: entry.name,
    hint: "A path moves it: ../name goes up one folder, /name to the server's directory.",
    ok: "Rename",
    select: dot > 0 ? dot : undefined,
  }, async (typed) => {
    const to = target(parentOf(entry.path), typed);
    if (to === entry.path) return () => {};
    const moved = await api("POST", serverApi("/files/rename"), { from: entry.path, to });
    notice = parentOf(moved.path) === parentOf(entry.path)
      ? `Renamed “${entry.name}” to “${moved.name}”.`
      : `Moved “${entry.name}” to “/${moved.path}”.`;
    focusAfter = view.q ? moved.path : moved.name;
    return load;
  });
}

// A copy next to the original: `name copy.ext`, `name copy 2.ext`…
async function duplicate(entry, button) {
  await busy(button, $("files-error"), async () => {
    const dot = entry.kind === "file" ? entry.name.lastIndexOf(".") : -1;
    const [stem, ext] = dot > 0 ? [entry.name.slice(0, dot), entry.name.slice(dot)] : [entry.name, ""];
    let to = "";
    for (let n = 1; n < 50 && !to; n++) {
      const candidate = join(parentOf(entry.path), `${stem} copy${n > 1 ? ` ${n}` : ""}${ext}`);
      if (!(await exists(candidate))) to = candidate;
    }
    if (!to) throw new Error(`“${entry.name}” has too many copies already.`);
    const copy = await api("POST", serverApi("/files/copy"), { from: entry.path, to });
    notice = `Copied “${entry.name}” to “${copy.name}”.`;
    focusAfter = view.q ? copy.path : copy.name;
    await load();
  });
}

function chmod(entry) {
  ask({
    title: `Permissions of “${entry.name}”`,
    label: "Mode (octal)",
    value: (entry.mode & 0o777).toString(8).padStart(3, "0"),
    hint: "Owner, group, others: 644 is read-write for the owner and read-only for the rest, 755 adds running.",
    ok: "Set permissions",
  }, async (typed) => {
    const changed = await api("POST", serverApi("/files/chmod"), { path: entry.path, mode: typed });
    notice = `“${entry.name}” now has mode ${(changed.mode & 0o777).toString(8).padStart(3, "0")}.`;
    focusAfter = key(entry);
    return load;
  });
}

function decompress(entry) {
  const stem = entry.name.replace(ARCHIVE, "") || "unpacked";
  ask({
    title: `Unpack “${entry.name}”`,
    label: "Into the folder",
    value: stem,
    hint: "It is created when missing; nothing in it is overwritten.",
    ok: "Unpack",
  }, async (typed) => {
    const into = target(parentOf(entry.path), typed);
    const report = await api("POST", serverApi("/files/decompress"), { archive: entry.path, into });
    notice = `Unpacked ${report.files} ${report.files === 1 ? "file" : "files"} (${bytes(report.bytes)}) into “/${report.path}”.`;
    focusAfter = parentOf(into) === view.dir ? baseName(into) : null;
    return load;
  });
}

function compressSelected() {
  const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-");
  const value = selected.size === 1 ? `${[...selected][0]}.tar.gz` : `archive-${stamp}.tar.gz`;
  ask({
    title: `Compress ${selected.size} ${selected.size === 1 ? "entry" : "entries"}`,
    label: "Archive name",
    value,
    hint: "Its ending picks the format: .tar.gz, .tgz, .tar.zst or .zip.",
    ok: "Compress",
    select: value.length - ".tar.gz".length,
  }, async (typed) => {
    const archive = target(view.dir, typed);
    const report = await api("POST", serverApi("/files/compress"), { dir: view.dir, paths: [...selected], archive });
    selected.clear();
    const left = report.links_left_out ? `; ${report.links_left_out} links leading outside were left out` : "";
    notice = `Packed ${report.files} ${report.files === 1 ? "file" : "files"} (${bytes(report.bytes)}) into “${baseName(report.path)}”${left}.`;
    focusAfter = parentOf(archive) === view.dir ? baseName(archive) : null;
    return load;
  });
}

// Uploads files into the folder, one after the other, each file's bytes as the request's body.
async function upload(files) {
  const list = [...files];
  if (!list.length || !may("FILE_WRITE")) return;
  const dir = view.dir;
  const failed = [];
  fail("");
  for (const [i, file] of list.entries()) {
    say(`Uploading “${file.name}” (${bytes(file.size)})${list.length > 1 ? `, ${i + 1} of ${list.length}` : ""}…`);
    try {
      await request("PUT", contentUrl(join(dir, file.name)), file, "application/octet-stream");
    } catch (e) {
      failed.push(`${file.name}: ${e.message}`);
    }
  }
  const done = list.length - failed.length;
  notice = done ? `Uploaded ${done === 1 && !failed.length ? `“${list[0].name}”` : `${done} ${done === 1 ? "file" : "files"}`}.` : "";
  if (done === 1 && !failed.length) focusAfter = list[0].name;
  if (view.dir === dir && !view.edit) await load();
  else say(notice);
  if (failed.length) fail(`Not uploaded: ${failed.join("; ")}`);
}

// ---------------------------------------------------------------------------------------------
// The editor: a text area with line numbers beside it, scrolled together.

let editing = null;
let lineCount = 0;

const text = $("editor-text");
const dirty = () => !!editing && !text.readOnly && text.value !== editing.saved;

function lines() {
  const value = text.value;
  let n = 1;
  for (let i = value.indexOf("\n"); i !== -1; i = value.indexOf("\n", i + 1)) n++;
  if (n !== lineCount) {
    lineCount = n;
    $("gutter").textContent = Array.from({ length: n }, (_, i) => i + 1).join("\n");
  }
  $("gutter").scrollTop = text.scrollTop;
}

function showDirty() {
  const changed = dirty();
  $("editor-save").disabled = !changed;
  $("editor").classList.toggle("changed", changed);
  if (changed) $("editor-state").textContent = "Unsaved changes";
  else if ($("editor-state").textContent === "Unsaved changes") $("editor-state").textContent = "";
  document.title = `${changed ? "• " : ""}${editing ? baseName(editing.path) : "Files"} · Ctrl-Alt-Play`;
  resetClose();
}

// A file's bytes, as they are (the JSON helper reads answers as JSON).
async function fetchContent(path, retried = false) {
  const response = await fetch(contentUrl(path), { credentials: "same-origin" });
  if (response.status === 401 && !retried) {
    await ensureSession();
    return fetchContent(path, true);
  }
  if (!response.ok) {
    const data = await response.json().catch(() => null);
    throw new ApiError(response.status, data?.error, data?.message);
  }
  return new Uint8Array(await response.arrayBuffer());
}

async function openEditor(path) {
  $("listing").hidden = true;
  $("search-form").hidden = true;
  $("editor").hidden = false;
  $("editor-name").textContent = baseName(path);
  $("editor-state").textContent = "Loading…";
  $("editor-download").hidden = !may("FILE_READ");
  $("editor-download").href = contentUrl(path, true);
  $("editor-save").hidden = true;
  $("code").hidden = true;
  $("editor-hint").hidden = true;
  fail("");
  say("");
  editing = null;
  text.value = "";
  lineCount = 0;
  document.title = `${baseName(path)} · Ctrl-Alt-Play`;
  const mine = ++loads;
  let raw;
  try {
    if (!may("FILE_READ")) throw new Error("You may not read this server's files.");
    raw = await fetchContent(path);
  } catch (e) {
    if (mine !== loads) return;
    $("editor-state").textContent = "";
    fail(e.message || "The file could not be read.");
    return;
  }
  if (mine !== loads) return;
  let content = null;
  try {
    if (!raw.includes(0)) content = new TextDecoder("utf-8", { fatal: true }).decode(raw);
  } catch {
    content = null;
  }
  if (content === null) {
    $("editor-state").textContent = "";
    fail(`“${baseName(path)}” is not text: download it instead.`);
    return;
  }
  // The text area holds lines ending in "\n"; a file written with "\r\n" is saved that way again.
  const crlf = content.includes("\r\n");
  text.value = crlf ? content.replace(/\r\n/g, "\n") : content;
  editing = { path, saved: text.value, crlf };
  text.readOnly = !may("FILE_WRITE");
  $("editor-save").hidden = text.readOnly;
  $("code").hidden = false;
  $("editor-hint").hidden = text.readOnly;
  $("editor-state").textContent = text.readOnly ? "Read only" : "";
  text.scrollTop = 0;
  lines();
  showDirty();
  text.focus();
  text.setSelectionRange(0, 0);
}

function closeEditorView() {
  editing = null;
  $("editor").hidden = true;
  $("search-form").hidden = !may("FILE_VIEW");
  document.title = "Files · Ctrl-Alt-Play";
}

async function save() {
  if (!editing || text.readOnly) return;
  const { path, crlf } = editing;
  const value = text.value;
  await busy($("editor-save"), $("files-error"), async () => {
    $("editor-state").textContent = "Saving…";
    try {
      await request("PUT", contentUrl(path), crlf ? value.replace(/\n/g, "\r\n") : value, "text/plain; charset=utf-8");
    } catch (e) {
      $("editor-state").textContent = "Unsaved changes";
      throw e;
    }
    if (editing?.path !== path) return;
    editing.saved = value;
    $("editor-state").textContent = `Saved at ${new Date().toLocaleTimeString()}`;
  });
  showDirty();
}

// Closing with unsaved changes takes a second press, which discards them.
let closeArmed = null;

function resetClose() {
  if (!closeArmed) return;
  clearTimeout(closeArmed);
  closeArmed = null;
  $("editor-close").textContent = "Close";
}

function closeEditor() {
  if (dirty() && !closeArmed) {
    $("editor-close").textContent = "Discard changes";
    $("editor-state").textContent = "Unsaved changes: press again to discard them";
    closeArmed = setTimeout(() => { closeArmed = null; $("editor-close").textContent = "Close"; showDirty(); }, 5000);
    return;
  }
  resetClose();
  const dir = parentOf(editing?.path ?? view.edit);
  focusAfter = baseName(editing?.path ?? view.edit);
  editing = null;
  if (history.state?.from === "list") history.back();
  else go({ path: dir }, { push: false });
}

text.addEventListener("input", () => { lines(); showDirty(); });
text.addEventListener("scroll", () => { $("gutter").scrollTop = text.scrollTop; });
text.addEventListener("keydown", (event) => {
  if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "s") {
    event.preventDefault();
    if (dirty()) save();
  }
});
$("editor-save").addEventListener("click", save);
$("editor-close").addEventListener("click", closeEditor);
window.addEventListener("beforeunload", (event) => {
  if (dirty()) event.preventDefault();
});

// ---------------------------------------------------------------------------------------------
// The controls.

$("path").addEventListener("click", followLinks);
$("files").addEventListener("click", followLinks);

for (const th of document.querySelectorAll("#file-table th[data-order]")) {
  th.querySelector("button").addEventListener("click", () => {
    if (order === th.dataset.order) descending = !descending;
    else [order, descending] = [th.dataset.order, th.dataset.order !== "name"];
    offset = 0;
    load();
  });
}

$("select-all").addEventListener("change", (event) => {
  for (const entry of entries) {
    if (event.target.checked) selected.add(key(entry));
    else selected.delete(key(entry));
  }
  for (const box of $("files").querySelectorAll("input[type=checkbox]")) box.checked = event.target.checked;
  selection();
});

confirming($("delete-selected"), "Confirm delete", () => busy($("delete-selected"), $("files-error"), async () => {
  const paths = [...selected].map((name) => join(view.dir, name));
  await api("POST", serverApi("/files/delete"), { paths });
  notice = `Deleted ${paths.length} ${paths.length === 1 ? "entry" : "entries"}.`;
  selected.clear();
  await load();
}));
$("compress-selected").addEventListener("click", compressSelected);
$("new-folder").addEventListener("click", newFolder);
$("new-file").addEventListener("click", newFile);
$("upload").addEventListener("change", async (event) => {
  const files = [...event.target.files];
  event.target.value = "";
  await upload(files);
});
$("prev").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); load(); });
$("next").addEventListener("click", () => { offset += PAGE; load(); });
$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const q = $("search").value.trim();
  if (q !== view.q) go({ path: view.dir, q });
});
$("clear-search").addEventListener("click", () => go({ path: view.dir }));

// Files dropped on the list are uploaded into the folder shown.
const drop = $("drop");
const carriesFiles = (event) => may("FILE_WRITE") && !view.q && [...(event.dataTransfer?.types || [])].includes("Files");
drop.addEventListener("dragover", (event) => {
  if (!carriesFiles(event)) return;
  event.preventDefault();
  drop.classList.add("dropping");
});
drop.addEventListener("dragleave", () => drop.classList.remove("dropping"));
drop.addEventListener("drop", (event) => {
  drop.classList.remove("dropping");
  if (!carriesFiles(event)) return;
  event.preventDefault();
  upload(event.dataTransfer.files);
});
window.addEventListener("scroll", closeMenus, { passive: true });
window.addEventListener("resize", closeMenus);

// Back and Forward move between folders; with unsaved changes in the editor they stay put.
window.addEventListener("popstate", () => {
  if (dirty() && readLocation().edit !== editing.path) {
    history.pushState({ from: "list" }, "", pageUrl({ edit: editing.path }));
    fail("This file has unsaved changes: save them, or press Close twice to discard them.");
    return;
  }
  route();
});

async function main() {
  ({ permissions } = await loadServerPage());
  if (!may("FILE_VIEW")) {
    say("");
    fail("You do not have access to this server's files.");
    return;
  }
  view = { dir: null, q: "", edit: "" };
  await route();
}

main().catch((e) => {
  say("");
  fail(e.message || "The files could not be loaded.");
});
