//! What several of capdb's test binaries share: fresh databases on the real servers.
#![allow(dead_code)]

#[cfg(feature = "postgres")]
pub mod postgres;
