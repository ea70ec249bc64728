//! Runtimes: how a game server's process is run. The process runtime is here; Docker follows.

pub mod process;
