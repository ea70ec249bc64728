//! Authentication end to end: login, cookies, refresh rotation and reuse, expiry, logout,
//! forged tokens, CSRF, login rate limits, two-factor and API keys.

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use cap_tests::{ADMIN_EMAIL, ADMIN_PASSWORD, Cred, PASSWORD, TestPanel, assert_error};
use capauth::token::{AccessClaims, TokenSigner};
use capcore::panel::Clock;
use serde_json::{Value, json};

/// The `Set-Cookie` line for `name`.
fn set_cookie(headers: &HeaderMap, name: &str) -> String {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().expect("ascii cookie").to_string())
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no Set-Cookie for {name} in {headers:?}"))
}

fn attributes(cookie: &str) -> Vec<String> {
    cookie.split(';').skip(1).map(|a| a.trim().to_string()).collect()
}

fn bearer(body: &Value, field: &str) -> Cred {
    Cred::bearer(body[field].as_str().unwrap_or_else(|| panic!("no {field} in {body}")))
}

async fn refresh(panel: &TestPanel, token: &str) -> (StatusCode, Value) {
    panel.post("/api/auth/refresh", &Cred::None, json!({"refresh_token": token})).await
}

async fn login_attempt(panel: &TestPanel, email: &str, password: &str, peer: &str) -> (StatusCode, Value, HeaderMap) {
    let body = Body::from(json!({"email": email, "password": password}).to_string());
    panel.send_from(Method::POST, "/api/auth/login", &Cred::None, Some(body), Some("application/json"), peer).await
}

#[tokio::test]
async fn login_sets_hardened_cookies_and_returns_an_access_token() {
    let panel = TestPanel::start().await;
    let (body, headers) = panel.login_full(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(body["expires_in"], 900);
    let access = body["access_token"].as_str().expect("access_token");
    assert!(body["refresh_token"].as_str().is_some_and(|t| t.len() >= 32), "{body}");
    let csrf = body["csrf_token"].as_str().expect("csrf_token");

    let access_cookie = set_cookie(&headers, "cap_access");
    assert!(access_cookie.starts_with(&format!("cap_access={access};")), "{access_cookie}");
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/", "Max-Age=900"] {
        assert!(attributes(&access_cookie).contains(&attr.to_string()), "{attr} missing: {access_cookie}");
    }
    let refresh_cookie = set_cookie(&headers, "cap_refresh");
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/api/auth"] {
        assert!(attributes(&refresh_cookie).contains(&attr.to_string()), "{attr} missing: {refresh_cookie}");
    }
    let csrf_cookie = set_cookie(&headers, "cap_csrf");
    assert!(csrf_cookie.starts_with(&format!("cap_csrf={csrf};")), "{csrf_cookie}");
    assert!(
        !attributes(&csrf_cookie).contains(&"HttpOnly".to_string()),
        "the page's script must read it: {csrf_cookie}"
    );
    assert!(attributes(&csrf_cookie).contains(&"Secure".to_string()), "{csrf_cookie}");
    assert!(attributes(&csrf_cookie).contains(&"SameSite=Strict".to_string()), "{csrf_cookie}");

    let (status, me) = panel.get("/api/me", &Cred::bearer(access)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["email"], ADMIN_EMAIL);
    assert_eq!(me["via"], "session");
    assert_eq!(panel.last_audit("auth.login").await["result"], "success");
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_email_read_the_same() {
    let panel = TestPanel::start().await;
    let (s1, wrong_password, _) = login_attempt(&panel, ADMIN_EMAIL, "not the password", "127.0.0.1:1").await;
    let (s2, unknown_email, _) = login_attempt(&panel, "nobody@example.org", "not the password", "127.0.0.1:1").await;
    assert_error(&(s1, wrong_password.clone()), 401, "unauthorized");
    assert_eq!((s1, &wrong_password), (s2, &unknown_email), "the answer must not tell whether the email exists");
    // Email is case-insensitive: the same account, the same answer.
    let (status, _, _) = login_attempt(&panel, "ADMIN@Example.ORG", ADMIN_PASSWORD, "127.0.0.1:1").await;
    assert_eq!(status, StatusCode::OK);
    // A failed login is audited without the password.
    let event = panel.last_audit("auth.login").await;
    assert_eq!(event["result"], "success");
    let failures = panel.get("/api/audit?action=auth.login&result=failed", &panel.admin().await).await.1;
    assert_eq!(failures["total"], 2);
    assert!(!failures.to_string().contains("not the password"), "a password reached the audit log: {failures}");
}

