//! The `Database` conformance suite, so every backend keeps the trait's Contract: a `pub async fn`
//! per behaviour, and the macro that stamps them as tests for a backend.
//!
//! Each behaviour takes a fresh, migrated, empty database (migration may seed builtin roles, so
//! role counts are taken relative to what is there at the start). Timestamps come from the wall
//! clock only to look realistic; every assertion uses the values the suite passed in.
//!
//! Run it against a backend with [`database_conformance_tests!`](crate::database_conformance_tests).

use crate::backend::Database;
use crate::backend::portable::{Row, RowDigest, Table};
use crate::conformance::unique_suffix;
use crate::error::{Error, Result};
use crate::ids::*;
use crate::model::*;
use crate::permission::{Permission, PermissionSet, ServerRelation};
use crate::state::ServerState;
use crate::template::{
    ConfigFile, ConfigParser, ConfigReplacement, InstallScript, ReadyPattern, StopAction, StopSignal, Template,
    TemplateImage, TemplateSpec, TemplateVariable,
};
use crate::time::Timestamp;
use futures::future::join_all;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::Barrier;

/// Stamps one `#[tokio::test]` per behaviour of [`crate::conformance::database`] for a backend.
///
/// `$factory` is a path to an `async fn() -> Option<Arc<dyn Database>>` returning a fresh,
/// migrated, empty database (or `None` when the service is not configured); the optional second
/// argument names the backend in skip lines and failures (default: the factory's path). Invoke it
/// inside a module of its own, since it defines one test fn per behaviour.
#[macro_export]
macro_rules! database_conformance_tests {
    ($factory:path) => {
        $crate::database_conformance_tests!($factory, stringify!($factory));
    };
    ($factory:path, $label:expr) => {
        $crate::__stamp_conformance_tests!(
            database,
            $factory,
            $label,
            [
                migrate_is_idempotent_and_ping_works,
                users_create_then_get_round_trips,
                users_duplicate_email_is_conflict_ignoring_case,
                users_duplicate_username_is_conflict,
                users_update_changes_only_patched_fields,
                users_update_into_a_taken_email_or_username_is_conflict,
                users_missing_is_not_found,
                users_delete_then_get_is_not_found,
                users_list_filters_by_query_case_insensitively_and_literally,
                users_list_pages_in_creation_order_with_total,
                users_list_breaks_timestamp_ties_by_id,
                users_count_counts_every_user,
                users_concurrent_updates_of_different_fields_all_apply,
                users_delete_removes_sessions_api_keys_subuser_grants_and_role_memberships,
                users_delete_is_conflict_while_owning_servers,
                roles_create_get_find_list_round_trip,
                roles_duplicate_name_is_conflict,
                roles_update_changes_only_patched_fields,
                roles_missing_is_not_found,
                roles_assign_and_unassign_are_idempotent,
                roles_global_permissions_is_the_union_of_the_users_roles,
                roles_builtin_delete_is_conflict_and_custom_delete_removes_memberships,
                nodes_create_get_list_update_round_trip,
                nodes_duplicate_name_is_conflict,
                nodes_missing_is_not_found,
                nodes_find_by_token_hash_follows_set_token_hash,
                nodes_delete_is_conflict_while_servers_are_on_it,
                nodes_delete_removes_its_free_allocations,
                allocations_add_then_get_and_list,
                allocations_add_existing_ip_port_is_conflict_and_adds_none_of_the_batch,
                allocations_list_for_node_pages_with_total,
                allocations_delete_is_conflict_while_held_and_frees_otherwise,
                templates_spec_round_trips_unchanged,
                templates_update_replaces_the_spec,
                templates_duplicate_name_is_conflict,
                templates_missing_is_not_found,
                templates_list_pages_with_total,
                templates_delete_is_conflict_while_servers_use_it,
                servers_create_takes_a_free_allocation_as_primary,
                servers_create_with_a_specific_free_allocation_takes_it,
                servers_create_with_a_held_or_foreign_allocation_is_conflict,
                servers_create_without_a_free_allocation_is_conflict,
                servers_create_and_update_respect_node_capacity,
                servers_concurrent_create_never_overcommits_a_node,
                servers_many_concurrent_creators_fill_a_node_exactly,
                servers_concurrent_create_resize_and_delete_keep_the_node_count_exact,
                servers_set_variables_merges_and_concurrent_edits_both_stay,
                servers_missing_is_not_found,
                servers_list_visible_to_covers_owner_and_subusers_only,
                servers_list_filters_by_owner_node_and_state,
                servers_list_name_contains_is_case_insensitive_and_literal,
                servers_list_pages_in_creation_order_with_total,
                servers_update_changes_only_patched_fields,
                servers_set_state_applies_legal_moves_and_refuses_illegal_ones,
                servers_mark_node_unknown_counts_changed_servers_of_that_node_only,
                servers_apply_reported_state_applies_each_event_once_and_in_order,
                servers_concurrent_apply_reported_state_applies_a_resent_event_once,
                servers_delete_frees_allocations_and_removes_subusers,
                servers_set_subuser_creates_then_replaces,
                servers_owner_cannot_be_a_subuser,
                servers_remove_subuser_removes_the_grant,
                servers_relation_tells_owner_subuser_and_stranger_apart,
                servers_visible_ids_lists_owned_and_shared_servers_once,
                servers_concurrent_create_never_hands_one_allocation_to_two_servers,
                servers_concurrent_create_of_one_specific_allocation_has_one_winner,
                servers_concurrent_set_state_applies_exactly_one_of_two_exclusive_moves,
                sessions_create_then_get_round_trips,
                sessions_rotate_with_current_hash_rotates,
                sessions_rotate_with_an_old_hash_detects_reuse_and_revokes_the_family,
                sessions_rotate_with_an_unknown_hash_is_invalid,
                sessions_rotate_of_an_expired_family_is_invalid,
                sessions_revoke_makes_rotation_invalid,
                sessions_concurrent_rotation_of_one_hash_has_one_winner,
                sessions_revoke_all_for_user_counts_live_families,
                api_keys_create_find_by_prefix_and_list_for_user,
                api_keys_delete_of_another_users_key_is_not_found,
                api_keys_touch_sets_last_used_at,
                session_context_joins_session_user_and_roles,
                api_key_context_joins_key_user_and_roles,
                audit_append_then_list_newest_first,
                audit_list_filters_each_field,
                audit_list_pages_with_total,
                portable_export_clear_import_restores_every_table_exactly,
                portable_import_is_all_or_nothing,
            ]
        );
    };
}

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// A PHC string shaped like the real thing; the store never interprets it.
const PASSWORD_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$Y29uZm9ybWFuY2U$0XwGgk6pY1CkFqGQ0cVh3w";

/// Now, to the millisecond, so stores are exercised with realistic (non-round) values.
fn clock() -> Timestamp {
    let millis =
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(1_700_000_000_123);
    Timestamp::from_millis(millis)
}

fn millis_after(t: Timestamp, millis: i64) -> Timestamp {
    Timestamp::from_millis(t.millis() + millis)
}

fn permissions(list: &[Permission]) -> PermissionSet {
    list.iter().copied().collect()
}

#[track_caller]
fn expect_conflict<T: Debug>(result: Result<T>, doing: &str) {
    match result {
        Err(Error::Conflict { .. }) => {}
        other => panic!("{doing}: expected Error::Conflict, got {other:?}"),
    }
}

#[track_caller]
fn expect_not_found<T: Debug>(result: Result<T>, doing: &str) {
    match result {
        Err(Error::NotFound { .. }) => {}
        other => panic!("{doing}: expected Error::NotFound, got {other:?}"),
    }
}

/// For reads about something already deleted, where an empty answer and `NotFound` both say
/// "nothing is left" and the contract does not choose between them.
#[track_caller]
fn expect_empty_or_not_found<T: Debug>(result: Result<Vec<T>>, doing: &str) {
    match result {
        Ok(items) => assert!(items.is_empty(), "{doing}: expected nothing, got {items:?}"),
        Err(Error::NotFound { .. }) => {}
        Err(other) => panic!("{doing}: expected an empty list or Error::NotFound, got {other:?}"),
    }
}

fn new_user(stem: &str) -> NewUser {
    let suffix = unique_suffix();
    NewUser {
        username: format!("{stem}-{suffix}"),
        email: format!("{stem}-{suffix}@example.test"),
        password_hash: PASSWORD_HASH.to_string(),
    }
}

async fn make_user_at(db: &dyn Database, stem: &str, now: Timestamp) -> User {
    db.users().create(new_user(stem), now).await.unwrap()
}

async fn make_user(db: &dyn Database, stem: &str) -> User {
    make_user_at(db, stem, clock()).await
}

fn new_node(stem: &str) -> NewNode {
    NewNode {
        name: format!("{stem}-{}", unique_suffix()),
        description: "a conformance node".to_string(),
        fqdn: "node1.example.test".to_string(),
        memory_mb: 16_384,
        memory_overallocate: 10,
        disk_mb: 512_000,
        disk_overallocate: -1,
        token_hash: format!("node-token-hash-{}", uuid::Uuid::new_v4()),
    }
}

async fn make_node(db: &dyn Database, stem: &str) -> Node {
    db.nodes().create(new_node(stem), clock()).await.unwrap()
}

const NODE_IP: &str = "10.0.0.1";

async fn add_ports(db: &dyn Database, node: NodeId, ports: &[u16]) -> Vec<Allocation> {
    db.allocations().add(node, NODE_IP, ports).await.unwrap()
}

/// A template that uses every part of a spec, including JSON values of every kind, so a store
/// that drops or reshapes any field fails the round trip.
fn template_spec(name: &str) -> TemplateSpec {
    TemplateSpec {
        name: name.to_string(),
        description: "Vanilla Minecraft ✓ with \"quotes\", 'apostrophes'\nand a second line".to_string(),
        author: "conformance@example.test".to_string(),
        startup: "java -Xms128M -Xmx{{SERVER_MEMORY}}M -jar {{SERVER_JARFILE}} nogui".to_string(),
        images: vec![
            TemplateImage { label: "Java 21".to_string(), image: "ghcr.io/example/java:21".to_string() },
            TemplateImage { label: "Java 17".to_string(), image: "ghcr.io/example/java:17".to_string() },
        ],
        variables: vec![
            TemplateVariable {
                name: "Server Jar File".to_string(),
                description: "The jar to run".to_string(),
                env: "SERVER_JARFILE".to_string(),
                default: "server.jar".to_string(),
                user_viewable: true,
                user_editable: true,
                rules: "required|string|max:20".to_string(),
            },
            TemplateVariable {
                name: "Message of the day".to_string(),
                description: String::new(),
                env: "MOTD".to_string(),
                default: "A cap server".to_string(),
                user_viewable: false,
                user_editable: false,
                rules: "required|string|max:60".to_string(),
            },
        ],
        stop: StopAction::Command("stop".to_string()),
        ready_patterns: vec![
            ReadyPattern::Contains(")! For help, type ".to_string()),
            ReadyPattern::Regex(r"^\[\d{2}:\d{2}:\d{2}\] Done \(\d+\.\d+s\)!".to_string()),
        ],
        install: Some(InstallScript {
            script: "#!/bin/bash\nset -euo pipefail\ncurl -fsSL -o \"${SERVER_JARFILE}\" \"$DOWNLOAD_URL\"\necho 'installed'\n"
                .to_string(),
            image: "ghcr.io/example/installer:debian".to_string(),
            entrypoint: "bash".to_string(),
        }),
        config_files: vec![
            ConfigFile {
                path: "server.properties".to_string(),
                parser: ConfigParser::Properties,
                replace: vec![
                    ConfigReplacement {
                        key: "server-port".to_string(),
                        value: serde_json::json!("{{server.build.default.port}}"),
                    },
                    ConfigReplacement { key: "max-players".to_string(), value: serde_json::json!(20) },
                ],
            },
            ConfigFile {
                path: "config/settings.json".to_string(),
                parser: ConfigParser::Json,
                replace: vec![ConfigReplacement {
                    key: "network.compression".to_string(),
                    value: serde_json::json!({"enabled": true, "threshold": 256, "ratio": 0.5, "tags": ["a", null]}),
                }],
            },
        ],
        features: vec!["eula".to_string(), "java_version".to_string()],
        file_denylist: vec!["secrets/*".to_string(), "*.key".to_string()],
        source_format: "cap_v1".to_string(),
        backup_hooks: None,
    }
}

async fn make_template(db: &dyn Database, stem: &str) -> Template {
    db.templates().create(template_spec(&format!("{stem}-{}", unique_suffix())), clock()).await.unwrap()
}

