//! The panel's web UI, served by the panel itself: HTML pages and their ES modules and style
//! sheet, compiled into the binary (`include_str!`), nothing loaded from anywhere else.
//!
//! Pages are shells: the layout, the forms and the places data goes, with no user data in the
//! HTML. Each page's module fetches what it shows from the JSON API (the same routes, checks and
//! audit as any client, authenticated by the session cookies, with the CSRF token echoed on
//! every change) and the live parts from the server's WebSocket, and puts every string it got
//! into the page as text (`textContent`), never as markup. So a server named
//! `<img src=x onerror=alert(1)>`, or a console line carrying HTML, shows literally.
//!
//! Every page and asset carries a Content-Security-Policy without inline scripts or styles
//! (`script-src 'self'`), `frame-ancestors 'none'` (and `X-Frame-Options: DENY`), `nosniff` and
//! no referrer.
//!
//! ```
//! use capcore::panel::ui;
//!
//! assert!(ui::CSP.contains("script-src 'self'") && !ui::CSP.contains("unsafe-inline"));
//! let page = ui::page("dashboard").unwrap();
//! assert!(page.contains(r#"<script type="module" src="/assets/dashboard.js"></script>"#));
//! assert!(ui::paths().any(|p| p == "/servers/{id}/files"));
//! assert!(ui::asset("console.js").is_some() && ui::asset("../secret").is_none());
//! // A page names every module its own imports, so the browser fetches them at once.
//! assert_eq!(ui::imports("console.js"), ["ansi.js"]);
//! assert!(ui::page("server").unwrap().contains(r#"<link rel="modulepreload" href="/assets/ansi.js">"#));
//! ```

use axum::Router;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::LazyLock;

/// The Content-Security-Policy of every page and asset.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// An embedded file: its name under `/assets/`, type and contents.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// The page modules and the modules they share, each `assets/<name>.js`.
macro_rules! modules {
    ($($name:literal),* $(,)?) => {
        [$(Asset {
            name: concat!($name, ".js"),
            content_type: "text/javascript; charset=utf-8",
            body: include_str!(concat!("assets/", $name, ".js")),
        }),*]
    };
}

const MODULES: [Asset; 22] = modules![
    "api",
    "ansi",
    "console",
    "serverpage",
    "login",
    "dashboard",
    "account",
    "server",
    "files",
    "startup",
    "backups",
    "subusers",
    "admin-servers",
    "server-new",
    "nodes",
    "node",
    "users",
    "roles",
    "templates",
    "template",
    "audit",
    "admin",
];

const OTHER_ASSETS: [Asset; 2] = [
    Asset { name: "app.css", content_type: "text/css; charset=utf-8", body: include_str!("assets/app.css") },
    Asset { name: "icon.svg", content_type: "image/svg+xml", body: include_str!("assets/icon.svg") },
];

/// The contents and type of an embedded asset.
pub fn asset(name: &str) -> Option<(&'static str, &'static str)> {
    MODULES.iter().chain(&OTHER_ASSETS).find(|a| a.name == name).map(|a| (a.content_type, a.body))
}

/// Which part of the panel a page belongs to: its navigation.
#[derive(Clone, Copy)]
enum Section {
    /// Login, the dashboard, the account.
    Plain,
    /// A server's pages, with the server's tabs.
    Server,
    /// The admin pages, with the admin tabs.
    Admin,
}

/// A page: where it is served, its title, its section, its markup (`pages/<name>.html`, static,
/// never user data) and its module (`assets/<name>.js`).
struct Page {
    path: &'static str,
    name: &'static str,
    title: &'static str,
    section: Section,
    body: &'static str,
}

macro_rules! pages {
    ($(($path:literal, $name:literal, $title:literal, $section:ident)),* $(,)?) => {
        [$(Page {
            path: $path,
            name: $name,
            title: $title,
            section: Section::$section,
            body: include_str!(concat!("pages/", $name, ".html")),
        }),*]
    };
}

