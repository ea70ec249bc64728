//! The panel-agent wire protocol, versioned; domain types are converted into these, never sent.

pub mod v1;