fn server_environment() -> BTreeMap<String, String> {
    [("SERVER_JARFILE", "server.jar"), ("MOTD", "hello 'world' 100%")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn new_server(name: &str, owner: UserId, node: NodeId, template: TemplateId) -> NewServer {
    NewServer {
        name: name.to_string(),
        description: format!("the {name} server"),
        owner_id: owner,
        node_id: node,
        template_id: template,
        limits: Limits::default(),
        environment: server_environment(),
        allocation: AllocationRequest::AnyFree,
    }
}

async fn make_server_at(db: &dyn Database, world: &World, owner: UserId, name: &str, now: Timestamp) -> Server {
    db.servers().create(new_server(name, owner, world.node.id, world.template.id), now).await.unwrap()
}

async fn make_server(db: &dyn Database, world: &World, owner: UserId, name: &str) -> Server {
    make_server_at(db, world, owner, name, clock()).await
}

/// A world whose node has `memory_mb` (no overallocation) and unlimited disk.
async fn small_world(db: &dyn Database, memory_mb: i64, n_ports: u16) -> World {
    let mut world = make_world(db, n_ports).await;
    let patch = NodePatch { memory_mb: Some(memory_mb), memory_overallocate: Some(0), ..NodePatch::default() };
    world.node = db.nodes().update(world.node.id, patch, clock()).await.unwrap();
    world
}

fn with_memory(mut new: NewServer, memory_mb: i64) -> NewServer {
    new.limits.memory_mb = memory_mb;
    new
}

/// An owner, a node with `n_ports` free allocations, and a template: enough to create servers.
struct World {
    owner: User,
    node: Node,
    template: Template,
    allocations: Vec<Allocation>,
}

async fn make_world(db: &dyn Database, n_ports: u16) -> World {
    let owner = make_user(db, "owner").await;
    let node = make_node(db, "node").await;
    let template = make_template(db, "template").await;
    let ports: Vec<u16> = (0..n_ports).map(|i| 25_565 + i).collect();
    let allocations = if ports.is_empty() { Vec::new() } else { add_ports(db, node.id, &ports).await };
    World { owner, node, template, allocations }
}

/// Every server matching `filter`, as a set of ids, checking that `total` agrees with the items.
async fn listed_server_ids(db: &dyn Database, filter: &ServerFilter) -> BTreeSet<ServerId> {
    let page = db.servers().list(filter, PageRequest::first()).await.unwrap();
    let ids: BTreeSet<ServerId> = page.items.iter().map(|s| s.id).collect();
    assert_eq!(ids.len(), page.items.len(), "a server is listed twice for {filter:?}");
    assert_eq!(page.total, page.items.len() as u64, "total disagrees with the items for {filter:?}");
    ids
}

fn ids_of(servers: &[&Server]) -> BTreeSet<ServerId> {
    servers.iter().map(|s| s.id).collect()
}

fn new_session_at(user: UserId, refresh_hash: &str, now: Timestamp, lifetime_secs: i64) -> Session {
    Session {
        id: SessionId::new_random(),
        user_id: user,
        refresh_hash: refresh_hash.to_string(),
        generation: 0,
        revoked: false,
        created_at: now,
        expires_at: now.plus_secs(lifetime_secs),
        ip: "203.0.113.7".to_string(),
    }
}

fn refresh_hash() -> String {
    format!("refresh-hash-{}", uuid::Uuid::new_v4().simple())
}

fn new_api_key(user: UserId, name: &str, now: Timestamp) -> ApiKey {
    ApiKey {
        id: ApiKeyId::new_random(),
        user_id: user,
        name: name.to_string(),
        prefix: format!("cap_{}", unique_suffix()),
        secret_hash: format!("sha256:{}", uuid::Uuid::new_v4().simple()),
        permissions: permissions(&[Permission::SERVER_VIEW, Permission::SERVER_CONSOLE]),
        created_at: now,
        last_used_at: None,
        expires_at: Some(now.plus_secs(30 * 24 * 3600)),
    }
}

fn audit_event(
    at: Timestamp,
    actor: Option<UserId>,
    action: &str,
    target: &str,
    server: Option<ServerId>,
    result: AuditResult,
) -> AuditEvent {
    AuditEvent {
        id: AuditEventId::new_random(),
        at,
        actor_id: actor,
        action: action.to_string(),
        target: target.to_string(),
        server_id: server,
        ip: "198.51.100.4".to_string(),
        result,
        detail: serde_json::json!({"via": "conformance", "n": 1, "nested": {"ok": true}}),
    }
}

// ---------------------------------------------------------------------------------------------
// Migrations
// ---------------------------------------------------------------------------------------------

/// The factory already migrated, so migrating again applies nothing, twice over.
pub async fn migrate_is_idempotent_and_ping_works(db: Arc<dyn Database>) {
    assert_eq!(db.migrate().await.unwrap(), 0, "a migrated database has nothing pending");
    assert_eq!(db.migrate().await.unwrap(), 0, "migrate stays idempotent");
    db.ping().await.unwrap();
    assert!(!db.backend_name().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------------------------

pub async fn users_create_then_get_round_trips(db: Arc<dyn Database>) {
    let now = clock();
    let created = db
        .users()
        .create(
            NewUser {
                username: "ada.lovelace".to_string(),
                email: "Ada.Lovelace@Example.TEST".to_string(),
                password_hash: PASSWORD_HASH.to_string(),
            },
            now,
        )
        .await
        .unwrap();
    assert_eq!(created.username, "ada.lovelace");
    assert_eq!(created.email, "ada.lovelace@example.test", "User::email is stored lowercased");
    assert_eq!(created.password_hash, PASSWORD_HASH);
    assert_eq!(created.totp_secret, None);
    assert!(!created.disabled);
    assert_eq!(created.created_at, now);
    assert_eq!(created.updated_at, now);

    assert_eq!(db.users().get(created.id).await.unwrap(), created);
    let found = db.users().find_by_email("ADA.lovelace@example.test").await.unwrap();
    assert_eq!(found, Some(created), "find_by_email compares lowercased");
    assert_eq!(db.users().find_by_email("nobody@example.test").await.unwrap(), None);
}

pub async fn users_duplicate_email_is_conflict_ignoring_case(db: Arc<dyn Database>) {
    let first = make_user(&*db, "first").await;
    let mut clash = new_user("second");
    clash.email = first.email.to_uppercase();
    expect_conflict(db.users().create(clash, clock()).await, "creating a user with an existing email in upper case");
    assert_eq!(db.users().count().await.unwrap(), 1, "the refused user was not stored");
}

pub async fn users_duplicate_username_is_conflict(db: Arc<dyn Database>) {
    let first = make_user(&*db, "first").await;
    let mut clash = new_user("second");
    clash.username = first.username.clone();
    expect_conflict(db.users().create(clash, clock()).await, "creating a user with an existing username");
    assert_eq!(db.users().count().await.unwrap(), 1, "the refused user was not stored");
}

pub async fn users_update_changes_only_patched_fields(db: Arc<dyn Database>) {
    let created = make_user(&*db, "patchme").await;
    let later = millis_after(created.created_at, 61_000);

    let renamed = db
        .users()
        .update(created.id, UserPatch { username: Some("renamed-user".to_string()), ..UserPatch::default() }, later)
        .await
        .unwrap();
    assert_eq!(renamed.username, "renamed-user");
    assert_eq!(renamed.email, created.email);
    assert_eq!(renamed.password_hash, created.password_hash);
    assert_eq!(renamed.created_at, created.created_at);
    assert_eq!(renamed.updated_at, later);

    let later = millis_after(later, 1_000);
    let changed = db
        .users()
        .update(
            created.id,
            UserPatch {
                email: Some("New.Address@Example.TEST".to_string()),
                password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$bmV3$bmV3aGFzaA".to_string()),
                totp_secret: Some(Some("JBSWY3DPEHPK3PXP".to_string())),
                disabled: Some(true),
                ..UserPatch::default()
            },
            later,
        )
        .await
        .unwrap();
    assert_eq!(changed.username, "renamed-user");
    assert_eq!(changed.email, "new.address@example.test", "a patched email is stored lowercased too");
    assert_eq!(changed.password_hash, "$argon2id$v=19$m=19456,t=2,p=1$bmV3$bmV3aGFzaA");
    assert_eq!(changed.totp_secret.as_deref(), Some("JBSWY3DPEHPK3PXP"));
    assert!(changed.disabled);
    assert_eq!(db.users().get(created.id).await.unwrap(), changed);

    let cleared = db
        .users()
        .update(created.id, UserPatch { totp_secret: Some(None), ..UserPatch::default() }, millis_after(later, 1))
        .await
        .unwrap();
    assert_eq!(cleared.totp_secret, None, "Some(None) clears the TOTP secret");
    assert!(cleared.disabled, "an unpatched field keeps its value");
}

pub async fn users_update_into_a_taken_email_or_username_is_conflict(db: Arc<dyn Database>) {
    let alice = make_user(&*db, "alice").await;
    let bob = make_user(&*db, "bob").await;
    let now = clock();
    expect_conflict(
        db.users()
            .update(bob.id, UserPatch { email: Some(alice.email.to_uppercase()), ..UserPatch::default() }, now)
            .await,
        "changing an email to another user's (in upper case)",
    );
    expect_conflict(
        db.users()
            .update(bob.id, UserPatch { username: Some(alice.username.clone()), ..UserPatch::default() }, now)
            .await,
        "changing a username to another user's",
    );
    assert_eq!(db.users().get(bob.id).await.unwrap(), bob, "a refused update changes nothing");
}

pub async fn users_missing_is_not_found(db: Arc<dyn Database>) {
    let missing = UserId::new_random();
    expect_not_found(db.users().get(missing).await, "get of a missing user");
    expect_not_found(
        db.users().update(missing, UserPatch { disabled: Some(true), ..UserPatch::default() }, clock()).await,
        "update of a missing user",
    );
    expect_not_found(db.users().delete(missing).await, "delete of a missing user");
}

pub async fn users_delete_then_get_is_not_found(db: Arc<dyn Database>) {
    let doomed = make_user(&*db, "doomed").await;
    let kept = make_user(&*db, "kept").await;
    db.users().delete(doomed.id).await.unwrap();
    expect_not_found(db.users().get(doomed.id).await, "get after delete");
    assert_eq!(db.users().find_by_email(&doomed.email).await.unwrap(), None);
    expect_not_found(db.users().delete(doomed.id).await, "deleting twice");
    assert_eq!(db.users().get(kept.id).await.unwrap(), kept, "other users are untouched");
}

pub async fn users_list_filters_by_query_case_insensitively_and_literally(db: Arc<dyn Database>) {
    let now = clock();
    let make = |username: &str, email: &str, offset: i64| {
        let db = db.clone();
        let new = NewUser {
            username: username.to_string(),
            email: email.to_string(),
            password_hash: PASSWORD_HASH.to_string(),
        };
        async move { db.users().create(new, millis_after(now, offset)).await.unwrap() }
    };
    let alice = make("alice", "alice@example.test", 0).await;
    let bob = make("bob", "robert@mail.example", 1).await;
    let dan = make("dan_smith", "dan@example.test", 2).await;
    let erin = make("erin", "erin@example.test", 3).await;

    let listed = |query: &'static str| {
        let db = db.clone();
        async move {
            let page = db.users().list(Some(query), PageRequest::first()).await.unwrap();
            assert_eq!(page.total, page.items.len() as u64, "total disagrees with the items for {query:?}");
            page.items.into_iter().map(|u| u.username).collect::<Vec<_>>()
        }
    };
    assert_eq!(listed("ALICE").await, vec![alice.username.clone()], "username, ignoring case");
    assert_eq!(listed("Mail.EXAMPLE").await, vec![bob.username.clone()], "email, ignoring case");
    assert_eq!(listed("example.test").await, vec![alice.username.clone(), dan.username.clone(), erin.username.clone()]);
    assert_eq!(listed("_").await, vec![dan.username.clone()], "`_` is a literal, not a wildcard");
    assert_eq!(listed("%").await, Vec::<String>::new(), "`%` is a literal, not a wildcard");
    assert_eq!(listed("zzz").await, Vec::<String>::new());

    let everyone = db.users().list(None, PageRequest::first()).await.unwrap();
    assert_eq!(everyone.total, 4);
    let ids: Vec<UserId> = everyone.items.iter().map(|u| u.id).collect();
    assert_eq!(ids, vec![alice.id, bob.id, dan.id, erin.id], "no query lists everyone in creation order");
}

pub async fn users_list_pages_in_creation_order_with_total(db: Arc<dyn Database>) {
    let start = clock();
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(make_user_at(&*db, "paged", millis_after(start, i * 1_000)).await.id);
    }
    let mut seen = Vec::new();
    for (page_number, expected_len) in [(1, 2), (2, 2), (3, 1), (4, 0)] {
        let page = db.users().list(None, PageRequest::new(page_number, 2)).await.unwrap();
        assert_eq!(page.total, 5, "total on page {page_number}");
        assert_eq!(page.page, page_number);
        assert_eq!(page.per_page, 2);
        assert_eq!(page.items.len(), expected_len, "items on page {page_number}");
        seen.extend(page.items.iter().map(|u| u.id));
    }
    assert_eq!(seen, created, "pages concatenate to creation order, without gaps or repeats");
}

pub async fn users_list_breaks_timestamp_ties_by_id(db: Arc<dyn Database>) {
    let now = clock();
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(make_user_at(&*db, "tied", now).await.id);
    }
    ids.sort();
    let mut seen = Vec::new();
    for page_number in 1..=3 {
        let page = db.users().list(None, PageRequest::new(page_number, 2)).await.unwrap();
        seen.extend(page.items.iter().map(|u| u.id));
    }
    assert_eq!(seen, ids, "equal creation times are ordered by id, so paging is stable");
}

/// Two patches of different fields at once: neither may undo the other (no read-modify-write).
pub async fn users_concurrent_updates_of_different_fields_all_apply(db: Arc<dyn Database>) {
    for round in 0..10 {
        let user = make_user(&*db, &format!("racer{round}")).await;
        let (a, b) = (db.clone(), db.clone());
        let disable = tokio::spawn(async move {
            a.users().update(user.id, UserPatch { disabled: Some(true), ..UserPatch::default() }, clock()).await
        });
        let totp = tokio::spawn(async move {
            let patch = UserPatch { totp_secret: Some(Some("JBSWY3DPEHPK3PXP".into())), ..UserPatch::default() };
            b.users().update(user.id, patch, clock()).await
        });
        disable.await.unwrap().unwrap();
        totp.await.unwrap().unwrap();
        let after = db.users().get(user.id).await.unwrap();
        assert!(after.disabled, "round {round}: the disable survived the 2FA change");
        assert_eq!(after.totp_secret.as_deref(), Some("JBSWY3DPEHPK3PXP"), "round {round}: the 2FA change survived");
    }
}

pub async fn users_count_counts_every_user(db: Arc<dyn Database>) {
    assert_eq!(db.users().count().await.unwrap(), 0, "a fresh database has no users");
    let first = make_user(&*db, "one").await;
    make_user(&*db, "two").await;
    make_user(&*db, "three").await;
    assert_eq!(db.users().count().await.unwrap(), 3);
    db.users().delete(first.id).await.unwrap();
    assert_eq!(db.users().count().await.unwrap(), 2);
}

pub async fn users_delete_removes_sessions_api_keys_subuser_grants_and_role_memberships(db: Arc<dyn Database>) {
    let world = make_world(&*db, 1).await;
    let server = make_server(&*db, &world, world.owner.id, "shared").await;
    let leaving = make_user(&*db, "leaving").await;
    let now = clock();

    let session = db.sessions().create(new_session_at(leaving.id, &refresh_hash(), now, 3_600)).await.unwrap();
    let key = db.api_keys().create(new_api_key(leaving.id, "ci", now)).await.unwrap();
    db.servers().set_subuser(server.id, leaving.id, permissions(&[Permission::SERVER_CONSOLE]), now).await.unwrap();
    let role = db
        .roles()
        .create(
            NewRole {
                name: format!("ops-{}", unique_suffix()),
                description: String::new(),
                permissions: permissions(&[Permission::SYSTEM_AUDIT]),
                builtin: false,
            },
            now,
        )
        .await
        .unwrap();
    db.roles().assign(leaving.id, role.id).await.unwrap();

    db.users().delete(leaving.id).await.unwrap();

    expect_not_found(db.users().get(leaving.id).await, "get of the deleted user");
    expect_not_found(db.sessions().get(session.id).await, "the deleted user's session");
    assert_eq!(db.api_keys().find_by_prefix(&key.prefix).await.unwrap(), None, "the deleted user's API key");
    expect_empty_or_not_found(db.api_keys().list_for_user(leaving.id).await, "API keys of the deleted user");
    assert_eq!(db.servers().list_subusers(server.id).await.unwrap(), vec![], "the deleted user's subuser grant");
    assert_eq!(db.servers().relation(server.id, leaving.id).await.unwrap(), ServerRelation::None);
    expect_empty_or_not_found(db.roles().roles_of(leaving.id).await, "roles of the deleted user");
    match db.roles().global_permissions(leaving.id).await {
        Ok(set) => assert_eq!(set, PermissionSet::EMPTY, "global permissions of the deleted user"),
        Err(Error::NotFound { .. }) => {}
        Err(other) => panic!("global permissions of the deleted user: {other:?}"),
    }
    assert_eq!(db.roles().get(role.id).await.unwrap(), role, "the role itself stays");
    assert_eq!(db.servers().get(server.id).await.unwrap(), server, "the server itself stays");
}

pub async fn users_delete_is_conflict_while_owning_servers(db: Arc<dyn Database>) {
    let world = make_world(&*db, 1).await;
    let server = make_server(&*db, &world, world.owner.id, "owned").await;
    expect_conflict(db.users().delete(world.owner.id).await, "deleting a user who owns a server");
    assert_eq!(db.users().get(world.owner.id).await.unwrap(), world.owner, "the refused delete changed nothing");

    db.servers().delete(server.id).await.unwrap();
    db.users().delete(world.owner.id).await.unwrap();
    expect_not_found(
        db.users().get(world.owner.id).await,
        "get after the owner lost their last server and was deleted",
    );
}

// ---------------------------------------------------------------------------------------------
// Roles
// ---------------------------------------------------------------------------------------------

fn new_role(stem: &str, granted: &[Permission]) -> NewRole {
    NewRole {
        name: format!("{stem}-{}", unique_suffix()),
        description: format!("the {stem} role"),
        permissions: permissions(granted),
        builtin: false,
    }
}

pub async fn roles_create_get_find_list_round_trip(db: Arc<dyn Database>) {
    let before = db.roles().list(PageRequest::first()).await.unwrap().total;
    let now = clock();
    let new = new_role("support", &[Permission::SERVER_VIEW, Permission::USER_VIEW]);
    let role = db.roles().create(new.clone(), now).await.unwrap();
    assert_eq!(role.name, new.name);
    assert_eq!(role.description, new.description);
    assert_eq!(role.permissions, new.permissions);
    assert!(!role.builtin);
    assert_eq!(role.created_at, now);

    assert_eq!(db.roles().get(role.id).await.unwrap(), role);
    assert_eq!(db.roles().find_by_name(&role.name).await.unwrap(), Some(role.clone()));
    assert_eq!(db.roles().find_by_name("no-such-role").await.unwrap(), None);

    let everything = db.roles().create(new_role("all", Permission::ALL), millis_after(now, 1)).await.unwrap();
    assert_eq!(everything.permissions, PermissionSet::all(), "all 36 permissions survive storage");

    let listed = db.roles().list(PageRequest::first()).await.unwrap();
    assert_eq!(listed.total, before + 2);
    assert_eq!(listed.items.len() as u64, listed.total);
    assert!(listed.items.contains(&role) && listed.items.contains(&everything));
}

pub async fn roles_duplicate_name_is_conflict(db: Arc<dyn Database>) {
    let role = db.roles().create(new_role("dup", &[]), clock()).await.unwrap();
    let mut clash = new_role("other", &[Permission::SERVER_VIEW]);
    clash.name = role.name.clone();
    expect_conflict(db.roles().create(clash, clock()).await, "creating a role with an existing name");

    let other = db.roles().create(new_role("other", &[]), clock()).await.unwrap();
    expect_conflict(
        db.roles().update(other.id, RolePatch { name: Some(role.name.clone()), ..RolePatch::default() }).await,
        "renaming a role to an existing name",
    );
    assert_eq!(db.roles().get(other.id).await.unwrap(), other, "a refused rename changes nothing");
}

pub async fn roles_update_changes_only_patched_fields(db: Arc<dyn Database>) {
    let role = db.roles().create(new_role("editable", &[Permission::SERVER_VIEW]), clock()).await.unwrap();
    let granted = permissions(&[Permission::SERVER_VIEW, Permission::BACKUP_VIEW, Permission::MONITORING_ALERTS]);
    let updated =
        db.roles().update(role.id, RolePatch { permissions: Some(granted), ..RolePatch::default() }).await.unwrap();
    assert_eq!(updated.permissions, granted);
    assert_eq!(updated.name, role.name);
    assert_eq!(updated.description, role.description);
    assert_eq!(updated.created_at, role.created_at);

    let renamed = db
        .roles()
        .update(
            role.id,
            RolePatch {
                name: Some(format!("renamed-{}", unique_suffix())),
                description: Some("new".to_string()),
                ..RolePatch::default()
            },
        )
        .await
        .unwrap();
    assert!(renamed.name.starts_with("renamed-"));
    assert_eq!(renamed.description, "new");
    assert_eq!(renamed.permissions, granted, "an unpatched field keeps its value");
    assert_eq!(db.roles().get(role.id).await.unwrap(), renamed);
}

pub async fn roles_missing_is_not_found(db: Arc<dyn Database>) {
    let missing = RoleId::new_random();
    expect_not_found(db.roles().get(missing).await, "get of a missing role");
    expect_not_found(
        db.roles().update(missing, RolePatch { description: Some("x".to_string()), ..RolePatch::default() }).await,
        "update of a missing role",
    );
    expect_not_found(db.roles().delete(missing).await, "delete of a missing role");
}

pub async fn roles_assign_and_unassign_are_idempotent(db: Arc<dyn Database>) {
    let user = make_user(&*db, "member").await;
    let role = db.roles().create(new_role("members", &[Permission::SERVER_VIEW]), clock()).await.unwrap();
    assert_eq!(db.roles().roles_of(user.id).await.unwrap(), vec![]);

    db.roles().assign(user.id, role.id).await.unwrap();
    db.roles().assign(user.id, role.id).await.unwrap();
    assert_eq!(db.roles().roles_of(user.id).await.unwrap(), vec![role.clone()], "assigning twice holds the role once");

    db.roles().unassign(user.id, role.id).await.unwrap();
    db.roles().unassign(user.id, role.id).await.unwrap();
    assert_eq!(db.roles().roles_of(user.id).await.unwrap(), vec![], "unassigning twice is fine");
}

pub async fn roles_global_permissions_is_the_union_of_the_users_roles(db: Arc<dyn Database>) {
    let user = make_user(&*db, "union").await;
    let bystander = make_user(&*db, "bystander").await;
    assert_eq!(db.roles().global_permissions(user.id).await.unwrap(), PermissionSet::EMPTY, "no roles, no permissions");

    let viewer = db
        .roles()
        .create(new_role("viewer", &[Permission::SERVER_VIEW, Permission::FILE_READ]), clock())
        .await
        .unwrap();
    let auditor = db
        .roles()
        .create(new_role("auditor", &[Permission::FILE_READ, Permission::SYSTEM_AUDIT]), clock())
        .await
        .unwrap();
    db.roles().assign(user.id, viewer.id).await.unwrap();
    db.roles().assign(user.id, auditor.id).await.unwrap();
    db.roles().assign(bystander.id, viewer.id).await.unwrap();

    assert_eq!(
        db.roles().global_permissions(user.id).await.unwrap(),
        permissions(&[Permission::SERVER_VIEW, Permission::FILE_READ, Permission::SYSTEM_AUDIT])
    );
    let mut names: Vec<String> = db.roles().roles_of(user.id).await.unwrap().into_iter().map(|r| r.name).collect();
    names.sort();
    let mut expected = vec![viewer.name.clone(), auditor.name.clone()];
    expected.sort();
    assert_eq!(names, expected);

    db.roles().unassign(user.id, viewer.id).await.unwrap();
    assert_eq!(db.roles().global_permissions(user.id).await.unwrap(), auditor.permissions);
    assert_eq!(
        db.roles().global_permissions(bystander.id).await.unwrap(),
        viewer.permissions,
        "other users are untouched"
    );

    let widened = permissions(&[Permission::SYSTEM_AUDIT, Permission::SYSTEM_NODES]);
    db.roles().update(auditor.id, RolePatch { permissions: Some(widened), ..RolePatch::default() }).await.unwrap();
    assert_eq!(db.roles().global_permissions(user.id).await.unwrap(), widened, "a role's edit reaches its members");
}

pub async fn roles_builtin_delete_is_conflict_and_custom_delete_removes_memberships(db: Arc<dyn Database>) {
    let user = make_user(&*db, "member").await;
    let mut builtin = new_role("builtin", Permission::ALL);
    builtin.builtin = true;
    let builtin = db.roles().create(builtin, clock()).await.unwrap();
    assert!(builtin.builtin);
    expect_conflict(db.roles().delete(builtin.id).await, "deleting a builtin role");
    assert_eq!(db.roles().get(builtin.id).await.unwrap(), builtin, "the builtin role stays");

    let custom = db.roles().create(new_role("custom", &[Permission::NETWORK_VIEW]), clock()).await.unwrap();
    db.roles().assign(user.id, custom.id).await.unwrap();
    db.roles().assign(user.id, builtin.id).await.unwrap();
    db.roles().delete(custom.id).await.unwrap();
    expect_not_found(db.roles().get(custom.id).await, "get after delete");
    assert_eq!(db.roles().find_by_name(&custom.name).await.unwrap(), None);
    assert_eq!(db.roles().roles_of(user.id).await.unwrap(), vec![builtin.clone()], "the membership went with the role");
    assert_eq!(db.roles().global_permissions(user.id).await.unwrap(), builtin.permissions);
}

// ---------------------------------------------------------------------------------------------
// Nodes
// ---------------------------------------------------------------------------------------------

pub async fn nodes_create_get_list_update_round_trip(db: Arc<dyn Database>) {
    let now = clock();
    let new = new_node("alpha");
    let node = db.nodes().create(new.clone(), now).await.unwrap();
    assert_eq!(node.name, new.name);
    assert_eq!(node.description, new.description);
    assert_eq!(node.fqdn, new.fqdn);
    assert_eq!(node.memory_mb, new.memory_mb);
    assert_eq!(node.memory_overallocate, new.memory_overallocate);
    assert_eq!(node.disk_mb, new.disk_mb);
    assert_eq!(node.disk_overallocate, new.disk_overallocate);
    assert_eq!(node.token_hash, new.token_hash);
    assert_eq!(node.created_at, now);
    assert_eq!(node.updated_at, now);
    assert_eq!(db.nodes().get(node.id).await.unwrap(), node);

    let second = db.nodes().create(new_node("beta"), millis_after(now, 1)).await.unwrap();
    let listed = db.nodes().list(PageRequest::first()).await.unwrap();
    assert_eq!(listed.total, 2);
    assert_eq!(listed.items, vec![node.clone(), second], "creation order");

    let later = millis_after(now, 5_000);
    let updated = db
        .nodes()
        .update(
            node.id,
            NodePatch {
                description: Some("resized".to_string()),
                memory_mb: Some(32_768),
                disk_overallocate: Some(25),
                ..NodePatch::default()
            },
            later,
        )
        .await
        .unwrap();
    assert_eq!(updated.description, "resized");
    assert_eq!(updated.memory_mb, 32_768);
    assert_eq!(updated.disk_overallocate, 25);
    assert_eq!(updated.name, node.name, "an unpatched field keeps its value");
    assert_eq!(updated.fqdn, node.fqdn);
    assert_eq!(updated.memory_overallocate, node.memory_overallocate);
    assert_eq!(updated.token_hash, node.token_hash);
    assert_eq!(updated.created_at, now);
    assert_eq!(updated.updated_at, later);
    assert_eq!(db.nodes().get(node.id).await.unwrap(), updated);
}

pub async fn nodes_duplicate_name_is_conflict(db: Arc<dyn Database>) {
    let node = make_node(&*db, "named").await;
    let mut clash = new_node("other");
    clash.name = node.name.clone();
    expect_conflict(db.nodes().create(clash, clock()).await, "creating a node with an existing name");

    let other = make_node(&*db, "other").await;
    expect_conflict(
        db.nodes().update(other.id, NodePatch { name: Some(node.name.clone()), ..NodePatch::default() }, clock()).await,
        "renaming a node to an existing name",
    );
    assert_eq!(db.nodes().get(other.id).await.unwrap(), other, "a refused rename changes nothing");
}

pub async fn nodes_missing_is_not_found(db: Arc<dyn Database>) {
    let missing = NodeId::new_random();
    expect_not_found(db.nodes().get(missing).await, "get of a missing node");
    expect_not_found(
        db.nodes().update(missing, NodePatch { memory_mb: Some(1), ..NodePatch::default() }, clock()).await,
        "update of a missing node",
    );
    expect_not_found(db.nodes().set_token_hash(missing, "hash", clock()).await, "set_token_hash of a missing node");
    expect_not_found(db.nodes().delete(missing).await, "delete of a missing node");
}

pub async fn nodes_find_by_token_hash_follows_set_token_hash(db: Arc<dyn Database>) {
    let node = make_node(&*db, "agent").await;
    let other = make_node(&*db, "other").await;
    assert_eq!(db.nodes().find_by_token_hash(&node.token_hash).await.unwrap(), Some(node.clone()));
    assert_eq!(db.nodes().find_by_token_hash("no-such-hash").await.unwrap(), None);

    let later = millis_after(node.updated_at, 10_000);
    let rotated_hash = format!("rotated-{}", uuid::Uuid::new_v4());
    db.nodes().set_token_hash(node.id, &rotated_hash, later).await.unwrap();
    assert_eq!(
        db.nodes().find_by_token_hash(&node.token_hash).await.unwrap(),
        None,
        "the old token no longer finds it"
    );
    let found = db.nodes().find_by_token_hash(&rotated_hash).await.unwrap().expect("the new token finds the node");
    assert_eq!(found.id, node.id);
    assert_eq!(found.token_hash, rotated_hash);
    assert_eq!(found.updated_at, later);
    assert_eq!(
        db.nodes().find_by_token_hash(&other.token_hash).await.unwrap(),
        Some(other),
        "other nodes are untouched"
    );
}

pub async fn nodes_delete_is_conflict_while_servers_are_on_it(db: Arc<dyn Database>) {
    let world = make_world(&*db, 2).await;
    let server = make_server(&*db, &world, world.owner.id, "tenant").await;
    expect_conflict(db.nodes().delete(world.node.id).await, "deleting a node with a server");
    assert_eq!(db.nodes().get(world.node.id).await.unwrap(), world.node, "the refused delete changed nothing");
    let allocations = db.allocations().list_for_node(world.node.id, PageRequest::first()).await.unwrap();
    assert_eq!(allocations.total, 2, "no allocation went away either");

    db.servers().delete(server.id).await.unwrap();
    db.nodes().delete(world.node.id).await.unwrap();
    expect_not_found(db.nodes().get(world.node.id).await, "get after delete");
}

pub async fn nodes_delete_removes_its_free_allocations(db: Arc<dyn Database>) {
    let doomed = make_node(&*db, "doomed").await;
    let kept = make_node(&*db, "kept").await;
    let doomed_allocations = add_ports(&*db, doomed.id, &[27_015, 27_016, 27_017]).await;
    let kept_allocations = add_ports(&*db, kept.id, &[27_015]).await;

    db.nodes().delete(doomed.id).await.unwrap();
    expect_not_found(db.nodes().get(doomed.id).await, "get after delete");
    for allocation in &doomed_allocations {
        expect_not_found(db.allocations().get(allocation.id).await, "an allocation of the deleted node");
    }
    assert_eq!(
        db.allocations().get(kept_allocations[0].id).await.unwrap(),
        kept_allocations[0],
        "other nodes keep theirs"
    );
}

// ---------------------------------------------------------------------------------------------
// Allocations
// ---------------------------------------------------------------------------------------------

pub async fn allocations_add_then_get_and_list(db: Arc<dyn Database>) {
    let node = make_node(&*db, "ports").await;
    let added = db.allocations().add(node.id, "192.0.2.10", &[25_565, 25_566, 19_132]).await.unwrap();
    let ports: Vec<u16> = added.iter().map(|a| a.port).collect();
    assert_eq!(ports, vec![25_565, 25_566, 19_132], "one allocation per port, in the order given");
    for allocation in &added {
        assert_eq!(allocation.node_id, node.id);
        assert_eq!(allocation.ip, "192.0.2.10");
        assert_eq!(allocation.server_id, None, "a new allocation is free");
        assert!(!allocation.primary);
        assert_eq!(&db.allocations().get(allocation.id).await.unwrap(), allocation);
    }
    let listed = db.allocations().list_for_node(node.id, PageRequest::first()).await.unwrap();
    assert_eq!(listed.total, 3);
    let listed_ids: BTreeSet<AllocationId> = listed.items.iter().map(|a| a.id).collect();
    assert_eq!(listed_ids, added.iter().map(|a| a.id).collect());

    // Uniqueness is per node: two nodes may both listen on 0.0.0.0:25565.
    let other = make_node(&*db, "other").await;
    db.allocations().add(other.id, "0.0.0.0", &[25_565]).await.unwrap();
    db.allocations().add(node.id, "0.0.0.0", &[25_565]).await.unwrap();
    expect_not_found(db.allocations().get(AllocationId::new_random()).await, "get of a missing allocation");
}

pub async fn allocations_add_existing_ip_port_is_conflict_and_adds_none_of_the_batch(db: Arc<dyn Database>) {
    let node = make_node(&*db, "ports").await;
    add_ports(&*db, node.id, &[25_565, 25_566]).await;
    let refused = db.allocations().add(node.id, NODE_IP, &[25_570, 25_566, 25_571]).await;
    match &refused {
        Err(Error::Conflict { message, .. }) => {
            assert!(message.contains("25566"), "the conflict names the port that exists: {message:?}")
        }
        other => panic!("adding a batch with an existing ip:port: expected Error::Conflict, got {other:?}"),
    }
    let listed = db.allocations().list_for_node(node.id, PageRequest::first()).await.unwrap();
    let ports: BTreeSet<u16> = listed.items.iter().map(|a| a.port).collect();
    assert_eq!(ports, BTreeSet::from([25_565, 25_566]), "none of the refused batch was added");
    assert_eq!(listed.total, 2);

    // The same port on another ip of the node is a different allocation.
    db.allocations().add(node.id, "10.0.0.2", &[25_566]).await.unwrap();
}

pub async fn allocations_list_for_node_pages_with_total(db: Arc<dyn Database>) {
    let node = make_node(&*db, "paged").await;
    let other = make_node(&*db, "other").await;
    let added = add_ports(&*db, node.id, &[30_000, 30_001, 30_002, 30_003, 30_004, 30_005, 30_006]).await;
    add_ports(&*db, other.id, &[30_000, 30_001]).await;

    let mut seen = Vec::new();
    for (page_number, expected_len) in [(1, 3), (2, 3), (3, 1), (4, 0)] {
        let page = db.allocations().list_for_node(node.id, PageRequest::new(page_number, 3)).await.unwrap();
        assert_eq!(page.total, 7, "total on page {page_number} counts only this node");
        assert_eq!(page.items.len(), expected_len, "items on page {page_number}");
        assert!(page.items.iter().all(|a| a.node_id == node.id));
        seen.extend(page.items.iter().map(|a| a.id));
    }
    let distinct: BTreeSet<AllocationId> = seen.iter().copied().collect();
    assert_eq!(distinct.len(), seen.len(), "no allocation appears on two pages");
    assert_eq!(distinct, added.iter().map(|a| a.id).collect(), "the pages cover every allocation");
}

pub async fn allocations_delete_is_conflict_while_held_and_frees_otherwise(db: Arc<dyn Database>) {
    let world = make_world(&*db, 2).await;
    let server = make_server(&*db, &world, world.owner.id, "holder").await;
    let held = db.allocations().list_for_server(server.id).await.unwrap();
    assert_eq!(held.len(), 1);
    expect_conflict(db.allocations().delete(held[0].id).await, "deleting an allocation a server holds");
    assert_eq!(db.allocations().get(held[0].id).await.unwrap(), held[0], "the refused delete changed nothing");

    let free = world.allocations.iter().find(|a| a.id != held[0].id).unwrap();
    db.allocations().delete(free.id).await.unwrap();
    expect_not_found(db.allocations().get(free.id).await, "get after delete");
    expect_not_found(db.allocations().delete(free.id).await, "deleting twice");
}

// ---------------------------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------------------------

pub async fn templates_spec_round_trips_unchanged(db: Arc<dyn Database>) {
    let now = clock();
    let spec = template_spec("Minecraft: Java Edition");
    let template = db.templates().create(spec.clone(), now).await.unwrap();
    assert_eq!(template.spec, spec, "create returns the spec as given");
    assert_eq!(template.created_at, now);
    assert_eq!(template.updated_at, now);
    assert_eq!(db.templates().get(template.id).await.unwrap(), template, "get returns it unchanged");

    let mut minimal = template_spec("Minimal");
    minimal.description = String::new();
    minimal.images = vec![];
    minimal.variables = vec![];
    minimal.stop = StopAction::Signal(StopSignal::Sigint);
    minimal.ready_patterns = vec![];
    minimal.install = None;
    minimal.config_files = vec![];
    minimal.features = vec![];
    minimal.file_denylist = vec![];
    let bare = db.templates().create(minimal.clone(), now).await.unwrap();
    assert_eq!(db.templates().get(bare.id).await.unwrap().spec, minimal, "empty parts stay empty, not absent");
}

pub async fn templates_update_replaces_the_spec(db: Arc<dyn Database>) {
    let template = make_template(&*db, "editable").await;
    let mut spec = template.spec.clone();
    spec.startup = "./bedrock_server --jar {{SERVER_JARFILE}}".to_string();
    spec.variables.truncate(1);
    spec.variables[0].rules = "required|string|max:32".to_string();
    spec.stop = StopAction::Signal(StopSignal::Sigterm);
    spec.ready_patterns = vec![ReadyPattern::Contains("Server started.".to_string())];
    spec.install = None;
    let later = millis_after(template.created_at, 30_000);

    let updated = db.templates().update(template.id, spec.clone(), later).await.unwrap();
    assert_eq!(updated.id, template.id);
    assert_eq!(updated.spec, spec);
    assert_eq!(updated.created_at, template.created_at);
    assert_eq!(updated.updated_at, later);
    assert_eq!(db.templates().get(template.id).await.unwrap(), updated);
}

pub async fn templates_duplicate_name_is_conflict(db: Arc<dyn Database>) {
    let template = make_template(&*db, "named").await;
    expect_conflict(
        db.templates().create(template_spec(&template.spec.name), clock()).await,
        "creating a template with an existing name",
    );
    let other = make_template(&*db, "other").await;
    expect_conflict(
        db.templates().update(other.id, template_spec(&template.spec.name), clock()).await,
        "renaming a template to an existing name",
    );
    assert_eq!(db.templates().get(other.id).await.unwrap(), other, "a refused update changes nothing");
    assert_eq!(db.templates().list(PageRequest::first()).await.unwrap().total, 2);
}

pub async fn templates_missing_is_not_found(db: Arc<dyn Database>) {
    let missing = TemplateId::new_random();
    expect_not_found(db.templates().get(missing).await, "get of a missing template");
    expect_not_found(
        db.templates().update(missing, template_spec("ghost"), clock()).await,
        "update of a missing template",
    );
    expect_not_found(db.templates().delete(missing).await, "delete of a missing template");
}

pub async fn templates_list_pages_with_total(db: Arc<dyn Database>) {
    let start = clock();
    let mut created = Vec::new();
    for i in 0..5 {
        let spec = template_spec(&format!("game-{i}"));
        created.push(db.templates().create(spec, millis_after(start, i * 1_000)).await.unwrap().id);
    }
    let mut seen = Vec::new();
    for (page_number, expected_len) in [(1, 2), (2, 2), (3, 1)] {
        let page = db.templates().list(PageRequest::new(page_number, 2)).await.unwrap();
        assert_eq!(page.total, 5);
        assert_eq!(page.items.len(), expected_len, "items on page {page_number}");
        seen.extend(page.items.iter().map(|t| t.id));
    }
    assert_eq!(seen, created, "creation order");
}

pub async fn templates_delete_is_conflict_while_servers_use_it(db: Arc<dyn Database>) {
    let world = make_world(&*db, 1).await;
    let server = make_server(&*db, &world, world.owner.id, "player").await;
    expect_conflict(db.templates().delete(world.template.id).await, "deleting a template in use");
    assert_eq!(db.templates().get(world.template.id).await.unwrap(), world.template);

    db.servers().delete(server.id).await.unwrap();
    db.templates().delete(world.template.id).await.unwrap();
    expect_not_found(db.templates().get(world.template.id).await, "get after delete");
}

// ---------------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------------

pub async fn servers_create_takes_a_free_allocation_as_primary(db: Arc<dyn Database>) {
    let world = make_world(&*db, 3).await;
    let now = clock();
    let mut new = new_server("Survival", world.owner.id, world.node.id, world.template.id);
    new.limits = Limits { memory_mb: 4_096, swap_mb: -1, cpu_percent: 250, disk_mb: 0, io_weight: 10, pids: 0 };
    let server = db.servers().create(new.clone(), now).await.unwrap();
    assert_eq!(server.name, new.name);
    assert_eq!(server.description, new.description);
    assert_eq!(server.owner_id, world.owner.id);
    assert_eq!(server.node_id, world.node.id);
    assert_eq!(server.template_id, world.template.id);
    assert_eq!(server.limits, new.limits);
    assert_eq!(server.environment, new.environment);
    assert_eq!(server.state, ServerState::Installing, "a new server is installing");
    assert_eq!(server.created_at, now);
    assert_eq!(server.updated_at, now);
    assert_eq!(db.servers().get(server.id).await.unwrap(), server);

    let held = db.allocations().list_for_server(server.id).await.unwrap();
    assert_eq!(held.len(), 1, "one allocation, the primary");
    assert!(held[0].primary);
    assert_eq!(held[0].server_id, Some(server.id));
    assert_eq!(held[0].node_id, world.node.id);
    assert!(world.allocations.iter().any(|a| a.id == held[0].id), "it is one of the node's free allocations");
    assert_eq!(db.allocations().get(held[0].id).await.unwrap(), held[0]);

    let on_node = db.allocations().list_for_node(world.node.id, PageRequest::first()).await.unwrap();
    assert_eq!(on_node.items.iter().filter(|a| a.server_id.is_some()).count(), 1, "the others stay free");
}

pub async fn servers_create_with_a_specific_free_allocation_takes_it(db: Arc<dyn Database>) {
    let world = make_world(&*db, 3).await;
    let wanted = world.allocations[2].clone();
    let mut new = new_server("picky", world.owner.id, world.node.id, world.template.id);
    new.allocation = AllocationRequest::Specific(wanted.id);
    let server = db.servers().create(new, clock()).await.unwrap();
    let held = db.allocations().list_for_server(server.id).await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].id, wanted.id);
    assert_eq!(held[0].port, wanted.port);
    assert!(held[0].primary);
    assert_eq!(held[0].server_id, Some(server.id));
}

