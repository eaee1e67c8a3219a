//! `ferroflow._core`: argument conversion, GIL release and error mapping around ferroflow-core.
//! Each submodule binds one area of the core; this file only assembles the Python module.
#![deny(clippy::undocumented_unsafe_blocks)]
use pyo3::prelude::*;

mod buffer;
mod codecs;
mod errors;
mod files;
mod framing;
mod gil;
mod hashing;
mod store;

#[pymodule]
mod _core {
    use pyo3::prelude::*;

    #[pymodule_export]
    use crate::codecs::{compress, decompress};
    #[pymodule_export]
    const CODECS: (&str, &str, &str, &str) = crate::codecs::CODECS;

    #[pymodule_export]
    use crate::hashing::{hash_buffers, Hasher};
    #[pymodule_export]
    const HASH_ALGORITHMS: (&str, &str, &str) = crate::hashing::HASH_ALGORITHMS;

    #[pymodule_export]
    use crate::framing::{
        frame_blob, load_blob, map_blob, read_blob, read_header, unframe_blob, write_blob,
        PyBlobHeader, PyReadPolicy, PySigningKey,
    };

    #[pymodule_export]
    use crate::store::{PyObjectInfo, PyStore};

    #[pymodule_export]
    use crate::files::{
        atomic_write, is_temporary_file_name, read_file, read_file_prefix, resolve_key,
    };

    #[pymodule_init]
    fn init(module: &Bound<'_, PyModule>) -> PyResult<()> {
        module.add("__version__", ferroflow_core::VERSION)?;
        // The exception classes live in `ferroflow.exceptions` (under FerroflowException) and
        // are re-exported here, the same classes, for code that imports them from `_core`.
        // Importing them now also makes a missing module an ImportError here rather than a
        // panic at the first raise.
        let exceptions = module.py().import("ferroflow.exceptions")?;
        for name in crate::errors::EXCEPTION_NAMES {
            module.add(name, exceptions.getattr(name)?)?;
        }
        Ok(())
    }
}