const PAGES: [Page; 18] = pages![
    ("/", "dashboard", "Servers", Plain),
    ("/login", "login", "Log in", Plain),
    ("/account", "account", "Account", Plain),
    ("/servers/{id}", "server", "Server", Server),
    ("/servers/{id}/files", "files", "Files", Server),
    ("/servers/{id}/startup", "startup", "Startup", Server),
    ("/servers/{id}/backups", "backups", "Backups", Server),
    ("/servers/{id}/users", "subusers", "Users", Server),
    ("/admin", "admin", "Administration", Admin),
    ("/admin/servers", "admin-servers", "All servers", Admin),
    ("/admin/servers/new", "server-new", "New server", Admin),
    ("/admin/nodes", "nodes", "Nodes", Admin),
    ("/admin/nodes/{id}", "node", "Node", Admin),
    ("/admin/users", "users", "Users", Admin),
    ("/admin/roles", "roles", "Roles", Admin),
    ("/admin/templates", "templates", "Templates", Admin),
    ("/admin/templates/{id}", "template", "Template", Admin),
    ("/admin/audit", "audit", "Audit log", Admin),
];

/// Every page's name (as [`page`] takes it).
pub fn names() -> impl Iterator<Item = &'static str> {
    PAGES.iter().map(|p| p.name)
}

/// Every page's path (with `{id}` where an id goes).
pub fn paths() -> impl Iterator<Item = &'static str> {
    PAGES.iter().map(|p| p.path)
}

const SERVER_TABS: &str = r#"<p class="crumbs"><a href="/">Servers</a> › <span id="server-name"></span></p>
<nav class="tabs" id="server-tabs" aria-label="Server">
<a data-tab="server">Console</a>
<a data-tab="files" hidden>Files</a>
<a data-tab="startup" hidden>Startup</a>
<a data-tab="backups" hidden>Backups</a>
<a data-tab="subusers" hidden>Users</a>
</nav>"#;

/// The admin tabs; each names the permissions of which one is needed to use its page
/// (`data-needs`), and is shown only to an account holding one.
const ADMIN_TABS: &str = r#"<nav class="tabs" aria-label="Administration">
<a href="/admin/servers" data-needs="SERVER_VIEW SERVER_CREATE" hidden>Servers</a>
<a href="/admin/nodes" data-needs="SYSTEM_NODES" hidden>Nodes</a>
<a href="/admin/users" data-needs="USER_VIEW" hidden>Users</a>
<a href="/admin/roles" data-needs="USER_VIEW" hidden>Roles</a>
<a href="/admin/templates" data-needs="SYSTEM_TEMPLATES SERVER_CREATE" hidden>Templates</a>
<a href="/admin/audit" data-needs="SYSTEM_AUDIT" hidden>Audit log</a>
</nav>"#;

/// A page by its name (`login`, `dashboard`, `server`, `files`, `nodes`…): the layout, the
/// section's navigation, the page's markup and its module.
pub fn page(name: &str) -> Option<String> {
    PAGES.iter().find(|p| p.name == name).map(render)
}

/// The modules that the module `name` (`server.js`) imports, directly or through others: its
/// `import … from "/assets/<module>"` lines, followed. The page preloads them all at once
/// rather than finding them one level at a time.
pub fn imports(name: &str) -> Vec<&'static str> {
    let mut found: Vec<&'static str> = Vec::new();
    let mut next = vec![name];
    while let Some(module) = next.pop() {
        let Some((_, body)) = asset(module) else { continue };
        for line in body.lines().filter(|l| l.starts_with("import ")) {
            let Some((_, rest)) = line.split_once("from \"/assets/") else { continue };
            let Some((dep, _)) = rest.split_once('"') else { continue };
            if !found.contains(&dep) {
                found.push(dep);
                next.push(dep);
            }
        }
    }
    found.sort_unstable();
    found
}

fn render(page: &Page) -> String {
    let tabs = match page.section {
        Section::Plain => "",
        Section::Server => SERVER_TABS,
        Section::Admin => ADMIN_TABS,
    };
    let (title, body, script) = (page.title, page.body, page.name);
    let preload: String = imports(&format!("{script}.js"))
        .into_iter()
        .map(|m| format!("<link rel=\"modulepreload\" href=\"/assets/{m}\">\n"))
        .collect();
    format!(
        r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Ctrl-Alt-Play</title>
<link rel="stylesheet" href="/assets/app.css">
<link rel="icon" href="/assets/icon.svg" type="image/svg+xml">
{preload}</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="top">
<a class="brand" href="/">Ctrl-Alt-Play</a>
<nav aria-label="Main"><a href="/">Servers</a> <a href="/admin" id="nav-admin" hidden>Admin</a> <a href="/account" id="nav-account" hidden>Account</a> <span id="who"></span> <button type="button" id="logout" hidden>Log out</button></nav>
</header>
<main id="main" tabindex="-1">
{tabs}
{body}
</main>
<script type="module" src="/assets/{script}.js"></script>
</body>
</html>
"##
    )
}

