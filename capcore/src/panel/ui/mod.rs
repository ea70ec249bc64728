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
//! let page = ui::page("Servers", "dashboard");
//! assert!(page.contains(r#"<script type="module" src="/assets/dashboard.js"></script>"#));
//! assert!(ui::asset("console.js").is_some() && ui::asset("../secret").is_none());
//! ```

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The Content-Security-Policy of every page and asset.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// An embedded file: its name under `/assets/`, type and contents.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset { name: "app.css", content_type: "text/css; charset=utf-8", body: include_str!("assets/app.css") },
    Asset { name: "icon.svg", content_type: "image/svg+xml", body: include_str!("assets/icon.svg") },
    Asset { name: "api.js", content_type: "text/javascript; charset=utf-8", body: include_str!("assets/api.js") },
    Asset { name: "ansi.js", content_type: "text/javascript; charset=utf-8", body: include_str!("assets/ansi.js") },
    Asset { name: "login.js", content_type: "text/javascript; charset=utf-8", body: include_str!("assets/login.js") },
    Asset {
        name: "dashboard.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/dashboard.js"),
    },
    Asset {
        name: "console.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/console.js"),
    },
    Asset { name: "server.js", content_type: "text/javascript; charset=utf-8", body: include_str!("assets/server.js") },
];

/// The contents and type of an embedded asset.
pub fn asset(name: &str) -> Option<(&'static str, &'static str)> {
    ASSETS.iter().find(|a| a.name == name).map(|a| (a.content_type, a.body))
}

/// A page: the layout with `body` (static markup of this module's, never user data) and the
/// page's module `/assets/<script>.js`.
fn layout(title: &str, body: &str, script: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Ctrl-Alt-Play</title>
<link rel="stylesheet" href="/assets/app.css">
<link rel="icon" href="/assets/icon.svg" type="image/svg+xml">
</head>
<body>
<header class="top">
<a class="brand" href="/">Ctrl-Alt-Play</a>
<nav aria-label="Main"><a href="/">Servers</a> <span id="who"></span> <button type="button" id="logout" hidden>Log out</button></nav>
</header>
<main id="main">
{body}
</main>
<script type="module" src="/assets/{script}.js"></script>
</body>
</html>
"#
    )
}

/// A page by name: `login`, `dashboard` or `server` (its title is `title`).
pub fn page(title: &str, name: &str) -> String {
    let body = match name {
        "login" => LOGIN,
        "server" => SERVER,
        _ => DASHBOARD,
    };
    layout(title, body, name)
}

const LOGIN: &str = r#"<section class="card narrow">
<h1>Log in</h1>
<form id="login" novalidate>
<label for="email">Email</label>
<input id="email" name="email" type="email" autocomplete="username" required>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<div id="totp-row" hidden>
<label for="totp">Two-factor code</label>
<input id="totp" name="totp" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]*">
</div>
<p id="login-error" class="error" role="alert"></p>
<button type="submit">Log in</button>
</form>
</section>"#;

const DASHBOARD: &str = r#"<h1>Servers</h1>
<p id="status" role="status">Loading…</p>
<ul id="servers" class="servers"></ul>"#;

const SERVER: &str = r#"<div class="server-head">
<h1 id="name">Server</h1>
<span id="state" class="state" role="status"></span>
<span id="node" class="node-offline" hidden>Node offline</span>
</div>
<div id="power" class="power" aria-label="Power">
<button type="button" data-action="start" hidden>Start</button>
<button type="button" data-action="restart" hidden>Restart</button>
<button type="button" data-action="stop" hidden>Stop</button>
<button type="button" data-action="kill" hidden class="danger">Kill</button>
</div>
<p id="notice" class="error" role="alert"></p>
<section class="resources" aria-label="Resources">
<span>CPU <strong id="cpu">–</strong></span>
<span>Memory <strong id="memory">–</strong></span>
<span>Disk <strong id="disk">–</strong></span>
<svg id="chart" class="chart" viewBox="0 0 300 60" preserveAspectRatio="none" role="img" aria-label="CPU over the last minutes"><polyline id="cpu-line" points=""></polyline></svg>
</section>
<section id="console-section" class="console-section" aria-label="Console" hidden>
<div class="console-bar"><span id="link" class="link" role="status"></span>
<label><input type="checkbox" id="follow" checked> Follow</label></div>
<pre id="console" class="console" tabindex="0" aria-live="off"></pre>
<form id="command-form" class="command">
<label for="command" class="visually-hidden">Command</label>
<input id="command" autocomplete="off" placeholder="Type a command" maxlength="4096">
<button type="submit">Send</button>
</form>
</section>
<p id="no-console" hidden>You do not have access to this server's console.</p>"#;

/// The UI's routes: `/`, `/login`, `/servers/{id}` and `/assets/{name}`.
pub(crate) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { html(page("Servers", "dashboard")) }))
        .route("/login", get(|| async { html(page("Log in", "login")) }))
        .route("/servers/{id}", get(|Path(_id): Path<String>| async { html(page("Server", "server")) }))
        .route("/assets/{name}", get(serve_asset))
}

async fn serve_asset(Path(name): Path<String>) -> Response {
    match asset(&name) {
        Some((content_type, body)) => secured(body.into_response(), content_type, "no-cache"),
        None => {
            secured((StatusCode::NOT_FOUND, "no such asset").into_response(), "text/plain; charset=utf-8", "no-store")
        }
    }
}

fn html(page: String) -> Response {
    secured(page.into_response(), "text/html; charset=utf-8", "no-store")
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