#[tokio::test]
async fn refresh_rotates_and_reuse_of_an_old_token_ends_the_session() {
    let panel = TestPanel::start().await;
    let (first, _) = panel.login_full(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (other_session, _) = panel.login_full(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let r0 = first["refresh_token"].as_str().unwrap().to_string();

    let (status, second) = refresh(&panel, &r0).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let r1 = second["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(r0, r1, "refresh must rotate the token");
    assert_eq!(second["expires_in"], 900);
    assert_eq!(panel.get("/api/me", &bearer(&second, "access_token")).await.0, StatusCode::OK);
    assert_eq!(
        panel.get("/api/me", &bearer(&first, "access_token")).await.0,
        StatusCode::OK,
        "rotation alone ends nothing"
    );

    // The old token again: reuse, so the whole family ends.
    let reuse = refresh(&panel, &r0).await;
    assert_error(&reuse, 401, "unauthorized");
    let event = panel.last_audit("auth.refresh").await;
    assert_eq!(event["result"], "failed", "an admin can see the reuse: {event}");
    assert!(event["detail"]["error"].as_str().unwrap().contains("already used"), "{event}");
    assert_error(&refresh(&panel, &r1).await, 401, "unauthorized");
    assert_error(&panel.get("/api/me", &bearer(&second, "access_token")).await, 401, "unauthorized");
    assert_error(&panel.get("/api/me", &bearer(&first, "access_token")).await, 401, "unauthorized");
    // Another login of the same user is another family and lives on.
    assert_eq!(panel.get("/api/me", &bearer(&other_session, "access_token")).await.0, StatusCode::OK);
    let (status, _) = refresh(&panel, other_session["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn refresh_reads_the_cookie_and_refuses_garbage() {
    let panel = TestPanel::start().await;
    let (first, _) = panel.login_full(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let token = first["refresh_token"].as_str().unwrap();
    let csrf = first["csrf_token"].as_str().unwrap();
    let cookie_refresh = |header: Option<&str>| {
        let mut req =
            Request::post("/api/auth/refresh").header(header::COOKIE, format!("cap_refresh={token}; cap_csrf={csrf}"));
        if let Some(sent) = header {
            req = req.header("x-csrf-token", sent);
        }
        panel.send_request(req.body(Body::empty()).unwrap(), "127.0.0.1:1")
    };
    // From the cookie, the page must echo the CSRF cookie, as for any change; refused, the
    // token is not used up.
    for sent in [None, Some(""), Some("forged")] {
        let (status, body, _) = cookie_refresh(sent).await;
        assert_error(&(status, body), 403, "csrf_failed");
    }
    let (status, body, headers) = cookie_refresh(Some(csrf)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(set_cookie(&headers, "cap_refresh").contains(body["refresh_token"].as_str().unwrap()));
    assert_error(&refresh(&panel, "not-a-token").await, 401, "unauthorized");
    assert_error(&panel.post("/api/auth/refresh", &Cred::None, json!({})).await, 401, "unauthorized");
}

#[tokio::test]
async fn access_tokens_expire_after_fifteen_minutes_and_refresh_still_works() {
    let panel = TestPanel::start().await;
    let (first, _) = panel.login_full(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let access = bearer(&first, "access_token");
    panel.clock.advance_secs(899);
    assert_eq!(panel.get("/api/me", &access).await.0, StatusCode::OK);
    panel.clock.advance_secs(2);
    let expired = assert_error(&panel.get("/api/me", &access).await, 401, "unauthorized");
    assert!(expired.contains("expired"), "{expired}");

    let (status, second) = refresh(&panel, first["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(panel.get("/api/me", &bearer(&second, "access_token")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn logout_ends_that_session_at_once_and_only_that_one() {
    let panel = TestPanel::start().await;
    let (one, _) = panel.login_full(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (two, _) = panel.login_full(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (status, _, headers) =
        panel.send(Method::POST, "/api/auth/logout", &bearer(&one, "access_token"), None, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(set_cookie(&headers, "cap_access").contains("Max-Age=0"), "the cookie is cleared");
    assert_error(&panel.get("/api/me", &bearer(&one, "access_token")).await, 401, "unauthorized");
    assert_error(&refresh(&panel, one["refresh_token"].as_str().unwrap()).await, 401, "unauthorized");
    assert_eq!(panel.get("/api/me", &bearer(&two, "access_token")).await.0, StatusCode::OK);
    assert_eq!(panel.last_audit("auth.logout").await["result"], "success");
}

#[tokio::test]
async fn logout_all_ends_every_session_of_the_user_only() {
    let panel = TestPanel::start().await;
    let (_, bob) = panel.user("bob", &[]).await;
    let (one, _) = panel.login_full(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (two, _) = panel.login_full(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (status, _, _) =
        panel.send(Method::POST, "/api/auth/logout-all", &bearer(&one, "access_token"), None, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for session in [&one, &two] {
        assert_error(&panel.get("/api/me", &bearer(session, "access_token")).await, 401, "unauthorized");
        assert_error(&refresh(&panel, session["refresh_token"].as_str().unwrap()).await, 401, "unauthorized");
    }
    assert_eq!(panel.get("/api/me", &bob).await.0, StatusCode::OK, "other users keep their sessions");
}

#[tokio::test]
async fn forged_and_tampered_tokens_are_refused() {
    let panel = TestPanel::start().await;
    let (body, _) = panel.login_full(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let token = body["access_token"].as_str().unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let b64 = data_encoding::BASE64URL_NOPAD;
    let claims: AccessClaims = serde_json::from_slice(&b64.decode(parts[1].as_bytes()).unwrap()).unwrap();

    // One character of the signature changed (in the middle, where every bit counts).
    let mut signature: Vec<char> = parts[2].chars().collect();
    let mid = signature.len() / 2;
    signature[mid] = if signature[mid] == 'A' { 'B' } else { 'A' };
    let flipped = format!("{}.{}.{}", parts[0], parts[1], signature.into_iter().collect::<String>());

    // The same claims signed with another secret.
    let other = TokenSigner::new(b"another secret, also thirty-two bytes long").unwrap();
    let other_secret = other.sign(&claims).unwrap();

    // `alg: none` and no signature.
    let none_header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let alg_none = format!("{none_header}.{}.", parts[1]);

    // A longer life, with the original signature.
    let longer = AccessClaims { exp: claims.exp + 86_400, ..claims.clone() };
    let tampered = format!("{}.{}.{}", parts[0], b64.encode(&serde_json::to_vec(&longer).unwrap()), parts[2]);

    for (what, forged) in [
        ("flipped signature", flipped),
        ("other secret", other_secret),
        ("alg none", alg_none),
        ("tampered claims", tampered),
        ("garbage", "not.a.jwt".to_string()),
        ("empty", String::new()),
    ] {
        let got = panel.get("/api/me", &Cred::bearer(forged.clone())).await;
        assert_error(&got, 401, "unauthorized");
        let cookie = panel.get("/api/me", &Cred::Cookie { access: forged, csrf: None }).await;
        assert_eq!(cookie.0, StatusCode::UNAUTHORIZED, "{what} as a cookie: {}", cookie.1);
    }
    assert_eq!(panel.get("/api/me", &Cred::bearer(token)).await.0, StatusCode::OK, "the real token still works");
    assert_error(&panel.get("/api/me", &Cred::None).await, 401, "unauthorized");
}

#[tokio::test]
async fn cookie_sessions_need_the_csrf_header_for_changes_and_bearer_does_not() {
    let panel = TestPanel::start().await;
    let (body, _) = panel.login_full(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (other, _) = panel.login_full(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let access = body["access_token"].as_str().unwrap().to_string();
    let csrf = body["csrf_token"].as_str().unwrap().to_string();
    let cookie = |csrf: Option<&str>| Cred::Cookie { access: access.clone(), csrf: csrf.map(String::from) };
    let role = |name: &str| json!({"name": name, "permissions": ["SERVER_VIEW"]});

    assert_eq!(panel.get("/api/me", &cookie(None)).await.0, StatusCode::OK, "reading needs no CSRF token");
    let before = panel.counts().await;
    assert_error(&panel.post("/api/roles", &cookie(None), role("a")).await, 403, "csrf_failed");
    assert_error(&panel.post("/api/roles", &cookie(Some("wrong")), role("a")).await, 403, "csrf_failed");
    assert_error(&panel.post("/api/roles", &cookie(Some("")), role("a")).await, 403, "csrf_failed");
    let other_csrf = other["csrf_token"].as_str().unwrap();
    assert_error(&panel.post("/api/roles", &cookie(Some(other_csrf)), role("a")).await, 403, "csrf_failed");
    assert_error(
        &panel.delete("/api/roles/00000000-0000-4000-8000-000000000000", &cookie(None)).await,
        403,
        "csrf_failed",
    );
    assert_eq!(panel.counts().await, before, "a refused request writes nothing");

    let (status, created) = panel.post("/api/roles", &cookie(Some(&csrf)), role("a")).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let (status, created) = panel.post("/api/roles", &Cred::bearer(access.clone()), role("b")).await;
    assert_eq!(status, StatusCode::OK, "bearer requests carry no ambient credential: {created}");
}

#[tokio::test]
async fn failed_logins_lock_that_account_and_no_other() {
    let panel = TestPanel::start().await;
    panel.user("bob", &[]).await;
    for i in 0..5 {
        let (status, body, _) = login_attempt(&panel, "bob@example.org", "wrong password", "127.0.0.1:1").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {i}: {body}");
    }
    let (status, body, headers) = login_attempt(&panel, "bob@example.org", PASSWORD, "127.0.0.1:1").await;
    assert_error(&(status, body), 429, "rate_limited");
    assert!(headers.get(header::RETRY_AFTER).is_some(), "429 says when to retry");
    let (status, _, _) = login_attempt(&panel, ADMIN_EMAIL, ADMIN_PASSWORD, "127.0.0.1:1").await;
    assert_eq!(status, StatusCode::OK, "another account is not affected");
    assert_eq!(panel.last_audit("auth.login").await["result"], "success");
    let denied = panel.get("/api/audit?action=auth.login&result=denied", &panel.admin().await).await.1;
    assert_eq!(denied["total"], 1, "the refused attempt is audited as denied: {denied}");
}

#[tokio::test]
async fn attempts_per_client_address_are_limited_per_address() {
    let panel = TestPanel::start().await;
    for i in 0..30 {
        let (status, body, _) = login_attempt(&panel, &format!("guess{i}@example.org"), "x", "10.0.0.1:5000").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {i}: {body}");
    }
    let (status, body, _) = login_attempt(&panel, ADMIN_EMAIL, ADMIN_PASSWORD, "10.0.0.1:5001").await;
    assert_error(&(status, body), 429, "rate_limited");
    // A forged X-Forwarded-For does not help: the panel does not trust a proxy by default.
    let req = Request::post("/api/auth/login")
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-forwarded-for", "192.0.2.77")
        .body(Body::from(json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}).to_string()))
        .unwrap();
    assert_eq!(panel.send_request(req, "10.0.0.1:5002").await.0, StatusCode::TOO_MANY_REQUESTS);
    let (status, _, _) = login_attempt(&panel, ADMIN_EMAIL, ADMIN_PASSWORD, "10.0.0.2:5000").await;
    assert_eq!(status, StatusCode::OK, "another address is not affected");
    let event = panel.last_audit("auth.login").await;
    assert_eq!(event["ip"], "10.0.0.2");
}

async fn totp_login(panel: &TestPanel, totp: Option<String>) -> (StatusCode, Value) {
    let mut body = json!({"email": "ada@example.org", "password": PASSWORD});
    if let Some(code) = totp {
        body["totp"] = json!(code);
    }
    panel.post("/api/auth/login", &Cred::None, body).await
}

#[tokio::test]
async fn two_factor_enrolment_login_replay_and_disable() {
    let panel = TestPanel::start().await;
    let (_, ada) = panel.user("ada", &[]).await;
    let (status, setup) = panel.post("/api/me/totp", &ada, Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{setup}");
    let secret = setup["secret"].as_str().unwrap().to_string();
    let uri = setup["otpauth_uri"].as_str().unwrap();
    assert!(uri.contains(&secret));
    // The QR code an authenticator app scans carries the link.
    let rows: Vec<&str> = setup["qr"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert!(rows.len() >= 21 && rows.iter().all(|r| r.len() == rows.len()), "{rows:?}");
    assert_eq!(cap_tests::read_qr_rows(&rows).as_deref(), Some(uri));
    assert_eq!(cap_tests::read_qr_rows(&rows[1..]), None, "a damaged code does not read");
    assert_eq!(panel.get("/api/me", &ada).await.1["totp_enabled"], false, "not active before confirmation");

    let wrong = assert_error(&panel.post("/api/me/totp/confirm", &ada, json!({"code": "12345"})).await, 422, "invalid");
    assert!(wrong.contains("code"), "{wrong}");
    let (status, body) = panel.post("/api/me/totp/confirm", &ada, json!({"code": panel.totp_code(&secret)})).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(panel.get("/api/me", &ada).await.1["totp_enabled"], true);
    assert_eq!(panel.last_audit("user.totp_enable").await["result"], "success");

    panel.clock.advance_secs(30);
    let login = |totp: Option<String>| totp_login(&panel, totp);
    assert_error(&login(None).await, 401, "two_factor_required");
    let code = panel.totp_code(&secret);
    let wrong_code = format!("{}{}", &code[..5], (code.as_bytes()[5] - b'0' + 1) % 10);
    assert_error(&login(Some(wrong_code)).await, 401, "unauthorized");
    assert_error(&login(Some("abcdef".into())).await, 401, "unauthorized");
    let (status, body) = login(Some(code.clone())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_error(&login(Some(code)).await, 401, "unauthorized");

    // Turning it off needs a valid, unused code.
    panel.clock.advance_secs(30);
    let session = bearer(&body, "access_token");
    assert_error(
        &panel.json(Method::DELETE, "/api/me/totp", &session, json!({"code": "000000x"})).await,
        422,
        "invalid",
    );
    let (status, body) =
        panel.json(Method::DELETE, "/api/me/totp", &session, json!({"code": panel.totp_code(&secret)})).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(panel.get("/api/me", &ada).await.1["totp_enabled"], false);
    assert_eq!(login(None).await.0, StatusCode::OK);
}

#[tokio::test]
async fn api_keys_are_shown_once_narrow_permissions_and_can_be_revoked() {
    let panel = TestPanel::start().await;
    let admin = panel.login_admin().await;
    let (status, created) =
        panel.post("/api/me/api-keys", &admin, json!({"name": "monitoring", "permissions": ["SERVER_VIEW"]})).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let secret = created["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("cap_"), "{secret}");
    let id = created["key"]["id"].as_str().unwrap().to_string();

    let (status, list) = panel.get("/api/me/api-keys", &admin).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(list[0].get("secret").is_none() && list[0].get("secret_hash").is_none(), "{list}");
    let secret_part = secret.rsplit('_').next().unwrap();
    assert!(!list.to_string().contains(secret_part), "the secret is shown once only: {list}");
    let audit = panel.get("/api/audit?action=api_key", &admin).await.1;
    assert!(!audit.to_string().contains(secret_part), "the secret reached the audit log");

    let key = Cred::bearer(secret.clone());
    assert_eq!(panel.get("/api/servers", &key).await.0, StatusCode::OK);
    let (_, me) = panel.get("/api/me", &key).await;
    assert_eq!(me["via"], "api_key");
    assert_eq!(me["permissions"], json!(["SERVER_VIEW"]), "an admin's key holds only what it was given");
    let before = panel.counts().await;
    let new_user = json!({"username": "eve", "email": "eve@example.org", "password": PASSWORD});
    assert_error(&panel.post("/api/users", &key, new_user).await, 403, "forbidden");
    assert_error(&panel.get("/api/users", &key).await, 403, "forbidden");
    assert_error(
        &panel
            .post("/api/nodes", &key, json!({"name": "n", "fqdn": "n.example.org", "memory_mb": 1, "disk_mb": 1}))
            .await,
        403,
        "forbidden",
    );
    assert_eq!(panel.counts().await, before);
    assert!(panel.get("/api/me/api-keys", &admin).await.1[0]["last_used_at"].is_string(), "use is recorded");

    let (status, _) = panel.delete(&format!("/api/me/api-keys/{id}"), &admin).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_error(&panel.get("/api/servers", &key).await, 401, "unauthorized");
    assert_error(&panel.delete(&format!("/api/me/api-keys/{id}"), &admin).await, 404, "not_found");
    // A key-shaped string that matches nothing.
    assert_error(&panel.get("/api/me", &Cred::bearer("cap_nothing_here")).await, 401, "unauthorized");
    let forged = format!("{}x", secret);
    assert_error(&panel.get("/api/me", &Cred::bearer(forged)).await, 401, "unauthorized");
}

#[tokio::test]
async fn a_key_holds_no_global_permission_its_owner_lacks() {
    let panel = TestPanel::start().await;
    let (_, bob) = panel.user("bob", &[]).await;
    let denied = panel.post("/api/me/api-keys", &bob, json!({"name": "k", "permissions": ["SYSTEM_NODES"]})).await;
    let message = assert_error(&denied, 403, "forbidden");
    assert!(message.contains("SYSTEM_NODES"), "{message}");
    assert!(panel.get("/api/me/api-keys", &bob).await.1.as_array().unwrap().is_empty());
    // Server-scoped permissions may come from owned or shared servers, so they are allowed.
    let (status, body) =
        panel.post("/api/me/api-keys", &bob, json!({"name": "k", "permissions": ["SERVER_START"]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let key = bearer(&body, "secret");
    assert_error(&panel.get("/api/nodes", &key).await, 403, "forbidden");
}

#[tokio::test]
async fn keys_expire_on_the_panel_clock() {
    let panel = TestPanel::start().await;
    let admin = panel.login_admin().await;
    let soon = panel.clock.now().plus_secs(60).to_rfc3339();
    let (status, body) = panel
        .post("/api/me/api-keys", &admin, json!({"name": "short", "permissions": ["SERVER_VIEW"], "expires_at": soon}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let key = bearer(&body, "secret");
    assert_eq!(panel.get("/api/servers", &key).await.0, StatusCode::OK);
    panel.clock.advance_secs(61);
    let message = assert_error(&panel.get("/api/servers", &key).await, 401, "unauthorized");
    assert!(message.contains("expired"), "{message}");

    let past = panel.clock.now().plus_secs(-1).to_rfc3339();
    let admin = panel.login_admin().await;
    let refused =
        panel.post("/api/me/api-keys", &admin, json!({"name": "late", "permissions": [], "expires_at": past})).await;
    assert!(assert_error(&refused, 422, "invalid").contains("expires_at"));
}

#[tokio::test]
async fn keys_cannot_manage_keys_two_factor_or_the_password() {
    let panel = TestPanel::start().await;
    let admin = panel.login_admin().await;
    let every: Vec<&str> = capcore::permission::Permission::ALL.iter().map(|p| p.name()).collect();
    let (status, body) = panel.post("/api/me/api-keys", &admin, json!({"name": "root", "permissions": every})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let key = bearer(&body, "secret");
    let key_id = body["key"]["id"].as_str().unwrap().to_string();
    let attempts = [
        panel.post("/api/me/api-keys", &key, json!({"name": "child", "permissions": ["SERVER_VIEW"]})).await,
        panel.delete(&format!("/api/me/api-keys/{key_id}"), &key).await,
        panel.post("/api/me/totp", &key, Value::Null).await,
        panel.post("/api/me/totp/confirm", &key, json!({"code": "123456"})).await,
        panel.json(Method::DELETE, "/api/me/totp", &key, json!({"code": "123456"})).await,
        panel
            .json(
                Method::PUT,
                "/api/me/password",
                &key,
                json!({"current_password": ADMIN_PASSWORD, "new_password": "a new password 456"}),
            )
            .await,
    ];
    for got in &attempts {
        let message = assert_error(got, 403, "forbidden");
        assert!(message.contains("needs a login session"), "{message}");
    }
    assert_eq!(
        panel.get("/api/me/api-keys", &admin).await.1.as_array().unwrap().len(),
        1,
        "no child key, none revoked"
    );
    for action in ["api_key.create", "api_key.revoke", "user.totp_begin", "user.password_change"] {
        assert_eq!(panel.last_audit(action).await["result"], "denied", "{action} refusal is audited");
    }
    // The password did not change: it still logs in.
    panel.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
}

#[tokio::test]
async fn changing_the_password_checks_the_old_one_and_ends_every_session() {
    let panel = TestPanel::start().await;
    let (_, bob) = panel.user("bob", &[]).await;
    let (status, body) = panel
        .json(
            Method::PUT,
            "/api/me/password",
            &bob,
            json!({"current_password": "wrong password", "new_password": "new password 456"}),
        )
        .await;
    assert!(assert_error(&(status, body), 422, "invalid").contains("current_password"));
    let (status, body) = panel
        .json(Method::PUT, "/api/me/password", &bob, json!({"current_password": PASSWORD, "new_password": "short"}))
        .await;
    assert!(assert_error(&(status, body), 422, "invalid").contains("new_password"));
    let (status, body) = panel
        .json(
            Method::PUT,
            "/api/me/password",
            &bob,
            json!({"current_password": PASSWORD, "new_password": "new password 456"}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_error(&panel.get("/api/me", &bob).await, 401, "unauthorized");
    let (status, _, _) = login_attempt(&panel, "bob@example.org", PASSWORD, "127.0.0.1:1").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    panel.login("bob@example.org", "new password 456").await;
    assert_eq!(panel.last_audit("user.password_change").await["result"], "success");
}

#[tokio::test]
async fn a_disabled_account_loses_its_sessions_and_keys() {
    let panel = TestPanel::start().await;
    let (bob_id, bob) = panel.user("bob", &[]).await;
    let (_, body) = panel.post("/api/me/api-keys", &bob, json!({"name": "k", "permissions": ["SERVER_VIEW"]})).await;
    let key = bearer(&body, "secret");
    let (status, body) = panel
        .json(Method::PATCH, &format!("/api/users/{bob_id}"), &panel.admin().await, json!({"disabled": true}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_error(&panel.get("/api/me", &bob).await, 401, "unauthorized");
    assert_error(&panel.get("/api/me", &key).await, 401, "unauthorized");
    let (status, _, _) = login_attempt(&panel, "bob@example.org", PASSWORD, "127.0.0.1:1").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
