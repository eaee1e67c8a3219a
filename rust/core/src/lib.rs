//! ferroflow-core: the byte work behind ferroflow, with no Python dependency.

/// The version of the core crate, recorded in every blob header.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
