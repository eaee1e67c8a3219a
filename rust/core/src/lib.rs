//! ferroflow-core: the byte work behind ferroflow, with no Python dependency.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod codec;
pub mod error;
pub mod frame;
pub mod fs;
pub mod hash;
pub mod memory;
pub mod object_store;

pub use error::{Error, Result};

/// The version of the core crate, recorded in every blob header.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
