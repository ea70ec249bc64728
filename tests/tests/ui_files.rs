//! The file manager page in a real browser (Debian's Chromium through chromedriver) against a
//! real agent: browsing with breadcrumbs and the address, uploading, editing, renaming, copying,
//! archives and deleting, hostile names shown as text, refusals shown as messages, and a
//! subuser who may only look. Screenshots go to `target/ui-screenshots/`.

use axum::http::Method;
use cap_tests::e2e::{AgentNode, scratch_dir};
use cap_tests::webdriver::Browser;
use cap_tests::{Cred, PASSWORD, TestPanel};
use serde_json::json;
use std::path::PathBuf;

const XSS_FILE: &str = "<img src=x onerror=alert(1)>.txt";

/// A server with its files on disk, owned by `owner`.
struct Scene {
    panel: TestPanel,
    base: String,
    server: String,
    owner: Cred,
    files: PathBuf,
    _agent: AgentNode,
}

async fn scene(tag: &str) -> Scene {
    let panel = TestPanel::start().await;
    let agent = panel.agent_node(tag, 4, &[]).await;
    let (owner_id, owner) = panel.user(&format!("{tag}-owner"), &[]).await;
    let template = panel.game_template(&format!("{tag}-game"), &[], json!({"type": "command", "value": "stop"})).await;
    let server = panel.server("filed", &owner_id, &agent.node, &template).await;
    panel.wait_state(&server, "offline").await;
    let files = agent.agent.data_dir.join("servers").join(&server);
    let base = format!("http://{}", agent.addr);
    let scene = Scene { panel, base, server, owner, files, _agent: agent };
    scene.put("notes.txt", "line one\nline two\n").await;
    scene.put(XSS_FILE, "<b>not bold</b>\n").await;
    scene
}

impl Scene {
    /// Writes a file through the REST API, as the owner.
    async fn put(&self, path: &str, content: &str) {
        let url = format!("/api/servers/{}/files/content?path={}", self.server, urlencoding(path));
        let (status, body) =
            self.panel.raw(Method::PUT, &url, &self.owner, content.to_string(), "application/octet-stream").await;
        assert_eq!(status, 200, "write {path}: {body}");
    }

    /// The names in a directory, through the REST API.
    async fn names(&self, dir: &str) -> Vec<String> {
        let url = format!("/api/servers/{}/files?path={}", self.server, urlencoding(dir));
        let (status, body) = self.panel.get(&url, &self.owner).await;
        assert_eq!(status, 200, "list {dir}: {body}");
        body["entries"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_string()).collect()
    }

    fn disk(&self, path: &str) -> PathBuf {
        self.files.join(path)
    }
}