pub async fn servers_create_with_a_held_or_foreign_allocation_is_conflict(db: Arc<dyn Database>) {
    let world = make_world(&*db, 2).await;
    let first = make_server(&*db, &world, world.owner.id, "first").await;
    let held = db.allocations().list_for_server(first.id).await.unwrap().remove(0);

    let mut taken = new_server("second", world.owner.id, world.node.id, world.template.id);
    taken.allocation = AllocationRequest::Specific(held.id);
    expect_conflict(db.servers().create(taken, clock()).await, "creating a server on a held allocation");

    let elsewhere = make_node(&*db, "elsewhere").await;
    let foreign = add_ports(&*db, elsewhere.id, &[28_015]).await.remove(0);
    let mut crossed = new_server("third", world.owner.id, world.node.id, world.template.id);
    crossed.allocation = AllocationRequest::Specific(foreign.id);
    expect_conflict(db.servers().create(crossed, clock()).await, "creating a server on another node's allocation");

    let everything = db.servers().list(&ServerFilter::default(), PageRequest::first()).await.unwrap();
    assert_eq!(everything.total, 1, "no refused server was stored");
    assert_eq!(
        db.allocations().get(held.id).await.unwrap().server_id,
        Some(first.id),
        "the held one stays with its server"
    );
    assert_eq!(db.allocations().get(foreign.id).await.unwrap().server_id, None, "the foreign one stays free");
}