/// The UI's routes: every page and `/assets/{name}`.
pub(crate) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new().route("/assets/{name}", get(serve_asset));
    for (index, page) in PAGES.iter().enumerate() {
        router = router.route(
            page.path,
            get(move |headers: HeaderMap| async move {
                let (response, _) = rendered()[index].respond(&headers);
                secured(response, "text/html; charset=utf-8", "no-store")
            }),
        );
    }
    router
}

/// A body as the panel sends it: as is, and gzip-compressed where that is smaller (compressed
/// once per process, at first use).
struct Encoded {
    plain: Bytes,
    gzip: Option<Bytes>,
}

impl Encoded {
    fn new(plain: Vec<u8>) -> Self {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&plain).expect("writing to memory");
        let gzip = encoder.finish().expect("writing to memory");
        let gzip = (gzip.len() < plain.len()).then(|| Bytes::from(gzip));
        Self { plain: Bytes::from(plain), gzip }
    }

    /// The answer in the form the request's `Accept-Encoding` takes (gzip if it is offered and
    /// accepted), and that form's content coding.
    fn respond(&self, headers: &HeaderMap) -> (Response, Option<&'static str>) {
        let (encoding, body) = match &self.gzip {
            Some(gzip) if accepts_gzip(headers) => (Some("gzip"), gzip),
            _ => (None, &self.plain),
        };
        let mut response = Bytes::clone(body).into_response();
        encoded(&mut response, encoding);
        (response, encoding)
    }
}

/// Whether `Accept-Encoding` accepts gzip: named with a quality above zero, or not named and
/// `*` accepted.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut gzip = None;
    let mut any = None;
    for coding in
        headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(','))
    {
        let mut parts = coding.split(';');
        let name = parts.next().unwrap_or_default().trim();
        let quality = parts
            .find_map(|p| p.trim().strip_prefix("q="))
            .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok())
            .unwrap_or(0.0);
        if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(quality > 0.0);
        } else if name == "*" {
            any = Some(quality > 0.0);
        }
    }
    gzip.or(any).unwrap_or(false)
}

/// Marks a response with its content coding; either way its form depends on `Accept-Encoding`.
fn encoded(response: &mut Response, encoding: Option<&'static str>) {
    let h = response.headers_mut();
    if let Some(encoding) = encoding {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
    }
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
}

/// Every page, rendered and compressed, in the order of `PAGES`.
fn rendered() -> &'static [Encoded] {
    static PAGES_RENDERED: LazyLock<Vec<Encoded>> =
        LazyLock::new(|| PAGES.iter().map(|p| Encoded::new(render(p).into_bytes())).collect());
    &PAGES_RENDERED
}

/// Every asset, compressed, with its type and entity tag.
fn assets() -> &'static [(&'static str, &'static str, String, Encoded)] {
    static ASSETS: LazyLock<Vec<(&'static str, &'static str, String, Encoded)>> = LazyLock::new(|| {
        MODULES
            .iter()
            .chain(&OTHER_ASSETS)
            .map(|a| (a.name, a.content_type, etag(a.body), Encoded::new(a.body.as_bytes().to_vec())))
            .collect()
    });
    &ASSETS
}

/// An asset's entity tag: FNV-1a over its bytes, so the same build always gives the same tag
/// and a changed asset a new one. The compressed form's tag is the same with `-gz`.
fn etag(body: &str) -> String {
    let hash = body.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{hash:016x}")
}

/// Assets are revalidated on every use (`no-cache`): a browser holding the current version gets
/// `304 Not Modified` and no body.
async fn serve_asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Some((_, content_type, hash, body)) = assets().iter().find(|a| a.0 == name) else {
        return secured(
            (StatusCode::NOT_FOUND, "no such asset").into_response(),
            "text/plain; charset=utf-8",
            "no-store",
        );
    };
    let (mut response, encoding) = body.respond(&headers);
    let tag = match encoding {
        Some(_) => format!("\"{hash}-gz\""),
        None => format!("\"{hash}\""),
    };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    if fresh {
        response = StatusCode::NOT_MODIFIED.into_response();
        encoded(&mut response, None);
    }
    response.headers_mut().insert(header::ETAG, HeaderValue::from_str(&tag).expect("hex tag"));
    secured(response, content_type, "no-cache")
}

/// The headers every UI response carries.
fn secured(mut response: Response, content_type: &'static str, cache: &'static str) -> Response {
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}