fn urlencoding(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The CSS selector of the table row of the entry `name` (by its position, which names with
/// quotes and brackets could not be).
async fn row(browser: &Browser, name: &str) -> String {
    let at = browser
        .execute(
            "return [...document.querySelectorAll('#files tr')].findIndex(r => r.dataset.name === arguments[0]) + 1;",
            json!([name]),
        )
        .await;
    let at = at.as_u64().unwrap_or(0);
    assert!(at > 0, "no row for `{name}`");
    format!("#files tr:nth-child({at})")
}

/// Opens the actions menu of the entry `name` and presses its `item`.
async fn act(browser: &Browser, name: &str, item: &str) {
    let row = row(browser, name).await;
    browser.click(&format!("{row} button.more")).await;
    browser.wait_for("the menu", &format!("document.querySelector('{row} .menu:popover-open[data-placed]')")).await;
    browser.click(&format!("{row} [data-act={item}]")).await;
}

async fn wait_dialog(browser: &Browser, open: bool) {
    browser
        .wait_for(&format!("the dialog open={open}"), &format!("document.querySelector('#prompt').open === {open}"))
        .await;
}

/// Answers the dialog with `text` (the field emptied first).
async fn answer(browser: &Browser, text: &str) {
    wait_dialog(browser, true).await;
    browser.execute("document.querySelector('#prompt-input').value = '';", json!([])).await;
    browser.type_into("#prompt-input", text).await;
    browser.click("#prompt-ok").await;
}

/// The names in the table, in order.
async fn shown(browser: &Browser) -> Vec<String> {
    let names = browser
        .execute("return [...document.querySelectorAll('#files tr[data-name]')].map(r => r.dataset.name);", json!([]))
        .await;
    serde_json::from_value(names).unwrap()
}

async fn wait_listed(browser: &Browser, name: &str, listed: bool) {
    browser
        .wait_for(
            &format!("`{name}` listed={listed}"),
            &format!(
                "document.querySelector('#listing')?.hidden === false \
                 && document.querySelector('#files')?.hasAttribute('aria-busy') === false \
                 && [...document.querySelectorAll('#files tr')].some(r => r.dataset.name === {}) === {listed}",
                json!(name)
            ),
        )
        .await;
}

/// Reads the page's console away: one failed request for each of `statuses`, nothing else.
async fn expect_console(browser: &Browser, statuses: &[&str]) {
    let errors = browser.console_errors().await;
    assert_eq!(errors.len(), statuses.len(), "{errors:?}");
    for (error, status) in errors.iter().zip(statuses) {
        assert!(error.contains("/files/") && error.contains(&format!("status of {status}")), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_browses_uploads_edits_renames_archives_and_deletes_files() {
    let Some(browser) = Browser::start("files", None).await else { return };
    Box::pin(tenant(&browser)).await;
}

async fn tenant(browser: &Browser) {
    let s = scene("ui-files").await;
    let email = "ui-files-owner@example.org";

    // Not logged in: the files page sends the browser to log in, and back after.
    browser.goto(&format!("{}/servers/{}/files", s.base, s.server)).await;
    browser.log_in(email, PASSWORD).await;
    browser.wait_for("the files page", &format!("location.pathname === '/servers/{}/files'", s.server)).await;
    browser.console_errors().await;
    assert_eq!(browser.wait_text("#server-tabs a[aria-current=page]", "Files").await, "Files");

    // The server's directory, what the install wrote in it, the hostile name as text.
    wait_listed(browser, "installed.txt", true).await;
    let names = shown(browser).await;
    for name in ["installed.txt", "notes.txt", XSS_FILE] {
        assert!(names.contains(&name.to_string()), "{name} in {names:?}");
    }
    assert!(browser.text("#files").await.contains(XSS_FILE));
    assert_eq!(browser.count("img").await, json!(0), "no element was made from a file name");
    assert_eq!(browser.count("#files b").await, json!(0));
    assert_eq!(browser.text("#path [aria-current]").await, "Home");
    let status = browser.text("#status").await;
    assert!(status.contains("file"), "a summary of the folder: {status}");
    assert_eq!(browser.unlabelled().await, Vec::<serde_json::Value>::new(), "files-list: every field labelled");
    browser.screenshot("files-list").await;

    // A new folder, listed before the files; into it through the table, where it is empty.
    browser.click("#new-folder").await;
    answer(browser, "configs").await;
    wait_dialog(browser, false).await;
    wait_listed(browser, "configs", true).await;
    assert!(s.disk("configs").is_dir());
    assert_eq!(shown(browser).await[0], "configs", "folders come first");
    browser.wait_text("#status", "Created the folder").await;
    // The same name again is refused, and says so.
    browser.click("#new-folder").await;
    answer(browser, "configs").await;
    let refused = browser.wait_text("#prompt-error", "already exists").await;
    assert!(refused.contains("configs"), "{refused}");
    browser.click("#prompt-cancel").await;
    wait_dialog(browser, false).await;

    browser.click(&format!("{} a.entry", row(browser, "configs").await)).await;
    browser.wait_for("the folder in the address", "location.search === '?path=configs'").await;
    browser.wait_text("#files", "This folder is empty.").await;
    let crumbs =
        browser.execute("return [...document.querySelectorAll('#path a')].map(a => a.textContent);", json!([])).await;
    assert_eq!(crumbs, json!(["Home", "configs"]));
    assert_eq!(browser.text("#path [aria-current]").await, "configs");
    browser.screenshot("files-empty-folder").await;

    // An upload through the file input lands in the folder shown.
    let local = scratch_dir("ui-files-upload").join("server.properties");
    std::fs::write(&local, "motd=hello\nmax-players=8\n").unwrap();
    browser.type_into("#upload", &local.display().to_string()).await;
    wait_listed(browser, "server.properties", true).await;
    browser.wait_text("#status", "Uploaded “server.properties”").await;
    assert_eq!(std::fs::read_to_string(s.disk("configs/server.properties")).unwrap(), "motd=hello\nmax-players=8\n");

    // A reload keeps the folder; the crumb goes home, Back comes back.
    browser.goto(&browser.url().await).await;
    wait_listed(browser, "server.properties", true).await;
    browser.click("#path a[data-path='']").await;
    wait_listed(browser, "notes.txt", true).await;
    browser.wait_for("the address", "location.search === ''").await;
    browser.execute("history.back();", json!([])).await;
    wait_listed(browser, "server.properties", true).await;
    browser.wait_for("the address", "location.search === '?path=configs'").await;
    browser.click("#path a[data-path='']").await;
    wait_listed(browser, "notes.txt", true).await;

    Box::pin(edit(browser, &s)).await;
    Box::pin(rename_and_refusals(browser, &s)).await;
    Box::pin(archives_and_deletes(browser, &s)).await;

    // The pages ran under their Content-Security-Policy without an error or a violation.
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "{errors:?}");
}

/// The editor: a file opened, changed, saved with the button and with Ctrl+S.
async fn edit(browser: &Browser, s: &Scene) {
    browser.click(&format!("{} a.entry", row(browser, "notes.txt").await)).await;
    browser
        .wait_for("the editor", "!document.querySelector('#editor').hidden && !document.querySelector('#code').hidden")
        .await;
    browser.wait_for("the address", "location.search === '?edit=notes.txt'").await;
    assert_eq!(browser.text("#editor-name").await, "notes.txt");
    let value = browser.execute("return document.querySelector('#editor-text').value;", json!([])).await;
    assert_eq!(value, json!("line one\nline two\n"));
    assert_eq!(browser.text("#gutter").await, "1\n2\n3", "a number for each line");
    let save_disabled = browser.execute("return document.querySelector('#editor-save').disabled;", json!([])).await;
    assert_eq!(save_disabled, json!(true), "nothing to save yet");

    // Ctrl+End, then the new line: the caret starts at the top.
    browser.type_into("#editor-text", "\u{E009}\u{E010}\u{E000}line three <b>x</b>\n").await;
    browser.wait_text("#editor-state", "Unsaved changes").await;
    assert_eq!(browser.text("#gutter").await, "1\n2\n3\n4");
    assert!(browser.execute("return document.title;", json!([])).await.as_str().unwrap().starts_with("• "));
    browser.screenshot("files-editor-unsaved").await;
    browser.click("#editor-save").await;
    browser.wait_text("#editor-state", "Saved at").await;
    let want = "line one\nline two\nline three <b>x</b>\n";
    assert_eq!(std::fs::read_to_string(s.disk("notes.txt")).unwrap(), want);
    assert_eq!(s.panel.last_audit("file.write").await["detail"]["path"], "notes.txt");

    // The keyboard: Ctrl+S saves.
    browser.type_into("#editor-text", "four\u{E009}s\u{E000}").await;
    // The keys are taken before the call returns: the state is "Saving…", then "Saved at".
    browser.wait_for("saved again", "document.querySelector('#editor-state').textContent.startsWith('Saved at')").await;
    assert_eq!(std::fs::read_to_string(s.disk("notes.txt")).unwrap(), format!("{want}four"));
    assert_eq!(browser.unlabelled().await, Vec::<serde_json::Value>::new(), "files-editor-saved: every field labelled");
    browser.screenshot("files-editor-saved").await;

    // Closing goes back to the folder, with the file focused.
    browser.click("#editor-close").await;
    wait_listed(browser, "notes.txt", true).await;
    browser.wait_for("the address", "location.search === ''").await;
    browser.wait_for("the file focused", "document.activeElement?.dataset?.name === 'notes.txt'").await;

    // A closed editor with changes asks once more; the hostile name stays text in the editor.
    browser.click(&format!("{} a.entry", row(browser, XSS_FILE).await)).await;
    browser.wait_for("the editor", "!document.querySelector('#code').hidden").await;
    assert_eq!(browser.text("#editor-name").await, XSS_FILE);
    assert_eq!(browser.text("#path [aria-current]").await, XSS_FILE);
    assert_eq!(browser.count("img").await, json!(0));
    browser.type_into("#editor-text", "changed").await;
    browser.wait_text("#editor-state", "Unsaved changes").await;
    browser.click("#editor-close").await;
    browser.wait_text("#editor-close", "Discard changes").await;
    assert!(!browser.execute("return document.querySelector('#editor').hidden;", json!([])).await.as_bool().unwrap());
    browser.click("#editor-close").await;
    wait_listed(browser, XSS_FILE, true).await;
    assert_eq!(std::fs::read_to_string(s.disk(XSS_FILE)).unwrap(), "<b>not bold</b>\n", "discarded");

    // A new file is made empty and opened.
    browser.click("#new-file").await;
    answer(browser, "ops.json").await;
    browser
        .wait_for(
            "the new file in the editor",
            "location.search === '?edit=ops.json' && !document.querySelector('#code').hidden",
        )
        .await;
    browser.type_into("#editor-text", "[]").await;
    browser.click("#editor-save").await;
    browser.wait_text("#editor-state", "Saved at").await;
    assert_eq!(std::fs::read_to_string(s.disk("ops.json")).unwrap(), "[]");
    browser.click("#editor-close").await;
    wait_listed(browser, "ops.json", true).await;
    browser.wait_for("the new file focused", "document.activeElement?.dataset?.name === 'ops.json'").await;
}

/// Renames, and what the server refuses, shown in the dialog as the server said it.
async fn rename_and_refusals(browser: &Browser, s: &Scene) {
    act(browser, "notes.txt", "rename").await;
    wait_dialog(browser, true).await;
    // The name is offered with its stem selected: typing replaces it, the extension stays.
    browser.type_into("#prompt-input", "readme").await;
    let typed = browser.execute("return document.querySelector('#prompt-input').value;", json!([])).await;
    assert_eq!(typed, json!("readme.txt"));
    browser.click("#prompt-ok").await;
    wait_listed(browser, "readme.txt", true).await;
    wait_listed(browser, "notes.txt", false).await;
    assert!(s.disk("readme.txt").is_file() && !s.disk("notes.txt").exists());
    browser.wait_text("#status", "Renamed “notes.txt” to “readme.txt”").await;
    browser.wait_for("the renamed file focused", "document.activeElement?.dataset?.name === 'readme.txt'").await;

    // Onto an existing name: refused, the dialog stays open with the reason.
    act(browser, "readme.txt", "rename").await;
    answer(browser, "installed.txt").await;
    let message = browser.wait_text("#prompt-error", "already exists").await;
    assert!(message.contains("installed.txt"), "{message}");
    assert_eq!(
        browser
            .execute("return document.querySelector('#prompt-input').getAttribute('aria-invalid');", json!([]))
            .await,
        json!("true")
    );
    browser.screenshot("files-rename-refused").await;
    // Out of the server's directory: refused too.
    browser.execute("document.querySelector('#prompt-input').value = '';", json!([])).await;
    browser.type_into("#prompt-input", "../x").await;
    browser.click("#prompt-ok").await;
    browser.wait_text("#prompt-error", "leads outside the server's directory").await;
    browser.click("#prompt-cancel").await;
    wait_dialog(browser, false).await;
    assert!(s.disk("readme.txt").is_file());
    expect_console(browser, &["409", "403"]).await;

    // A move into a folder, by a path.
    act(browser, "readme.txt", "copy").await;
    wait_listed(browser, "readme copy.txt", true).await;
    act(browser, "readme copy.txt", "rename").await;
    answer(browser, "configs/readme.txt").await;
    wait_listed(browser, "readme copy.txt", false).await;
    browser.wait_text("#status", "Moved “readme copy.txt” to “/configs/readme.txt”").await;
    assert_eq!(
        std::fs::read_to_string(s.disk("configs/readme.txt")).unwrap(),
        "line one\nline two\nline three <b>x</b>\nfour"
    );

    // Permissions.
    act(browser, "readme.txt", "chmod").await;
    wait_dialog(browser, true).await;
    assert_eq!(browser.execute("return document.querySelector('#prompt-input').value;", json!([])).await, json!("644"));
    answer(browser, "600").await;
    browser.wait_text("#status", "now has mode 600").await;
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(s.disk("readme.txt")).unwrap().permissions().mode() & 0o777, 0o600);

    // The download link is the file's content, authenticated by the session cookie.
    let link = row(browser, "installed.txt").await;
    let href = browser
        .execute(
            "return document.querySelector(arguments[0] + ' [data-act=download]').getAttribute('href');",
            json!([link]),
        )
        .await;
    let href = href.as_str().unwrap().to_string();
    assert!(href.ends_with("/files/content?path=installed.txt&download=true"), "{href}");
    browser
        .execute("fetch(arguments[0]).then(r => r.text()).then(t => { window.downloaded = t; });", json!([href]))
        .await;
    browser.wait_for("the download", "window.downloaded === 'done\\n'").await;
}

/// Several entries selected, packed and unpacked; deletes asking twice.
async fn archives_and_deletes(browser: &Browser, s: &Scene) {
    for name in ["readme.txt", "configs"] {
        browser.click(&format!("{} .pick input", row(browser, name).await)).await;
    }
    browser.wait_text("#selection", "2 selected").await;
    browser.screenshot("files-selected").await;
    browser.click("#compress-selected").await;
    answer(browser, "bundle.tar.gz").await;
    wait_listed(browser, "bundle.tar.gz", true).await;
    browser.wait_text("#status", "into “bundle.tar.gz”").await;
    assert!(browser.execute("return document.querySelector('#selection').hidden;", json!([])).await.as_bool().unwrap());

    act(browser, "bundle.tar.gz", "decompress").await;
    wait_dialog(browser, true).await;
    assert_eq!(
        browser.execute("return document.querySelector('#prompt-input').value;", json!([])).await,
        json!("bundle")
    );
    browser.click("#prompt-ok").await;
    wait_listed(browser, "bundle", true).await;
    assert!(s.disk("bundle/readme.txt").is_file() && s.disk("bundle/configs/server.properties").is_file());

    // One entry from its menu: the first press only arms the button.
    act(browser, "readme.txt", "delete").await;
    let armed = row(browser, "readme.txt").await;
    browser.wait_text(&format!("{armed} [data-act=delete]"), "Confirm delete").await;
    assert!(s.disk("readme.txt").exists(), "nothing deleted on the first press");
    browser.click(&format!("{armed} [data-act=delete]")).await;
    wait_listed(browser, "readme.txt", false).await;
    assert!(!s.disk("readme.txt").exists());

    // Several at once.
    for name in ["bundle", "bundle.tar.gz"] {
        browser.click(&format!("{} .pick input", row(browser, name).await)).await;
    }
    browser.click("#delete-selected").await;
    browser.wait_text("#delete-selected", "Confirm delete").await;
    browser.click("#delete-selected").await;
    wait_listed(browser, "bundle", false).await;
    wait_listed(browser, "bundle.tar.gz", false).await;
    browser.wait_text("#status", "Deleted 2 entries").await;
    let mut left = s.names("").await;
    left.sort();
    assert_eq!(left, [XSS_FILE, "configs", "installed.txt", "ops.json"]);
    browser.screenshot("files-after").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_phone_the_owner_edits_and_a_viewer_only_looks() {
    let Some(browser) = Browser::start("files-phone", Some((390, 844))).await else { return };
    Box::pin(phone(&browser)).await;
}

async fn phone(browser: &Browser) {
    let s = scene("ui-files-phone").await;
    s.put("world/level.dat", "binary-ish").await;
    s.put("logs/latest.log", &(1..=60).map(|i| format!("[12:00:{i:02}] line {i}\n")).collect::<String>()).await;
    s.panel.user("looker", &[]).await;
    s.panel.subuser(&s.server, "looker@example.org", &["SERVER_VIEW", "FILE_VIEW"]).await;
    let url = format!("{}/servers/{}/files", s.base, s.server);

    browser.goto(&url).await;
    browser.log_in("ui-files-phone-owner@example.org", PASSWORD).await;
    wait_listed(browser, "installed.txt", true).await;
    browser.console_errors().await;
    browser.screenshot("files-phone-list").await;
    let menu_row = row(browser, "notes.txt").await;
    browser.click(&format!("{menu_row} button.more")).await;
    browser
        .wait_for("the menu", &format!("document.querySelector('{menu_row} .menu:popover-open[data-placed]')"))
        .await;
    let inside = browser
        .execute(
            "const r = document.querySelector(arguments[0] + ' .menu').getBoundingClientRect(); \
             return r.left >= 0 && r.right <= innerWidth && r.top >= 0 && r.bottom <= innerHeight;",
            json!([menu_row]),
        )
        .await;
    assert_eq!(inside, json!(true), "the menu is inside the window");
    browser.screenshot("files-phone-menu").await;
    // Escape closes it.
    browser.type_into(&format!("{menu_row} [data-act=edit]"), "\u{E00C}").await;
    browser.wait_for("the menu closed", "!document.querySelector('.menu:popover-open')").await;

    browser.click(&format!("{} a.entry", row(browser, "logs").await)).await;
    wait_listed(browser, "latest.log", true).await;
    browser.click(&format!("{} a.entry", row(browser, "latest.log").await)).await;
    browser.wait_for("the editor", "!document.querySelector('#code').hidden").await;
    // The numbers scroll with the lines.
    browser.execute("const t = document.querySelector('#editor-text'); t.scrollTop = t.scrollHeight;", json!([])).await;
    browser
        .wait_for(
            "the gutter scrolled along",
            "document.querySelector('#gutter').scrollTop > 0 && \
             Math.abs(document.querySelector('#gutter').scrollTop - document.querySelector('#editor-text').scrollTop) < 1",
        )
        .await;
    browser.screenshot("files-phone-editor").await;
    assert_eq!(browser.text("#path [aria-current]").await, "latest.log");
    browser.click("#path a[data-path=logs]").await;
    wait_listed(browser, "latest.log", true).await;
    assert!(browser.console_errors().await.is_empty());

    // The viewer: the list, and nothing that writes, deletes, packs or reads.
    browser.click("#logout").await;
    browser.wait_for("logged out", "location.pathname === '/login'").await;
    browser.goto(&url).await;
    browser.log_in("looker@example.org", PASSWORD).await;
    wait_listed(browser, "installed.txt", true).await;
    browser.console_errors().await;
    for control in ["#new-folder", "#new-file", "#upload-box", "#delete-selected", "#compress-selected"] {
        let hidden = browser.execute("return document.querySelector(arguments[0]).hidden;", json!([control])).await;
        assert_eq!(hidden, json!(true), "{control} is hidden");
    }
    assert_eq!(browser.count("#files button, #files .menu, #files input").await, json!(0), "no actions, no selection");
    assert_eq!(browser.count("#files a.entry.file").await, json!(0), "files are not opened");
    assert_eq!(browser.count("#files a.entry.dir").await, json!(2), "folders are browsed");
    browser.click(&format!("{} a.entry", row(browser, "world").await)).await;
    wait_listed(browser, "level.dat", true).await;
    browser.screenshot("files-phone-viewer").await;
    // Opening a file by its address says why not.
    browser.goto(&format!("{url}?edit=notes.txt")).await;
    browser.wait_text("#files-error", "may not read").await;
    assert!(browser.console_errors().await.is_empty());
}