pub async fn servers_create_and_update_respect_node_capacity(db: Arc<dyn Database>) {
    let world = small_world(&*db, 1000, 4).await;
    let new = |name: &str, mb| with_memory(new_server(name, world.owner.id, world.node.id, world.template.id), mb);
    let first = db.servers().create(new("first", 600), clock()).await.unwrap();
    expect_conflict(db.servers().create(new("second", 600), clock()).await, "600 + 600 MiB on a 1000 MiB node");
    let second = db.servers().create(new("second", 400), clock()).await.unwrap();
    assert_eq!(listed_server_ids(&*db, &ServerFilter::default()).await, ids_of(&[&first, &second]));
    assert_eq!(db.allocations().list_for_server(first.id).await.unwrap().len(), 1);

    let grow = |mb| ServerPatch { limits: Some(Limits { memory_mb: mb, ..first.limits }), ..ServerPatch::default() };
    expect_conflict(db.servers().update(first.id, grow(601), clock()).await, "growing past the node");
    assert_eq!(db.servers().get(first.id).await.unwrap().limits.memory_mb, 600, "unchanged after the refusal");
    // The server's own current share does not count against it.
    assert_eq!(db.servers().update(first.id, grow(600), clock()).await.unwrap().limits.memory_mb, 600);
    assert_eq!(db.servers().update(first.id, grow(500), clock()).await.unwrap().limits.memory_mb, 500);

    // -1 means no check.
    let patch = NodePatch { memory_overallocate: Some(-1), ..NodePatch::default() };
    db.nodes().update(world.node.id, patch, clock()).await.unwrap();
    db.servers().create(new("third", 100_000), clock()).await.unwrap();
}

pub async fn servers_set_variables_merges_and_concurrent_edits_both_stay(db: Arc<dyn Database>) {
    let world = make_world(&*db, 1).await;
    let server = make_server(&*db, &world, world.owner.id, "vars").await;
    let base: BTreeMap<String, String> =
        [("A".to_string(), "1".to_string()), ("B".to_string(), "2".to_string())].into();
    let patch = ServerPatch { environment: Some(base), ..ServerPatch::default() };
    db.servers().update(server.id, patch, clock()).await.unwrap();
    let set = |k: &str, v: &str| ServerPatch {
        set_variables: Some([(k.to_string(), v.to_string())].into()),
        ..ServerPatch::default()
    };
    let (a, b) = (db.clone(), db.clone());
    let (set_a, set_b) = (set("A", "one; rm -rf / \"quoted\""), set("B", "two"));
    let first = tokio::spawn(async move { a.servers().update(server.id, set_a, clock()).await });
    let second = tokio::spawn(async move { b.servers().update(server.id, set_b, clock()).await });
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    let env = db.servers().get(server.id).await.unwrap().environment;
    let expected: BTreeMap<String, String> =
        [("A".to_string(), "one; rm -rf / \"quoted\"".to_string()), ("B".to_string(), "two".to_string())].into();
    assert_eq!(env, expected, "both edits stay, values byte for byte");
}

/// Many creations at once on a node with room for three: never more than three.
pub async fn servers_concurrent_create_never_overcommits_a_node(db: Arc<dyn Database>) {
    let world = small_world(&*db, 1000, 12).await;
    let barrier = Arc::new(Barrier::new(12));
    let tasks = (0..12).map(|i| {
        let (db, barrier) = (db.clone(), barrier.clone());
        let new = with_memory(new_server(&format!("racer-{i}"), world.owner.id, world.node.id, world.template.id), 300);
        tokio::spawn(async move {
            barrier.wait().await;
            db.servers().create(new, clock()).await
        })
    });
    let results = join_all(tasks).await;
    let created = results.into_iter().map(|r| r.unwrap()).filter(|r| r.is_ok()).count();
    assert_eq!(created, 3, "three 300 MiB servers fit in 1000 MiB, a fourth does not");
}

