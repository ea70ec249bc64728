//! Database backends for Ctrl-Alt-Play: implementations of `capcore::backend::Database`.
//!
//! Pick a backend by URL with [`connect`]; `sqlite://` is the embedded default (feature
//! `sqlite`, on by default) and `postgres://` (or `postgresql://`) the shared one for several
//! panels (feature `postgres`, on by default), as is `mysql://` (or `mariadb://`) for MySQL and
//! MariaDB (feature `mysql`, on by default); `mongodb://` stores the panel in MongoDB (feature
//! `mongodb`, on by default; see [`mongo`] for what holds without transactions). A scheme whose
//! backend is compiled out fails with an error naming the feature to enable. Each backend runs the same conformance suite
//! (`capcore::database_conformance_tests!`).
//!
//! # Example
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use capcore::model::{NewUser, PageRequest};
//! use capcore::time::Timestamp;
//!
//! let db = capdb::connect("sqlite::memory:", &capdb::DbConfig::default()).await.unwrap();
//! db.migrate().await.unwrap();
//! let user = db
//!     .users()
//!     .create(
//!         NewUser { username: "ada".into(), email: "ada@example.org".into(), password_hash: "x".into() },
//!         Timestamp::from_millis(0),
//!     )
//!     .await
//!     .unwrap();
//! let page = db.users().list(None, PageRequest::default()).await.unwrap();
//! assert_eq!(page.items, vec![user]);
//! # });
//! ```

pub mod cached;
pub mod copy;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
mod error;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql", feature = "mongodb"))]
mod migrations;
#[cfg(feature = "mongodb")]
pub mod mongo;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod portable;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(any(feature = "postgres", feature = "mysql", feature = "mongodb"))]
mod url;

pub use cached::{CachedDatabase, CachedDatabaseConfig};
use capcore::backend::Database;
use capcore::{Error, Result};
pub use copy::{CopyOptions, CopyReport, copy};
use std::sync::Arc;
use std::time::Duration;

/// Settings shared by every backend.
#[derive(Clone, Debug)]
pub struct DbConfig {
    /// Pool size, per panel process (SQLite in-memory databases always use 1).
    pub max_connections: u32,
    /// How long to wait for a connection before `Unavailable`.
    pub acquire_timeout: Duration,
}

impl Default for DbConfig {
    fn default() -> Self {
        Self { max_connections: 8, acquire_timeout: Duration::from_secs(10) }
    }
}

/// Opens the database at `url`, choosing the backend by scheme. Does not migrate.
#[cfg_attr(
    not(any(feature = "sqlite", feature = "postgres", feature = "mysql", feature = "mongodb")),
    allow(unused_variables)
)]
pub async fn connect(url: &str, config: &DbConfig) -> Result<Arc<dyn Database>> {
    let scheme = url.split(':').next().unwrap_or_default();
    match scheme {
        #[cfg(feature = "sqlite")]
        "sqlite" => Ok(Arc::new(sqlite::SqliteDatabase::connect(url, config).await?)),
        #[cfg(not(feature = "sqlite"))]
        "sqlite" => Err(compiled_out("sqlite")),
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => Ok(Arc::new(postgres::PostgresDatabase::connect(url, config).await?)),
        #[cfg(not(feature = "postgres"))]
        "postgres" | "postgresql" => Err(compiled_out("postgres")),
        #[cfg(feature = "mongodb")]
        "mongodb" => Ok(Arc::new(mongo::MongoDatabase::connect(url, config).await?)),
        #[cfg(not(feature = "mongodb"))]
        "mongodb" => Err(compiled_out("mongodb")),
        #[cfg(feature = "mysql")]
        "mysql" | "mariadb" => Ok(Arc::new(mysql::MysqlDatabase::connect(url, config).await?)),
        #[cfg(not(feature = "mysql"))]
        "mysql" | "mariadb" => Err(compiled_out("mysql")),
        _ => Err(Error::invalid(
            "database_url",
            format!("unknown scheme `{scheme}`; expected sqlite://, postgres://, mysql://, mariadb:// or mongodb://"),
        )),
    }
}

#[cfg(not(all(feature = "sqlite", feature = "postgres", feature = "mysql", feature = "mongodb")))]
fn compiled_out(feature: &str) -> Error {
    Error::invalid(
        "database_url",
        format!("this build has no `{feature}` backend; rebuild capdb with feature `{feature}`"),
    )
}
