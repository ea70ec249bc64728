//! Exhaustive tests of the permission catalogue and the evaluation function.

use super::*;
use uuid::Uuid;

fn server() -> Scope {
    Scope::Server(ServerId(Uuid::from_u128(7)))
}

#[test]
fn catalogue_has_36_permissions_in_10_categories() {
    assert_eq!(Permission::ALL.len(), 36);
    let counts: Vec<(Category, usize)> =
        Category::ALL.iter().map(|c| (*c, Permission::ALL.iter().filter(|p| p.category() == *c).count())).collect();
    assert_eq!(
        counts,
        vec![
            (Category::Server, 9),
            (Category::User, 5),
            (Category::File, 5),
            (Category::Plugin, 2),
            (Category::Workshop, 2),
            (Category::Backup, 4),
            (Category::Analytics, 1),
            (Category::System, 4),
            (Category::Network, 2),
            (Category::Monitoring, 2),
        ]
    );
    for (i, p) in Permission::ALL.iter().enumerate() {
        assert_eq!(*p as usize, i, "bits are dense and in catalogue order");
        assert_eq!(Permission::from_name(p.name()), Some(*p));
    }
    assert_eq!(PermissionSet::all().len(), 36);
}

#[test]
fn names_round_trip_through_json() {
    let set: PermissionSet = [Permission::FILE_READ, Permission::SERVER_VIEW].into_iter().collect();
    let json = serde_json::to_string(&set).unwrap();
    assert_eq!(json, r#"["SERVER_VIEW","FILE_READ"]"#);
    assert_eq!(serde_json::from_str::<PermissionSet>(&json).unwrap(), set);
    let err = serde_json::from_str::<PermissionSet>(r#"["SERVER_FLY"]"#).unwrap_err();
    assert!(err.to_string().contains("unknown permission `SERVER_FLY`"), "{err}");
}

/// Every permission, every scope, every relation, with and without an API key limit.
#[test]
fn evaluation_is_exhaustively_as_specified() {
    let relations = [
        ServerRelation::None,
        ServerRelation::Owner,
        ServerRelation::Subuser(PermissionSet::EMPTY),
        ServerRelation::Subuser([Permission::SERVER_CONSOLE, Permission::FILE_READ].into_iter().collect()),
        // A subuser row can never hold a global-only permission; even if a store had one it
        // must not count.
        ServerRelation::Subuser([Permission::SYSTEM_NODES, Permission::SERVER_DELETE].into_iter().collect()),
    ];
    let globals = [
        PermissionSet::EMPTY,
        PermissionSet::all(),
        (DEFAULT_ROLES[1].permissions)(),
        [Permission::SERVER_VIEW].into_iter().collect(),
    ];
    let limits = [None, Some(PermissionSet::EMPTY), Some([Permission::SERVER_CONSOLE].into_iter().collect())];
    let mut checked = 0;
    for global in globals {
        for relation in relations {
            for limit in limits {
                let subject = Subject { global, server: relation, key_limit: limit };
                for &p in Permission::ALL {
                    for scope in [Scope::Global, server()] {
                        let by_key = limit.is_none_or(|l| l.contains(p));
                        let by_relation = match (scope, relation) {
                            (Scope::Global, _) => false,
                            (_, ServerRelation::None) => false,
                            (_, ServerRelation::Owner) => p.is_server_scoped(),
                            (_, ServerRelation::Subuser(g)) => p.is_server_scoped() && g.contains(p),
                        };
                        let expected = by_key && (global.contains(p) || by_relation);
                        assert_eq!(is_allowed(&subject, p, scope), expected, "{subject:?} {p} {scope:?}");
                        checked += 1;
                    }
                }
            }
        }
    }
    assert_eq!(checked, 4 * 5 * 3 * 36 * 2);
}

#[test]
fn owner_holds_every_server_scoped_permission_and_nothing_global() {
    let owner = Subject { global: PermissionSet::EMPTY, server: ServerRelation::Owner, key_limit: None };
    assert_eq!(effective(&owner, server()), PermissionSet::server_scoped());
    assert_eq!(effective(&owner, Scope::Global), PermissionSet::EMPTY);
    assert!(!is_allowed(&owner, Permission::SERVER_DELETE, server()));
    assert!(!is_allowed(&owner, Permission::SYSTEM_NODES, server()));
}

#[test]
fn api_key_only_narrows() {
    let admin = Subject {
        global: PermissionSet::all(),
        server: ServerRelation::None,
        key_limit: Some([Permission::SERVER_VIEW].into_iter().collect()),
    };
    assert!(is_allowed(&admin, Permission::SERVER_VIEW, Scope::Global));
    assert!(!is_allowed(&admin, Permission::USER_CREATE, Scope::Global));
    let user =
        Subject { global: PermissionSet::EMPTY, server: ServerRelation::None, key_limit: Some(PermissionSet::all()) };
    assert!(!is_allowed(&user, Permission::SERVER_VIEW, server()));
}

#[test]
fn default_roles() {
    assert_eq!(DEFAULT_ROLES.map(|r| r.name), ["admin", "moderator", "user"]);
    assert_eq!((DEFAULT_ROLES[0].permissions)(), PermissionSet::all());
    let moderator = (DEFAULT_ROLES[1].permissions)();
    assert!(moderator.contains(Permission::SERVER_CONSOLE));
    assert!(!moderator.contains(Permission::SERVER_DELETE));
    assert!(!moderator.contains(Permission::USER_PERMISSIONS));
    assert!((DEFAULT_ROLES[2].permissions)().is_empty());
}

#[test]
fn pterodactyl_keys_map() {
    let set = from_pterodactyl_keys(&["control.console", "file.read-content", "file.sftp"]).unwrap();
    assert_eq!(
        set,
        [Permission::SERVER_CONSOLE, Permission::FILE_READ, Permission::FILE_VIEW, Permission::FILE_WRITE]
            .into_iter()
            .collect()
    );
    assert_eq!(from_pterodactyl_keys(&["control.fly"]), Err("control.fly".to_string()));
    // Every mapped permission is one a subuser can hold.
    for (key, perms) in PTERODACTYL_SUBUSER_KEYS {
        for p in *perms {
            assert!(p.is_server_scoped(), "{key} maps to global-only {p}");
        }
    }
}

#[test]
fn set_operations() {
    let a: PermissionSet = [Permission::SERVER_VIEW, Permission::FILE_READ].into_iter().collect();
    let b: PermissionSet = [Permission::SERVER_VIEW].into_iter().collect();
    assert!(b.is_subset_of(a));
    assert!(!a.is_subset_of(b));
    assert_eq!(a.intersection(b), b);
    assert_eq!(PermissionSet::from_bits(u64::MAX), PermissionSet::all());
    assert_eq!(PermissionSet::from_names(&["SERVER_VIEW", "NOPE"]), Err("NOPE".to_string()));
}