/// Sixteen creators at once, six servers each, on a node with room for exactly those 96: every
/// one is created (none waits itself out), each on its own allocation, and a 97th does not fit.
pub async fn servers_many_concurrent_creators_fill_a_node_exactly(db: Arc<dyn Database>) {
    const CREATORS: usize = 16;
    const EACH: usize = 6;
    let world = small_world(&*db, (CREATORS * EACH) as i64 * 100, (CREATORS * EACH) as u16 + 1).await;
    let barrier = Arc::new(Barrier::new(CREATORS));
    let creators = (0..CREATORS).map(|creator| {
        let (db, barrier) = (db.clone(), barrier.clone());
        let (owner, node, template) = (world.owner.id, world.node.id, world.template.id);
        tokio::spawn(async move {
            barrier.wait().await;
            let mut created = Vec::new();
            for i in 0..EACH {
                let new = with_memory(new_server(&format!("crowd-{creator}-{i}"), owner, node, template), 100);
                created.push(db.servers().create(new, clock()).await);
            }
            created
        })
    });
    let mut servers = Vec::new();
    for created in join_all(creators).await {
        for server in created.unwrap() {
            servers.push(server.expect("a creation with room left on the node succeeds"));
        }
    }
    assert_eq!(servers.len(), CREATORS * EACH);
    let mut held = BTreeSet::new();
    for server in &servers {
        let allocations = db.allocations().list_for_server(server.id).await.unwrap();
        assert_eq!(allocations.len(), 1, "one allocation per server");
        assert!(held.insert(allocations[0].id), "an allocation was handed to two servers");
    }
    let one_more = with_memory(new_server("one-more", world.owner.id, world.node.id, world.template.id), 100);
    expect_conflict(db.servers().create(one_more, clock()).await, "a 97th server on a node that is full");
}

/// Servers created, grown, shrunk and deleted from eight tasks at once leave the node counting
/// exactly nothing: afterwards a server of the node's whole memory fits, one MiB more does not,
/// and the node can be deleted.
pub async fn servers_concurrent_create_resize_and_delete_keep_the_node_count_exact(db: Arc<dyn Database>) {
    const TASKS: usize = 8;
    // At most eight servers of 120 MiB at a time: every step fits in 1000 MiB.
    let world = small_world(&*db, 1000, TASKS as u16).await;
    let barrier = Arc::new(Barrier::new(TASKS));
    let tasks = (0..TASKS).map(|task| {
        let (db, barrier) = (db.clone(), barrier.clone());
        let (owner, node, template) = (world.owner.id, world.node.id, world.template.id);
        tokio::spawn(async move {
            barrier.wait().await;
            for round in 0..4 {
                let new = with_memory(new_server(&format!("churn-{task}-{round}"), owner, node, template), 100);
                let server = db.servers().create(new, clock()).await.expect("creating fits");
                for memory_mb in [120, 50] {
                    let patch =
                        ServerPatch { limits: Some(Limits { memory_mb, ..server.limits }), ..ServerPatch::default() };
                    let resized = db.servers().update(server.id, patch, clock()).await.expect("resizing fits");
                    assert_eq!(resized.limits.memory_mb, memory_mb);
                }
                db.servers().delete(server.id).await.expect("deleting works");
            }
        })
    });
    for task in join_all(tasks).await {
        task.unwrap();
    }
    assert_eq!(listed_server_ids(&*db, &ServerFilter::default()).await, BTreeSet::new());
    let whole = with_memory(new_server("whole", world.owner.id, world.node.id, world.template.id), 1000);
    let whole = db.servers().create(whole, clock()).await.expect("the whole node is free again");
    let grow = ServerPatch { limits: Some(Limits { memory_mb: 1001, ..whole.limits }), ..ServerPatch::default() };
    expect_conflict(db.servers().update(whole.id, grow, clock()).await, "growing past the whole node");
    db.servers().delete(whole.id).await.unwrap();
    db.nodes().delete(world.node.id).await.unwrap();
    expect_not_found(db.nodes().get(world.node.id).await, "get of the deleted node");
}

pub async fn servers_create_without_a_free_allocation_is_conflict(db: Arc<dyn Database>) {
    let world = make_world(&*db, 0).await;
    expect_conflict(
        db.servers().create(new_server("homeless", world.owner.id, world.node.id, world.template.id), clock()).await,
        "creating a server on a node without allocations",
    );
    add_ports(&*db, world.node.id, &[25_565]).await;
    make_server(&*db, &world, world.owner.id, "lucky").await;
    expect_conflict(
        db.servers().create(new_server("unlucky", world.owner.id, world.node.id, world.template.id), clock()).await,
        "creating a server when every allocation is held",
    );
    let everything = db.servers().list(&ServerFilter::default(), PageRequest::first()).await.unwrap();
    assert_eq!(everything.total, 1, "no refused server was stored");
}

pub async fn servers_missing_is_not_found(db: Arc<dyn Database>) {
    let user = make_user(&*db, "someone").await;
    let missing = ServerId::new_random();
    expect_not_found(db.servers().get(missing).await, "get of a missing server");
    expect_not_found(
        db.servers()
            .update(missing, ServerPatch { name: Some("x".to_string()), ..ServerPatch::default() }, clock())
            .await,
        "update of a missing server",
    );
    expect_not_found(
        db.servers().set_state(missing, ServerState::Offline, clock()).await,
        "set_state of a missing server",
    );
    expect_not_found(db.servers().delete(missing).await, "delete of a missing server");
    expect_not_found(db.servers().relation(missing, user.id).await, "relation to a missing server");
}

pub async fn servers_list_visible_to_covers_owner_and_subusers_only(db: Arc<dyn Database>) {
    let world = make_world(&*db, 4).await;
    let friend = make_user(&*db, "friend").await;
    let second_friend = make_user(&*db, "friend2").await;
    let stranger = make_user(&*db, "stranger").await;
    let shared = make_server(&*db, &world, world.owner.id, "shared").await;
    let private = make_server(&*db, &world, world.owner.id, "private").await;
    let friends_own = make_server(&*db, &world, friend.id, "friends-own").await;
    let now = clock();
    let viewer = permissions(&[Permission::SERVER_VIEW, Permission::SERVER_CONSOLE]);
    db.servers().set_subuser(shared.id, friend.id, viewer, now).await.unwrap();
    db.servers().set_subuser(shared.id, second_friend.id, permissions(&[Permission::SERVER_VIEW]), now).await.unwrap();
    // A grant without SERVER_VIEW does not make the server visible.
    let blind = make_user(&*db, "blind").await;
    db.servers().set_subuser(shared.id, blind.id, permissions(&[Permission::FILE_READ]), now).await.unwrap();

    let visible_to = |user: UserId| ServerFilter { visible_to: Some(user), ..ServerFilter::default() };
    assert_eq!(listed_server_ids(&*db, &visible_to(blind.id)).await, BTreeSet::new(), "no SERVER_VIEW, not listed");
    assert_eq!(listed_server_ids(&*db, &visible_to(world.owner.id)).await, ids_of(&[&shared, &private]));
    assert_eq!(
        listed_server_ids(&*db, &visible_to(friend.id)).await,
        ids_of(&[&shared, &friends_own]),
        "a subuser sees the shared server and their own, each once"
    );
    assert_eq!(listed_server_ids(&*db, &visible_to(second_friend.id)).await, ids_of(&[&shared]));
    assert_eq!(listed_server_ids(&*db, &visible_to(stranger.id)).await, BTreeSet::new(), "a stranger sees nothing");
    assert_eq!(
        listed_server_ids(&*db, &ServerFilter::default()).await,
        ids_of(&[&shared, &private, &friends_own]),
        "no visible_to means every server, each once even with two subusers"
    );
}

pub async fn servers_list_filters_by_owner_node_and_state(db: Arc<dyn Database>) {
    let world = make_world(&*db, 3).await;
    let other_owner = make_user(&*db, "other-owner").await;
    let other_node = make_node(&*db, "other-node").await;
    add_ports(&*db, other_node.id, &[26_000, 26_001]).await;

    let a = make_server(&*db, &world, world.owner.id, "a").await;
    let b = make_server(&*db, &world, other_owner.id, "b").await;
    let c =
        db.servers().create(new_server("c", world.owner.id, other_node.id, world.template.id), clock()).await.unwrap();
    db.servers().set_state(b.id, ServerState::Offline, clock()).await.unwrap();
    db.servers().set_state(c.id, ServerState::Offline, clock()).await.unwrap();

    let by_owner = ServerFilter { owner_id: Some(world.owner.id), ..ServerFilter::default() };
    assert_eq!(listed_server_ids(&*db, &by_owner).await, ids_of(&[&a, &c]));
    let by_node = ServerFilter { node_id: Some(world.node.id), ..ServerFilter::default() };
    assert_eq!(listed_server_ids(&*db, &by_node).await, ids_of(&[&a, &b]));
    let offline = ServerFilter { state: Some(ServerState::Offline), ..ServerFilter::default() };
    assert_eq!(listed_server_ids(&*db, &offline).await, ids_of(&[&b, &c]));
    let running = ServerFilter { state: Some(ServerState::Running), ..ServerFilter::default() };
    assert_eq!(listed_server_ids(&*db, &running).await, BTreeSet::new());
    let all_of_them = ServerFilter {
        owner_id: Some(world.owner.id),
        node_id: Some(other_node.id),
        state: Some(ServerState::Offline),
        name_contains: Some("C".to_string()),
        visible_to: Some(world.owner.id),
    };
    assert_eq!(listed_server_ids(&*db, &all_of_them).await, ids_of(&[&c]), "set fields are combined with AND");
    let contradictory =
        ServerFilter { owner_id: Some(other_owner.id), node_id: Some(other_node.id), ..ServerFilter::default() };
    assert_eq!(listed_server_ids(&*db, &contradictory).await, BTreeSet::new());
}

pub async fn servers_list_name_contains_is_case_insensitive_and_literal(db: Arc<dyn Database>) {
    let names =
        ["Alpha Survival", "alpha creative", "100% Vanilla", "under_score", "O'Brien's world", "back\\slash", "Beta"];
    let world = make_world(&*db, names.len() as u16).await;
    let mut servers = BTreeMap::new();
    for name in names {
        servers.insert(name, make_server(&*db, &world, world.owner.id, name).await);
    }
    let matching = |wanted: &[&str]| wanted.iter().map(|name| servers[name].id).collect::<BTreeSet<_>>();
    let name_contains =
        |query: &str| ServerFilter { name_contains: Some(query.to_string()), ..ServerFilter::default() };

    let cases: [(&str, &[&str]); 9] = [
        ("ALPHA", &["Alpha Survival", "alpha creative"]),
        ("a c", &["alpha creative"]),
        ("%", &["100% Vanilla"]),
        ("0% v", &["100% Vanilla"]),
        ("_", &["under_score"]),
        ("'", &["O'Brien's world"]),
        ("\\", &["back\\slash"]),
        ("%%", &[]),
        ("zzz", &[]),
    ];
    for (query, wanted) in cases {
        assert_eq!(listed_server_ids(&*db, &name_contains(query)).await, matching(wanted), "name_contains {query:?}");
    }
}

pub async fn servers_list_pages_in_creation_order_with_total(db: Arc<dyn Database>) {
    let world = make_world(&*db, 7).await;
    let start = clock();
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(
            make_server_at(&*db, &world, world.owner.id, &format!("paged-{i}"), millis_after(start, i * 1_000))
                .await
                .id,
        );
    }
    let filter = ServerFilter { node_id: Some(world.node.id), ..ServerFilter::default() };
    let mut seen = Vec::new();
    for (page_number, expected_len) in [(1, 3), (2, 3), (3, 1), (4, 0)] {
        let page = db.servers().list(&filter, PageRequest::new(page_number, 3)).await.unwrap();
        assert_eq!(page.total, 7, "total on page {page_number}");
        assert_eq!(page.page, page_number);
        assert_eq!(page.per_page, 3);
        assert_eq!(page.items.len(), expected_len, "items on page {page_number}");
        seen.extend(page.items.iter().map(|s| s.id));
    }
    assert_eq!(seen, created, "pages concatenate to creation order");

    let filtered = ServerFilter { name_contains: Some("paged-".to_string()), ..ServerFilter::default() };
    let first_page = db.servers().list(&filtered, PageRequest::new(1, 2)).await.unwrap();
    assert_eq!(first_page.total, 7, "total counts every match, not the page");
}

pub async fn servers_update_changes_only_patched_fields(db: Arc<dyn Database>) {
    let world = make_world(&*db, 1).await;
    let new_owner = make_user(&*db, "new-owner").await;
    let server = make_server(&*db, &world, world.owner.id, "before").await;
    let later = millis_after(server.created_at, 60_000);

    let renamed = db
        .servers()
        .update(server.id, ServerPatch { name: Some("after".to_string()), ..ServerPatch::default() }, later)
        .await
        .unwrap();
    assert_eq!(renamed.name, "after");
    assert_eq!(renamed.description, server.description);
    assert_eq!(renamed.owner_id, server.owner_id);
    assert_eq!(renamed.limits, server.limits);
    assert_eq!(renamed.environment, server.environment);
    assert_eq!(renamed.state, server.state);
    assert_eq!(renamed.created_at, server.created_at);
    assert_eq!(renamed.updated_at, later);

    let limits = Limits { memory_mb: 2_048, ..Limits::default() };
    let environment: BTreeMap<String, String> = [("SERVER_JARFILE".to_string(), "paper.jar".to_string())].into();
    let later = millis_after(later, 1_000);
    let updated = db
        .servers()
        .update(
            server.id,
            ServerPatch {
                description: Some("moved".to_string()),
                owner_id: Some(new_owner.id),
                limits: Some(limits),
                environment: Some(environment.clone()),
                ..ServerPatch::default()
            },
            later,
        )
        .await
        .unwrap();
    assert_eq!(updated.name, "after");
    assert_eq!(updated.description, "moved");
    assert_eq!(updated.owner_id, new_owner.id);
    assert_eq!(updated.limits, limits);
    assert_eq!(updated.environment, environment, "the environment is replaced, not merged");
    assert_eq!(db.servers().get(server.id).await.unwrap(), updated);
    assert_eq!(db.servers().relation(server.id, new_owner.id).await.unwrap(), ServerRelation::Owner);
    assert_eq!(db.servers().relation(server.id, world.owner.id).await.unwrap(), ServerRelation::None);
}

pub async fn servers_set_state_applies_legal_moves_and_refuses_illegal_ones(db: Arc<dyn Database>) {
    let world = make_world(&*db, 1).await;
    let server = make_server(&*db, &world, world.owner.id, "machine").await;
    let mut at = server.created_at;
    let legal_walk = [
        ServerState::Offline,
        ServerState::Starting,
        ServerState::Running,
        ServerState::Stopping,
        ServerState::Crashed,
        ServerState::Offline,
    ];
    for next in legal_walk {
        at = millis_after(at, 1_000);
        let moved = db.servers().set_state(server.id, next, at).await.unwrap();
        assert_eq!(moved.state, next);
        assert_eq!(moved.updated_at, at);
        assert_eq!(db.servers().get(server.id).await.unwrap().state, next);
    }

    for illegal in [ServerState::Running, ServerState::Stopping, ServerState::Offline, ServerState::InstallFailed] {
        assert!(!ServerState::Offline.can_become(illegal));
        expect_conflict(
            db.servers().set_state(server.id, illegal, millis_after(at, 1)).await,
            &format!("offline -> {illegal}"),
        );
        let unchanged = db.servers().get(server.id).await.unwrap();
        assert_eq!(unchanged.state, ServerState::Offline, "a refused move leaves the state");
        assert_eq!(unchanged.updated_at, at, "a refused move leaves updated_at");
    }
}

