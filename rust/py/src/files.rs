//! Plain files: `atomic_write`, `read_file`, `resolve_key` and `is_temporary_file_name`.
use std::ffi::OsString;
use std::path::PathBuf;

use ferroflow_core::fs::{self, FileReader};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::buffer::{new_bytes_filled, slices, InputBuffer};
use crate::errors::Result;
use crate::gil::{self, Work};

/// Writes the segments, one after another, to `path` atomically; returns the bytes written.
#[pyfunction]
#[pyo3(signature = (path, segments, *, durable = false))]
pub fn atomic_write(
    py: Python<'_>,
    path: PathBuf,
    segments: &Bound<'_, PyAny>,
    durable: bool,
) -> Result<u64> {
    let segments = InputBuffer::borrow_segments(segments)?;
    let slices = slices(&segments);
    let written = gil::run(py, Work::Blocking, || {
        fs::atomic_write(&path, &slices, durable)
    })?;
    Ok(written)
}

/// The whole content of `path`.
#[pyfunction]
pub fn read_file(py: Python<'_>, path: PathBuf) -> Result<Bound<'_, PyBytes>> {
    let reader = gil::run(py, Work::Blocking, || FileReader::open(&path))?;
    let len = usize::try_from(reader.len())
        .map_err(|_| PyValueError::new_err("the file is too large to read"))?;
    let mut objects = new_bytes_filled(py, &[len], Work::Bytes(len), |buffers| {
        reader.read_into(buffers[0])
    })?;
    Ok(objects.remove(0))
}

/// The first `length` bytes of `path` (fewer when the file is shorter).
#[pyfunction]
pub fn read_file_prefix(
    py: Python<'_>,
    path: PathBuf,
    length: usize,
) -> Result<Bound<'_, PyBytes>> {
    let prefix = gil::run(py, Work::Blocking, || fs::read_file_prefix(&path, length))?;
    Ok(PyBytes::new(py, &prefix))
}

/// `base` joined with the storage key `key`; refuses keys that would leave `base`.
#[pyfunction]
pub fn resolve_key(base: PathBuf, key: &str) -> Result<OsString> {
    Ok(fs::resolve_key(&base, key)?.into_os_string())
}

/// Whether `name` (a file name without its folder) is the name of a temporary file of
/// `atomic_write` or `write_blob`: a write in progress, or the leftover of a killed one.
#[pyfunction]
pub fn is_temporary_file_name(name: OsString) -> bool {
    fs::is_temporary_file_name(&name)
}
