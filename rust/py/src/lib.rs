//! `ferroflow._core`: argument conversion, GIL release and error mapping around ferroflow-core.
use pyo3::prelude::*;

#[pymodule]
mod _core {
    #[allow(non_upper_case_globals)]
    #[pymodule_export]
    const __version__: &str = ferroflow_core::VERSION;
}