pub async fn servers_mark_node_unknown_counts_changed_servers_of_that_node_only(db: Arc<dyn Database>) {
    let world = make_world(&*db, 3).await;
    let other_node = make_node(&*db, "healthy").await;
    add_ports(&*db, other_node.id, &[26_000]).await;
    let installing = make_server(&*db, &world, world.owner.id, "installing").await;
    let running = make_server(&*db, &world, world.owner.id, "running").await;
    let already_unknown = make_server(&*db, &world, world.owner.id, "already-unknown").await;
    let elsewhere = db
        .servers()
        .create(new_server("elsewhere", world.owner.id, other_node.id, world.template.id), clock())
        .await
        .unwrap();
    for next in [ServerState::Offline, ServerState::Starting, ServerState::Running] {
        db.servers().set_state(running.id, next, clock()).await.unwrap();
    }
    db.servers().set_state(already_unknown.id, ServerState::Unknown, clock()).await.unwrap();

    let lost_at = clock();
    assert_eq!(db.servers().mark_node_unknown(world.node.id, lost_at).await.unwrap(), 2, "two servers changed");
    for id in [installing.id, running.id, already_unknown.id] {
        assert_eq!(db.servers().get(id).await.unwrap().state, ServerState::Unknown);
    }
    assert_eq!(db.servers().get(running.id).await.unwrap().updated_at, lost_at);
    assert_eq!(db.servers().get(elsewhere.id).await.unwrap(), elsewhere, "another node's server is untouched");
    assert_eq!(db.servers().mark_node_unknown(world.node.id, clock()).await.unwrap(), 0, "nothing left to change");
}

pub async fn servers_apply_reported_state_applies_each_event_once_and_in_order(db: Arc<dyn Database>) {
    let world = make_world(&*db, 2).await;
    let server = make_server(&*db, &world, world.owner.id, "reported").await;
    let other = make_server(&*db, &world, world.owner.id, "quiet").await;
    let mut seqs = db.servers().reported_seqs(world.node.id).await.unwrap();
    seqs.sort();
    let mut expected = vec![(server.id, 0), (other.id, 0)];
    expected.sort();
    assert_eq!(seqs, expected, "no event applied yet");

    let at = clock();
    // The agent is the truth: installing -> running is not a legal panel move, but it is applied.
    let applied = db.servers().apply_reported_state(server.id, ServerState::Running, 3, at).await.unwrap();
    let applied = applied.expect("a new event is applied");
    assert_eq!((applied.state, applied.updated_at), (ServerState::Running, at));
    assert!(
        db.servers().apply_reported_state(server.id, ServerState::Offline, 3, clock()).await.unwrap().is_none(),
        "the same event again is not applied"
    );
    assert!(
        db.servers().apply_reported_state(server.id, ServerState::Crashed, 2, clock()).await.unwrap().is_none(),
        "an older event is not applied"
    );
    assert_eq!(db.servers().get(server.id).await.unwrap().state, ServerState::Running, "still the newest state");
    let next = db.servers().apply_reported_state(server.id, ServerState::Stopping, 4, clock()).await.unwrap();
    assert_eq!(next.map(|s| s.state), Some(ServerState::Stopping));
    let seqs: BTreeMap<ServerId, u64> = db.servers().reported_seqs(world.node.id).await.unwrap().into_iter().collect();
    assert_eq!(seqs[&server.id], 4);
    assert_eq!(seqs[&other.id], 0, "another server's sequence is its own");
    assert!(db.servers().reported_seqs(make_node(&*db, "empty").await.id).await.unwrap().is_empty());
    expect_not_found(
        db.servers().apply_reported_state(ServerId(uuid::Uuid::from_u128(9)), ServerState::Running, 1, clock()).await,
        "an unknown server",
    );
}

pub async fn servers_concurrent_apply_reported_state_applies_a_resent_event_once(db: Arc<dyn Database>) {
    let world = make_world(&*db, 1).await;
    let server = make_server(&*db, &world, world.owner.id, "raced").await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move {
                db.servers().apply_reported_state(server.id, ServerState::Offline, 7, clock()).await.unwrap().is_some()
            })
        })
        .collect();
    let mut applied = 0;
    for t in tasks {
        applied += usize::from(t.await.unwrap());
    }
    assert_eq!(applied, 1, "one of eight deliveries of the same event applies");
}

pub async fn servers_delete_frees_allocations_and_removes_subusers(db: Arc<dyn Database>) {
    let world = make_world(&*db, 1).await;
    let friend = make_user(&*db, "friend").await;
    let server = make_server(&*db, &world, world.owner.id, "short-lived").await;
    db.servers().set_subuser(server.id, friend.id, permissions(&[Permission::FILE_READ]), clock()).await.unwrap();

    db.servers().delete(server.id).await.unwrap();
    expect_not_found(db.servers().get(server.id).await, "get after delete");
    expect_not_found(db.servers().delete(server.id).await, "deleting twice");
    let freed = db.allocations().get(world.allocations[0].id).await.unwrap();
    assert_eq!(freed.server_id, None, "the allocation is free again");
    assert!(!freed.primary, "a free allocation is nobody's primary");
    expect_empty_or_not_found(db.allocations().list_for_server(server.id).await, "allocations of the deleted server");
    expect_empty_or_not_found(db.servers().list_subusers(server.id).await, "subusers of the deleted server");
    assert_eq!(db.servers().visible_ids(friend.id).await.unwrap(), vec![], "the former subuser sees nothing");

    let successor = make_server(&*db, &world, world.owner.id, "successor").await;
    let held = db.allocations().list_for_server(successor.id).await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].id, world.allocations[0].id, "the freed allocation can be taken again");
}

pub async fn servers_set_subuser_creates_then_replaces(db: Arc<dyn Database>) {
    let world = make_world(&*db, 1).await;
    let friend = make_user(&*db, "friend").await;
    let server = make_server(&*db, &world, world.owner.id, "shared").await;
    let now = clock();
    let first_grant = permissions(&[Permission::SERVER_CONSOLE, Permission::FILE_READ]);
    let subuser = db.servers().set_subuser(server.id, friend.id, first_grant, now).await.unwrap();
    assert_eq!(subuser.server_id, server.id);
    assert_eq!(subuser.user_id, friend.id);
    assert_eq!(subuser.permissions, first_grant);
    assert_eq!(subuser.created_at, now);
    assert_eq!(db.servers().list_subusers(server.id).await.unwrap(), vec![subuser]);

    let second_grant = permissions(&[Permission::BACKUP_VIEW]);
    let replaced =
        db.servers().set_subuser(server.id, friend.id, second_grant, millis_after(now, 1_000)).await.unwrap();
    assert_eq!(replaced.permissions, second_grant, "the grant is replaced, not merged");
    let listed = db.servers().list_subusers(server.id).await.unwrap();
    assert_eq!(listed.len(), 1, "still one subuser row");
    assert_eq!(listed[0].user_id, friend.id);
    assert_eq!(listed[0].permissions, second_grant);
}

pub async fn servers_owner_cannot_be_a_subuser(db: Arc<dyn Database>) {
    let world = make_world(&*db, 1).await;
    let server = make_server(&*db, &world, world.owner.id, "mine").await;
    expect_conflict(
        db.servers().set_subuser(server.id, world.owner.id, permissions(&[Permission::SERVER_VIEW]), clock()).await,
        "making the owner a subuser of their own server",
    );
    assert_eq!(db.servers().list_subusers(server.id).await.unwrap(), vec![]);
    assert_eq!(db.servers().relation(server.id, world.owner.id).await.unwrap(), ServerRelation::Owner);
}

pub async fn servers_remove_subuser_removes_the_grant(db: Arc<dyn Database>) {
    let world = make_world(&*db, 1).await;
    let friend = make_user(&*db, "friend").await;
    let other_friend = make_user(&*db, "other-friend").await;
    let server = make_server(&*db, &world, world.owner.id, "shared").await;
    db.servers().set_subuser(server.id, friend.id, permissions(&[Permission::SERVER_VIEW]), clock()).await.unwrap();
    let kept = db
        .servers()
        .set_subuser(server.id, other_friend.id, permissions(&[Permission::FILE_VIEW]), clock())
        .await
        .unwrap();

    db.servers().remove_subuser(server.id, friend.id).await.unwrap();
    assert_eq!(db.servers().list_subusers(server.id).await.unwrap(), vec![kept]);
    assert_eq!(db.servers().relation(server.id, friend.id).await.unwrap(), ServerRelation::None);
    expect_not_found(db.servers().remove_subuser(server.id, friend.id).await, "removing a grant that is gone");
}

pub async fn servers_relation_tells_owner_subuser_and_stranger_apart(db: Arc<dyn Database>) {
    let world = make_world(&*db, 2).await;
    let friend = make_user(&*db, "friend").await;
    let stranger = make_user(&*db, "stranger").await;
    let server = make_server(&*db, &world, world.owner.id, "related").await;
    let unrelated = make_server(&*db, &world, world.owner.id, "unrelated").await;
    let grant = permissions(&[Permission::SERVER_CONSOLE, Permission::SERVER_START]);
    db.servers().set_subuser(server.id, friend.id, grant, clock()).await.unwrap();

    assert_eq!(db.servers().relation(server.id, world.owner.id).await.unwrap(), ServerRelation::Owner);
    assert_eq!(db.servers().relation(server.id, friend.id).await.unwrap(), ServerRelation::Subuser(grant));
    assert_eq!(db.servers().relation(server.id, stranger.id).await.unwrap(), ServerRelation::None);
    assert_eq!(
        db.servers().relation(unrelated.id, friend.id).await.unwrap(),
        ServerRelation::None,
        "grants are per server"
    );
    assert_eq!(
        db.servers().relation(server.id, UserId::new_random()).await.unwrap(),
        ServerRelation::None,
        "an unknown user is a stranger"
    );
    expect_not_found(
        db.servers().relation(ServerId::new_random(), world.owner.id).await,
        "relation to a missing server",
    );
}

pub async fn servers_visible_ids_lists_owned_and_shared_servers_once(db: Arc<dyn Database>) {
    let world = make_world(&*db, 3).await;
    let friend = make_user(&*db, "friend").await;
    let stranger = make_user(&*db, "stranger").await;
    let owned = make_server(&*db, &world, world.owner.id, "owned").await;
    let shared = make_server(&*db, &world, world.owner.id, "shared").await;
    let friends_own = make_server(&*db, &world, friend.id, "friends-own").await;
    db.servers().set_subuser(shared.id, friend.id, permissions(&[Permission::SERVER_VIEW]), clock()).await.unwrap();

    let sorted = |mut ids: Vec<ServerId>| {
        ids.sort();
        ids
    };
    assert_eq!(sorted(db.servers().visible_ids(world.owner.id).await.unwrap()), sorted(vec![owned.id, shared.id]));
    assert_eq!(sorted(db.servers().visible_ids(friend.id).await.unwrap()), sorted(vec![shared.id, friends_own.id]));
    assert_eq!(db.servers().visible_ids(stranger.id).await.unwrap(), vec![]);
}

/// 24 creates race for 8 free allocations: exactly 8 win, the rest are `Conflict`, and no
/// allocation ends up with two servers.
pub async fn servers_concurrent_create_never_hands_one_allocation_to_two_servers(db: Arc<dyn Database>) {
    const N_ALLOCATIONS: usize = 8;
    const N_CREATES: usize = 24;
    let world = make_world(&*db, N_ALLOCATIONS as u16).await;
    let start = Arc::new(Barrier::new(N_CREATES));
    let tasks = (0..N_CREATES).map(|i| {
        let db = db.clone();
        let start = start.clone();
        let new = new_server(&format!("race-{i}"), world.owner.id, world.node.id, world.template.id);
        tokio::spawn(async move {
            start.wait().await;
            db.servers().create(new, clock()).await
        })
    });
    let results: Vec<Result<Server>> = join_all(tasks).await.into_iter().map(|joined| joined.unwrap()).collect();

    let mut created = Vec::new();
    let mut n_conflicts = 0;
    for result in results {
        match result {
            Ok(server) => created.push(server),
            Err(Error::Conflict { .. }) => n_conflicts += 1,
            Err(other) => {
                panic!("a racing create failed with something other than Conflict: {other:?}")
            }
        }
    }
    assert_eq!(created.len(), N_ALLOCATIONS, "one server per free allocation");
    assert_eq!(n_conflicts, N_CREATES - N_ALLOCATIONS);

    let on_node = db.allocations().list_for_node(world.node.id, PageRequest::first()).await.unwrap();
    let holders: Vec<ServerId> = on_node.items.iter().filter_map(|a| a.server_id).collect();
    let created_ids: BTreeSet<ServerId> = created.iter().map(|s| s.id).collect();
    assert_eq!(holders.len(), N_ALLOCATIONS, "every allocation is held");
    assert_eq!(holders.iter().copied().collect::<BTreeSet<_>>(), created_ids, "each by a different created server");
    for server in &created {
        let held = db.allocations().list_for_server(server.id).await.unwrap();
        assert_eq!(held.len(), 1, "{} holds exactly one allocation", server.name);
        assert!(held[0].primary);
    }
    let listed = db.servers().list(&ServerFilter::default(), PageRequest::first()).await.unwrap();
    assert_eq!(listed.total, N_ALLOCATIONS as u64, "no refused server was stored");
}

pub async fn servers_concurrent_create_of_one_specific_allocation_has_one_winner(db: Arc<dyn Database>) {
    const N_CREATES: usize = 6;
    let world = make_world(&*db, 2).await;
    let contested = world.allocations[1].id;
    let start = Arc::new(Barrier::new(N_CREATES));
    let tasks = (0..N_CREATES).map(|i| {
        let db = db.clone();
        let start = start.clone();
        let mut new = new_server(&format!("contender-{i}"), world.owner.id, world.node.id, world.template.id);
        new.allocation = AllocationRequest::Specific(contested);
        tokio::spawn(async move {
            start.wait().await;
            db.servers().create(new, clock()).await
        })
    });
    let results: Vec<Result<Server>> = join_all(tasks).await.into_iter().map(|joined| joined.unwrap()).collect();
    let winners: Vec<&Server> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one create gets the allocation");
    for result in &results {
        if let Err(error) = result {
            assert!(matches!(error, Error::Conflict { .. }), "a losing create is Conflict, got {error:?}");
        }
    }
    assert_eq!(db.allocations().get(contested).await.unwrap().server_id, Some(winners[0].id));
    assert_eq!(db.allocations().get(world.allocations[0].id).await.unwrap().server_id, None, "the other stays free");
}

/// From `installing`, `offline` and `install_failed` are both legal but exclude each other, so of
/// two concurrent moves exactly one may apply; the stored state must be the winner's.
pub async fn servers_concurrent_set_state_applies_exactly_one_of_two_exclusive_moves(db: Arc<dyn Database>) {
    const N_SERVERS: usize = 6;
    let world = make_world(&*db, N_SERVERS as u16).await;
    let mut servers = Vec::new();
    for i in 0..N_SERVERS {
        servers.push(make_server(&*db, &world, world.owner.id, &format!("contested-{i}")).await);
    }
    assert!(!ServerState::Offline.can_become(ServerState::InstallFailed));
    assert!(!ServerState::InstallFailed.can_become(ServerState::Offline));

    let start = Arc::new(Barrier::new(2 * N_SERVERS));
    let mut tasks = Vec::new();
    for server in &servers {
        for next in [ServerState::Offline, ServerState::InstallFailed] {
            let db = db.clone();
            let start = start.clone();
            let id = server.id;
            tasks.push(tokio::spawn(async move {
                start.wait().await;
                (id, next, db.servers().set_state(id, next, clock()).await)
            }));
        }
    }
    let outcomes: Vec<(ServerId, ServerState, Result<Server>)> =
        join_all(tasks).await.into_iter().map(|joined| joined.unwrap()).collect();

    for server in &servers {
        let mine: Vec<&(ServerId, ServerState, Result<Server>)> =
            outcomes.iter().filter(|(id, ..)| *id == server.id).collect();
        let applied: Vec<ServerState> = mine.iter().filter(|(_, _, r)| r.is_ok()).map(|(_, next, _)| *next).collect();
        assert_eq!(applied.len(), 1, "{}: exactly one of two exclusive moves applies, got {applied:?}", server.name);
        for (_, next, result) in &mine {
            match result {
                Ok(moved) => assert_eq!(moved.state, *next),
                Err(Error::Conflict { .. }) => {}
                Err(other) => panic!("{}: the losing move must be Conflict, got {other:?}", server.name),
            }
        }
        assert_eq!(
            db.servers().get(server.id).await.unwrap().state,
            applied[0],
            "{}: the winner's state is stored",
            server.name
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------------------------

pub async fn sessions_create_then_get_round_trips(db: Arc<dyn Database>) {
    let user = make_user(&*db, "session").await;
    let session = new_session_at(user.id, &refresh_hash(), clock(), 3_600);
    let created = db.sessions().create(session.clone()).await.unwrap();
    assert_eq!(created, session);
    assert_eq!(db.sessions().get(session.id).await.unwrap(), session);
    expect_not_found(db.sessions().get(SessionId::new_random()).await, "get of a missing session");
}

pub async fn sessions_rotate_with_current_hash_rotates(db: Arc<dyn Database>) {
    let user = make_user(&*db, "session").await;
    let now = clock();
    let first_hash = refresh_hash();
    let session = db.sessions().create(new_session_at(user.id, &first_hash, now, 3_600)).await.unwrap();

    let second_hash = refresh_hash();
    let rotated = match db.sessions().rotate(&first_hash, &second_hash, millis_after(now, 1_000)).await.unwrap() {
        Rotation::Rotated(rotated) => rotated,
        other => panic!("rotating the current hash: expected Rotated, got {other:?}"),
    };
    assert_eq!(rotated.id, session.id, "the family keeps its id");
    assert_eq!(rotated.user_id, user.id);
    assert_eq!(rotated.refresh_hash, second_hash);
    assert_eq!(rotated.generation, 1);
    assert!(!rotated.revoked);
    assert_eq!(rotated.created_at, session.created_at);
    assert_eq!(db.sessions().get(session.id).await.unwrap(), rotated);

    let third_hash = refresh_hash();
    match db.sessions().rotate(&second_hash, &third_hash, millis_after(now, 2_000)).await.unwrap() {
        Rotation::Rotated(again) => {
            assert_eq!(again.generation, 2);
            assert_eq!(again.refresh_hash, third_hash);
        }
        other => panic!("rotating the new current hash: expected Rotated, got {other:?}"),
    }
}

pub async fn sessions_rotate_with_an_old_hash_detects_reuse_and_revokes_the_family(db: Arc<dyn Database>) {
    let user = make_user(&*db, "victim").await;
    let now = clock();
    let (first_hash, second_hash, third_hash) = (refresh_hash(), refresh_hash(), refresh_hash());
    let session = db.sessions().create(new_session_at(user.id, &first_hash, now, 3_600)).await.unwrap();
    let bystander = db.sessions().create(new_session_at(user.id, &refresh_hash(), now, 3_600)).await.unwrap();
    let rotated = db.sessions().rotate(&first_hash, &second_hash, millis_after(now, 1_000)).await.unwrap();
    assert!(matches!(rotated, Rotation::Rotated(_)), "{rotated:?}");

    let replayed = db.sessions().rotate(&first_hash, &third_hash, millis_after(now, 2_000)).await.unwrap();
    assert_eq!(replayed, Rotation::ReuseDetected { user_id: user.id }, "presenting a superseded token is reuse");
    assert!(db.sessions().get(session.id).await.unwrap().revoked, "reuse revokes the family");

    let newest = db.sessions().rotate(&second_hash, &refresh_hash(), millis_after(now, 3_000)).await.unwrap();
    assert_eq!(newest, Rotation::Invalid, "after reuse even the newest token of the family is dead");
    let replayed_again = db.sessions().rotate(&first_hash, &refresh_hash(), millis_after(now, 4_000)).await.unwrap();
    assert_eq!(replayed_again, Rotation::Invalid, "a revoked family is Invalid, even for an old token");
    assert_eq!(db.sessions().get(bystander.id).await.unwrap(), bystander, "other families of the user are untouched");
}

pub async fn sessions_rotate_with_an_unknown_hash_is_invalid(db: Arc<dyn Database>) {
    let user = make_user(&*db, "session").await;
    let now = clock();
    let session = db.sessions().create(new_session_at(user.id, &refresh_hash(), now, 3_600)).await.unwrap();
    let outcome = db.sessions().rotate("never-issued", &refresh_hash(), now).await.unwrap();
    assert_eq!(outcome, Rotation::Invalid);
    assert_eq!(db.sessions().get(session.id).await.unwrap(), session, "an unknown token changes nothing");
}

pub async fn sessions_rotate_of_an_expired_family_is_invalid(db: Arc<dyn Database>) {
    let user = make_user(&*db, "session").await;
    let now = clock();
    let current = refresh_hash();
    let an_hour_ago = millis_after(now, -3_600_000);
    let session = db.sessions().create(new_session_at(user.id, &current, an_hour_ago, 60)).await.unwrap();
    assert!(session.expires_at < now);
    let outcome = db.sessions().rotate(&current, &refresh_hash(), now).await.unwrap();
    assert_eq!(outcome, Rotation::Invalid, "an expired family cannot be rotated");
    let stored = db.sessions().get(session.id).await.unwrap();
    assert_eq!(stored.refresh_hash, current, "nothing was rotated");
    assert_eq!(stored.generation, 0);
}

pub async fn sessions_revoke_makes_rotation_invalid(db: Arc<dyn Database>) {
    let user = make_user(&*db, "session").await;
    let now = clock();
    let current = refresh_hash();
    let session = db.sessions().create(new_session_at(user.id, &current, now, 3_600)).await.unwrap();
    db.sessions().revoke(session.id).await.unwrap();
    assert!(db.sessions().get(session.id).await.unwrap().revoked);
    assert_eq!(db.sessions().rotate(&current, &refresh_hash(), now).await.unwrap(), Rotation::Invalid);
    db.sessions().revoke(session.id).await.unwrap();
    assert!(db.sessions().get(session.id).await.unwrap().revoked, "revoking twice keeps it revoked");
}

/// Several presenters of one current token at once (a double-submitted refresh): exactly one
/// rotates; the others see reuse or an invalid token, and the stored family agrees with them.
pub async fn sessions_concurrent_rotation_of_one_hash_has_one_winner(db: Arc<dyn Database>) {
    const N_FAMILIES: usize = 4;
    const N_PRESENTERS: usize = 4;
    let user = make_user(&*db, "racer").await;
    let now = clock();
    let mut families = Vec::new();
    for _ in 0..N_FAMILIES {
        let current = refresh_hash();
        families.push((db.sessions().create(new_session_at(user.id, &current, now, 3_600)).await.unwrap(), current));
    }

    let start = Arc::new(Barrier::new(N_FAMILIES * N_PRESENTERS));
    let mut tasks = Vec::new();
    for (session, current) in &families {
        for _ in 0..N_PRESENTERS {
            let (db, start, session_id, current, new_hash) =
                (db.clone(), start.clone(), session.id, current.clone(), refresh_hash());
            tasks.push(tokio::spawn(async move {
                start.wait().await;
                let outcome = db.sessions().rotate(&current, &new_hash, millis_after(now, 1_000)).await;
                (session_id, new_hash, outcome)
            }));
        }
    }
    let outcomes: Vec<(SessionId, String, Result<Rotation>)> =
        join_all(tasks).await.into_iter().map(|joined| joined.unwrap()).collect();

    for (session, _) in &families {
        let mut winners = Vec::new();
        let mut reuse_seen = false;
        for (_, new_hash, outcome) in outcomes.iter().filter(|(id, ..)| *id == session.id) {
            match outcome {
                Ok(Rotation::Rotated(rotated)) => winners.push((new_hash.clone(), rotated.clone())),
                Ok(Rotation::ReuseDetected { user_id }) => {
                    assert_eq!(*user_id, user.id);
                    reuse_seen = true;
                }
                Ok(Rotation::Invalid) => {}
                Err(error) => panic!("a racing rotate failed: {error:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one presenter rotates the family, got {}", winners.len());
        let (winning_hash, rotated) = &winners[0];
        assert_eq!(rotated.generation, 1, "the family rotated once");
        assert_eq!(&rotated.refresh_hash, winning_hash);
        let stored = db.sessions().get(session.id).await.unwrap();
        if reuse_seen {
            assert!(stored.revoked, "a detected reuse revoked the family");
        } else {
            assert!(!stored.revoked);
            assert_eq!(&stored.refresh_hash, winning_hash, "the winner's token is current");
            assert_eq!(stored.generation, 1);
        }
    }
}

pub async fn sessions_revoke_all_for_user_counts_live_families(db: Arc<dyn Database>) {
    let user = make_user(&*db, "everywhere").await;
    let other = make_user(&*db, "elsewhere").await;
    let now = clock();
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(db.sessions().create(new_session_at(user.id, &refresh_hash(), now, 3_600)).await.unwrap());
    }
    let others = db.sessions().create(new_session_at(other.id, &refresh_hash(), now, 3_600)).await.unwrap();
    db.sessions().revoke(sessions[0].id).await.unwrap();

    assert_eq!(db.sessions().revoke_all_for_user(user.id).await.unwrap(), 2, "the already revoked one is not counted");
    for session in &sessions {
        assert!(db.sessions().get(session.id).await.unwrap().revoked);
    }
    assert_eq!(db.sessions().get(others.id).await.unwrap(), others, "another user's session is untouched");
    assert_eq!(db.sessions().revoke_all_for_user(user.id).await.unwrap(), 0, "nothing live is left");
}

// ---------------------------------------------------------------------------------------------
// API keys
// ---------------------------------------------------------------------------------------------

pub async fn api_keys_create_find_by_prefix_and_list_for_user(db: Arc<dyn Database>) {
    let user = make_user(&*db, "automation").await;
    let other = make_user(&*db, "other").await;
    let now = clock();
    let first = db.api_keys().create(new_api_key(user.id, "deploy", now)).await.unwrap();
    let mut second = new_api_key(user.id, "backup", millis_after(now, 1_000));
    second.expires_at = None;
    second.permissions = PermissionSet::all();
    let second = db.api_keys().create(second).await.unwrap();
    let others = db.api_keys().create(new_api_key(other.id, "theirs", now)).await.unwrap();
    assert_eq!(first.name, "deploy");
    assert_eq!(second.expires_at, None);

    assert_eq!(db.api_keys().find_by_prefix(&first.prefix).await.unwrap(), Some(first.clone()));
    assert_eq!(db.api_keys().find_by_prefix(&second.prefix).await.unwrap(), Some(second.clone()));
    assert_eq!(db.api_keys().find_by_prefix("cap_nosuchkey").await.unwrap(), None);
    assert_eq!(db.api_keys().list_for_user(user.id).await.unwrap(), vec![first, second], "creation order");
    assert_eq!(db.api_keys().list_for_user(other.id).await.unwrap(), vec![others]);
}

pub async fn api_keys_delete_of_another_users_key_is_not_found(db: Arc<dyn Database>) {
    let owner = make_user(&*db, "key-owner").await;
    let intruder = make_user(&*db, "intruder").await;
    let key = db.api_keys().create(new_api_key(owner.id, "mine", clock())).await.unwrap();

    expect_not_found(db.api_keys().delete(intruder.id, key.id).await, "deleting another user's key");
    assert_eq!(db.api_keys().find_by_prefix(&key.prefix).await.unwrap(), Some(key.clone()), "the key survives");

    db.api_keys().delete(owner.id, key.id).await.unwrap();
    assert_eq!(db.api_keys().find_by_prefix(&key.prefix).await.unwrap(), None);
    assert_eq!(db.api_keys().list_for_user(owner.id).await.unwrap(), vec![]);
    expect_not_found(db.api_keys().delete(owner.id, key.id).await, "deleting twice");
}

pub async fn api_keys_touch_sets_last_used_at(db: Arc<dyn Database>) {
    let user = make_user(&*db, "toucher").await;
    let now = clock();
    let key = db.api_keys().create(new_api_key(user.id, "used", now)).await.unwrap();
    let untouched = db.api_keys().create(new_api_key(user.id, "unused", now)).await.unwrap();
    assert_eq!(key.last_used_at, None);

    let used_at = millis_after(now, 42_000);
    db.api_keys().touch(key.id, used_at).await.unwrap();
    let found = db.api_keys().find_by_prefix(&key.prefix).await.unwrap().unwrap();
    assert_eq!(found.last_used_at, Some(used_at));
    assert_eq!(ApiKey { last_used_at: None, ..found }, key, "touch changes nothing else");

    let used_again = millis_after(used_at, 1_000);
    db.api_keys().touch(key.id, used_again).await.unwrap();
    assert_eq!(db.api_keys().find_by_prefix(&key.prefix).await.unwrap().unwrap().last_used_at, Some(used_again));
    assert_eq!(db.api_keys().find_by_prefix(&untouched.prefix).await.unwrap(), Some(untouched));
}

// ---------------------------------------------------------------------------------------------
// Authentication lookups
// ---------------------------------------------------------------------------------------------

/// Gives `user` two roles and returns the union of their permissions.
async fn two_roles(db: &dyn Database, user: UserId) -> PermissionSet {
    let a =
        db.roles().create(new_role("ctx-a", &[Permission::SERVER_VIEW, Permission::USER_VIEW]), clock()).await.unwrap();
    let b = db.roles().create(new_role("ctx-b", &[Permission::SYSTEM_AUDIT]), clock()).await.unwrap();
    db.roles().assign(user, a.id).await.unwrap();
    db.roles().assign(user, b.id).await.unwrap();
    a.permissions.union(b.permissions)
}

pub async fn session_context_joins_session_user_and_roles(db: Arc<dyn Database>) {
    let user = make_user(&*db, "ctx").await;
    let plain = make_user(&*db, "ctx-plain").await;
    let global = two_roles(&*db, user.id).await;
    let session = db.sessions().create(new_session_at(user.id, &refresh_hash(), clock(), 3_600)).await.unwrap();
    let (got, ctx) = db.session_context(session.id).await.unwrap();
    assert_eq!(got, session);
    assert_eq!(ctx, AuthContext { user: db.users().get(user.id).await.unwrap(), global });

    let plain_session = db.sessions().create(new_session_at(plain.id, &refresh_hash(), clock(), 3_600)).await.unwrap();
    let (_, ctx) = db.session_context(plain_session.id).await.unwrap();
    assert_eq!(ctx.global, PermissionSet::EMPTY, "a user without roles holds nothing globally");

    db.sessions().revoke(session.id).await.unwrap();
    assert!(db.session_context(session.id).await.unwrap().0.revoked, "revocation is visible");
    expect_not_found(db.session_context(SessionId::new_random()).await, "context of a missing session");
}

pub async fn api_key_context_joins_key_user_and_roles(db: Arc<dyn Database>) {
    let user = make_user(&*db, "keyctx").await;
    let global = two_roles(&*db, user.id).await;
    let key = db.api_keys().create(new_api_key(user.id, "ctx", clock())).await.unwrap();
    let (got, ctx) = db.api_key_context(&key.prefix).await.unwrap().unwrap();
    assert_eq!(got, key);
    assert_eq!(ctx, AuthContext { user: db.users().get(user.id).await.unwrap(), global });
    assert_eq!(db.api_key_context("nosuchprefix").await.unwrap(), None);
}

// ---------------------------------------------------------------------------------------------
// Audit
// ---------------------------------------------------------------------------------------------

pub async fn audit_append_then_list_newest_first(db: Arc<dyn Database>) {
    let actor = make_user(&*db, "actor").await;
    let start = clock();
    let mut appended = Vec::new();
    for (i, action) in ["auth.login", "server.create", "server.power"].into_iter().enumerate() {
        let event =
            audit_event(millis_after(start, i as i64 * 1_000), Some(actor.id), action, "", None, AuditResult::Success);
        db.audit().append(event.clone()).await.unwrap();
        appended.push(event);
    }
    let mut system = audit_event(millis_after(start, 5_000), None, "system.start", "", None, AuditResult::Failed);
    system.detail = serde_json::Value::Null;
    db.audit().append(system.clone()).await.unwrap();
    appended.push(system);

    let listed = db.audit().list(&AuditFilter::default(), PageRequest::first()).await.unwrap();
    appended.reverse();
    assert_eq!(listed.items, appended, "every field round-trips, newest first");
    assert_eq!(listed.total, 4);
}

pub async fn audit_list_filters_each_field(db: Arc<dyn Database>) {
    let world = make_world(&*db, 2).await;
    let alice = world.owner.clone();
    let bob = make_user(&*db, "bob").await;
    let first_server = make_server(&*db, &world, alice.id, "first").await;
    let second_server = make_server(&*db, &world, alice.id, "second").await;
    let (s1, s2) = (first_server.id, second_server.id);
    let start = clock();
    let at = |second: i64| millis_after(start, second * 1_000);
    let s1_target = format!("server:{s1}");
    let s2_target = format!("server:{s2}");
    let events = [
        audit_event(at(1), Some(alice.id), "server.create", &s1_target, Some(s1), AuditResult::Success),
        audit_event(at(2), Some(bob.id), "server.delete", &s2_target, Some(s2), AuditResult::Denied),
        audit_event(at(3), Some(alice.id), "auth.login", "", None, AuditResult::Success),
        audit_event(at(4), None, "authz.check", &format!("user:{}", alice.id), None, AuditResult::Failed),
        audit_event(at(5), Some(bob.id), "server.power", &s1_target, Some(s1), AuditResult::Success),
    ];
    for event in &events {
        db.audit().append(event.clone()).await.unwrap();
    }
    let listed = |filter: AuditFilter| {
        let db = db.clone();
        async move {
            let page = db.audit().list(&filter, PageRequest::first()).await.unwrap();
            assert_eq!(page.total, page.items.len() as u64, "total disagrees with the items for {filter:?}");
            page.items.into_iter().map(|e| e.action).collect::<Vec<_>>()
        }
    };
    let none = AuditFilter::default;

    assert_eq!(listed(none()).await, ["server.power", "authz.check", "auth.login", "server.delete", "server.create"]);
    assert_eq!(listed(AuditFilter { actor_id: Some(alice.id), ..none() }).await, ["auth.login", "server.create"]);
    assert_eq!(
        listed(AuditFilter { action_prefix: Some("server.".to_string()), ..none() }).await,
        ["server.power", "server.delete", "server.create"]
    );
    assert_eq!(
        listed(AuditFilter { action_prefix: Some("auth".to_string()), ..none() }).await,
        ["authz.check", "auth.login"]
    );
    assert_eq!(
        listed(AuditFilter { action_prefix: Some("auth_".to_string()), ..none() }).await,
        Vec::<String>::new(),
        "`_` in a prefix is a literal, not a wildcard"
    );
    assert_eq!(
        listed(AuditFilter { action_prefix: Some("%".to_string()), ..none() }).await,
        Vec::<String>::new(),
        "`%` in a prefix is a literal, not a wildcard"
    );
    assert_eq!(
        listed(AuditFilter { target: Some(s1_target.clone()), ..none() }).await,
        ["server.power", "server.create"]
    );
    assert_eq!(
        listed(AuditFilter { target: Some("server:".to_string()), ..none() }).await,
        Vec::<String>::new(),
        "target matches exactly"
    );
    assert_eq!(listed(AuditFilter { server_ids: Some(vec![s1]), ..none() }).await, ["server.power", "server.create"]);
    assert_eq!(
        listed(AuditFilter { server_ids: Some(vec![s1, s2]), ..none() }).await,
        ["server.power", "server.delete", "server.create"]
    );
    assert_eq!(
        listed(AuditFilter { server_ids: Some(vec![]), ..none() }).await,
        Vec::<String>::new(),
        "an empty server list (a user who sees no servers) matches nothing, not everything"
    );
    assert_eq!(listed(AuditFilter { result: Some(AuditResult::Denied), ..none() }).await, ["server.delete"]);
    assert_eq!(listed(AuditFilter { result: Some(AuditResult::Failed), ..none() }).await, ["authz.check"]);
    let half_past = |second: i64| millis_after(start, second * 1_000 + 500);
    assert_eq!(
        listed(AuditFilter { since: Some(half_past(2)), ..none() }).await,
        ["server.power", "authz.check", "auth.login"]
    );
    assert_eq!(
        listed(AuditFilter { until: Some(half_past(3)), ..none() }).await,
        ["auth.login", "server.delete", "server.create"]
    );
    assert_eq!(
        listed(AuditFilter { since: Some(half_past(2)), until: Some(half_past(3)), ..none() }).await,
        ["auth.login"]
    );
    assert_eq!(
        listed(AuditFilter { actor_id: Some(bob.id), server_ids: Some(vec![s1]), ..none() }).await,
        ["server.power"],
        "set fields are combined with AND"
    );
}

pub async fn audit_list_pages_with_total(db: Arc<dyn Database>) {
    let alice = make_user(&*db, "alice").await;
    let bob = make_user(&*db, "bob").await;
    let start = clock();
    let mut alices = Vec::new();
    for i in 0..7 {
        let actor = if i % 2 == 0 { alice.id } else { bob.id };
        let event =
            audit_event(millis_after(start, i * 1_000), Some(actor), "server.start", "", None, AuditResult::Success);
        db.audit().append(event.clone()).await.unwrap();
        if actor == alice.id {
            alices.push(event.id);
        }
    }
    alices.reverse();
    let filter = AuditFilter { actor_id: Some(alice.id), ..AuditFilter::default() };
    let mut seen = Vec::new();
    for (page_number, expected_len) in [(1, 3), (2, 1), (3, 0)] {
        let page = db.audit().list(&filter, PageRequest::new(page_number, 3)).await.unwrap();
        assert_eq!(page.total, 4, "total counts the filtered events on page {page_number}");
        assert_eq!(page.items.len(), expected_len, "items on page {page_number}");
        seen.extend(page.items.iter().map(|e| e.id));
    }
    assert_eq!(seen, alices, "pages concatenate to newest-first order");
    assert_eq!(db.audit().list(&AuditFilter::default(), PageRequest::new(1, 2)).await.unwrap().total, 7);
}

// ---------------------------------------------------------------------------------------------
// Whole tables (moving data between backends)
// ---------------------------------------------------------------------------------------------

/// One of everything the panel stores, with the awkward cases: a user with a TOTP secret and one
/// without, role memberships, an assigned and a free allocation, a server with an environment, a
/// subuser, an API key, a rotated session (so an old refresh token is on record) and audit events
/// appended with equal timestamps.
async fn populate_everything(db: &dyn Database) -> (World, Server, Session, String) {
    let world = make_world(db, 3).await;
    let patch = UserPatch { totp_secret: Some(Some("JBSWY3DPEHPK3PXP".to_string())), ..UserPatch::default() };
    db.users().update(world.owner.id, patch, clock()).await.unwrap();
    let friend = make_user(db, "friend").await;
    two_roles(db, world.owner.id).await;
    let server = make_server(db, &world, world.owner.id, "portable ✓ 'quoted'").await;
    db.servers().set_subuser(server.id, friend.id, permissions(&[Permission::SERVER_CONSOLE]), clock()).await.unwrap();
    db.api_keys().create(new_api_key(friend.id, "automation", clock())).await.unwrap();
    let first = refresh_hash();
    let session = db.sessions().create(new_session_at(world.owner.id, &first, clock(), 3_600)).await.unwrap();
    let current = refresh_hash();
    assert!(matches!(db.sessions().rotate(&first, &current, clock()).await.unwrap(), Rotation::Rotated(_)));
    let at = clock();
    for action in ["c.first", "a.second", "b.third"] {
        let event = audit_event(at, Some(friend.id), action, "", Some(server.id), AuditResult::Success);
        db.audit().append(event).await.unwrap();
    }
    (world, server, session, first)
}

/// Every row of `table`, fetched `per_page` at a time.
async fn export_all(db: &dyn Database, table: Table, per_page: u32) -> Vec<Row> {
    let mut rows = Vec::new();
    loop {
        let page = db.export_rows(table, rows.len() as u64, per_page).await.unwrap();
        let done = page.len() < per_page as usize;
        rows.extend(page);
        if done {
            return rows;
        }
    }
}

async fn export_everything(db: &dyn Database) -> Vec<(Table, Vec<Row>)> {
    let mut tables = Vec::new();
    for table in Table::ALL {
        tables.push((table, export_all(db, table, 2).await));
    }
    tables
}

pub async fn portable_export_clear_import_restores_every_table_exactly(db: Arc<dyn Database>) {
    let (world, server, session, old_refresh) = populate_everything(&*db).await;
    let audit_before = db.audit().list(&AuditFilter::default(), PageRequest::first()).await.unwrap();
    let before = export_everything(&*db).await;
    for (table, rows) in &before {
        assert_eq!(db.count_rows(*table).await.unwrap(), rows.len() as u64, "count of {}", table.name());
        for row in rows {
            table.check_row(row).unwrap();
        }
        if let Some(key) = table.key() {
            let columns: Vec<usize> =
                key.iter().map(|k| table.columns().iter().position(|c| c.name == *k).unwrap()).collect();
            let keys: Vec<Vec<String>> = rows
                .iter()
                .map(|row| columns.iter().map(|&i| row[i].as_str().unwrap().to_string()).collect())
                .collect();
            let mut sorted = keys.clone();
            sorted.sort();
            assert_eq!(keys, sorted, "{} is exported in key order", table.name());
        }
        assert!(!rows.is_empty(), "the fixture fills {}", table.name());
    }

    db.clear_rows().await.unwrap();
    for table in Table::ALL {
        assert_eq!(db.count_rows(table).await.unwrap(), 0, "{} is empty after clear_rows", table.name());
    }
    expect_not_found(db.users().get(world.owner.id).await, "a user after clear_rows");

    for (table, rows) in &before {
        for chunk in rows.chunks(2) {
            db.import_rows(*table, chunk).await.unwrap();
        }
    }
    let after = export_everything(&*db).await;
    for ((table, a), (_, b)) in before.iter().zip(&after) {
        assert_eq!(a, b, "{} round-trips", table.name());
        let (mut da, mut db_) = (RowDigest::default(), RowDigest::default());
        a.iter().for_each(|row| da.add(row));
        b.iter().for_each(|row| db_.add(row));
        assert_eq!(da.hex(), db_.hex());
    }

    // The imported data works, not only reads back.
    assert_eq!(db.servers().get(server.id).await.unwrap(), server);
    assert_eq!(db.allocations().list_for_server(server.id).await.unwrap().len(), 1);
    let (got, ctx) = db.session_context(session.id).await.unwrap();
    assert_eq!(got.generation, 1);
    assert!(!ctx.global.is_empty(), "role memberships came across");
    let audit_after = db.audit().list(&AuditFilter::default(), PageRequest::first()).await.unwrap();
    assert_eq!(audit_after, audit_before, "audit events with equal timestamps keep their order");
    let reuse = db.sessions().rotate(&old_refresh, &refresh_hash(), clock()).await.unwrap();
    assert_eq!(reuse, Rotation::ReuseDetected { user_id: world.owner.id }, "the old refresh token is on record");
    expect_conflict(db.nodes().create(new_node_named(&world.node.name), clock()).await, "unique names still hold");
}

fn new_node_named(name: &str) -> NewNode {
    NewNode { name: name.to_string(), ..new_node("unused") }
}

pub async fn portable_import_is_all_or_nothing(db: Arc<dyn Database>) {
    let user = make_user(&*db, "there").await;
    let existing = export_all(&*db, Table::Users, 100).await;
    assert_eq!(existing.len(), 1);
    let mut fresh = existing[0].clone();
    let fresh_id = UserId::new_random();
    fresh[0] = serde_json::json!(fresh_id.to_string());
    fresh[1] = serde_json::json!(format!("fresh-{}", unique_suffix()));
    fresh[2] = serde_json::json!(format!("fresh-{}@example.test", unique_suffix()));
    expect_conflict(db.import_rows(Table::Users, &[fresh.clone(), existing[0].clone()]).await, "a row already there");
    expect_not_found(db.users().get(fresh_id).await, "the row imported before the conflicting one");

    let mut malformed = fresh.clone();
    malformed[5] = serde_json::json!("yes");
    match db.import_rows(Table::Users, &[fresh.clone(), malformed]).await {
        Err(Error::Invalid(e)) => assert!(e.to_string().contains("users.disabled"), "{e}"),
        other => panic!("a row of the wrong shape: expected Invalid, got {other:?}"),
    }
    expect_not_found(db.users().get(fresh_id).await, "the row before the malformed one");
    assert_eq!(db.users().count().await.unwrap(), 1);

    db.import_rows(Table::Users, &[fresh]).await.unwrap();
    assert_eq!(db.users().get(fresh_id).await.unwrap().id, fresh_id);
    assert_eq!(db.users().get(user.id).await.unwrap(), user);
    assert_eq!(db.import_rows(Table::Users, &[]).await.ok(), Some(()), "nothing to import is fine");
}

#[cfg(test)]
mod tests {
    /// The suite's template is one the panel itself would accept, so backends are tested with
    /// realistic data.
    #[test]
    fn the_fixture_template_spec_is_valid() {
        super::template_spec("Minecraft: Java Edition").validate().unwrap();
    }
}
