//! Plain files (`atomic_write`, `read_file`, `resolve_key`) and the buffer plumbing the blob
//! functions share: segments borrowed from Python without copying, and `bytes` filled without
//! the GIL.
use crate::errors::to_pyerr;
use crate::gil::detach_if_large;
use ferroflow_core::fs::{self, FileReader};
use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::ffi::OsString;
use std::path::PathBuf;

/// Python buffers held for the length of a call and read in place as byte slices.
pub(crate) struct Segments {
    buffers: Vec<PyUntypedBuffer>,
}

impl Segments {
    /// Accepts any iterable of C-contiguous buffers (bytes, bytearray, memoryview, NumPy arrays,
    /// pickle.PickleBuffer).
    pub(crate) fn from_iterable(segments: &Bound<'_, PyAny>) -> PyResult<Segments> {
        // SAFETY: a plain query of the object's type slots.
        if unsafe { ffi::PyObject_CheckBuffer(segments.as_ptr()) } == 1 {
            // Iterating a bytes object or an array would make every byte or element a segment.
            return Err(PyTypeError::new_err(format!(
                "segments must be a list of buffers, not a single {} object; pass [data]",
                type_name(segments)
            )));
        }
        let buffers = segments
            .try_iter()
            .map_err(|_| {
                PyTypeError::new_err(
                    "segments must be an iterable of buffers, e.g. a list of bytes",
                )
            })?
            .enumerate()
            .map(|(index, item)| borrow_buffer(&item?, &format!("segment {index}")))
            .collect::<PyResult<_>>()?;
        Ok(Segments { buffers })
    }

    pub(crate) fn one(data: &Bound<'_, PyAny>, what: &str) -> PyResult<Segments> {
        Ok(Segments {
            buffers: vec![borrow_buffer(data, what)?],
        })
    }

    /// Valid while `self` lives: the buffers stay exported (and so unresizable) until dropped.
    pub(crate) fn slices(&self) -> Vec<&[u8]> {
        self.buffers
            .iter()
            .map(|buffer| match buffer.len_bytes() {
                0 => &[][..],
                // SAFETY: a C-contiguous buffer of len_bytes() bytes at buf_ptr(), held exported.
                len => unsafe { std::slice::from_raw_parts(buffer.buf_ptr().cast::<u8>(), len) },
            })
            .collect()
    }
}

fn borrow_buffer(item: &Bound<'_, PyAny>, what: &str) -> PyResult<PyUntypedBuffer> {
    let buffer = PyUntypedBuffer::get(item).map_err(|e| {
        PyTypeError::new_err(format!(
            "{what} ({}) is not a buffer: pass bytes, bytearray, memoryview, a NumPy array or pickle.PickleBuffer ({e})",
            type_name(item)
        ))
    })?;
    if !buffer.is_c_contiguous() {
        return Err(PyValueError::new_err(format!(
            "{what} ({}) is not C-contiguous; pass numpy.ascontiguousarray(...) or bytes(...) of it",
            type_name(item)
        )));
    }
    Ok(buffer)
}

fn type_name(item: &Bound<'_, PyAny>) -> String {
    item.get_type()
        .name()
        .map_or_else(|_| "unknown type".to_owned(), |name| name.to_string())
}

/// New `bytes` objects of the given lengths, filled by `fill` with the GIL released.
pub(crate) fn new_bytes_filled<'py>(
    py: Python<'py>,
    lengths: &[usize],
    fill: impl Send + FnOnce(&mut [&mut [u8]]) -> ferroflow_core::Result<()>,
) -> PyResult<Vec<Bound<'py, PyBytes>>> {
    let mut objects = Vec::with_capacity(lengths.len());
    let mut buffers = Vec::with_capacity(lengths.len());
    for &len in lengths {
        let size = isize::try_from(len)
            .map_err(|_| PyValueError::new_err("a segment is too large for Python"))?;
        // SAFETY: PyBytes_FromStringAndSize(NULL, n) returns a new, unshared, uninitialised bytes
        // object that CPython allows to be written until it is shared. Not zeroing it saves a
        // pass over large results; every `fill` here only writes the buffers (file reads,
        // copies, decompression) before anything reads them, and nobody else sees them before.
        let object = unsafe {
            Bound::from_owned_ptr_or_err(
                py,
                ffi::PyBytes_FromStringAndSize(std::ptr::null(), size),
            )?
            .cast_into_unchecked::<PyBytes>()
        };
        let data = unsafe { ffi::PyBytes_AsString(object.as_ptr()).cast::<u8>() };
        buffers.push(unsafe { std::slice::from_raw_parts_mut(data, len) });
        objects.push(object);
    }
    let total = lengths.iter().sum();
    detach_if_large(py, total, || fill(&mut buffers)).map_err(to_pyerr)?;
    Ok(objects)
}

/// Writes the segments, one after another, to `path` atomically; returns the bytes written.
#[pyfunction]
#[pyo3(signature = (path, segments, *, durable = false))]
pub fn atomic_write(
    py: Python<'_>,
    path: PathBuf,
    segments: &Bound<'_, PyAny>,
    durable: bool,
) -> PyResult<u64> {
    let segments = Segments::from_iterable(segments)?;
    let slices = segments.slices();
    py.detach(|| fs::atomic_write(&path, &slices, durable))
        .map_err(to_pyerr)
}

/// The whole content of `path`.
#[pyfunction]
pub fn read_file(py: Python<'_>, path: PathBuf) -> PyResult<Bound<'_, PyBytes>> {
    let reader = py.detach(|| FileReader::open(&path)).map_err(to_pyerr)?;
    let len = usize::try_from(reader.len())
        .map_err(|_| PyValueError::new_err("the file is too large to read"))?;
    let mut objects = new_bytes_filled(py, &[len], |buffers| reader.read_into(buffers[0]))?;
    Ok(objects.remove(0))
}

/// `base` joined with the storage key `key`; refuses keys that would leave `base`.
#[pyfunction]
pub fn resolve_key(base: PathBuf, key: &str) -> PyResult<OsString> {
    fs::resolve_key(&base, key)
        .map(PathBuf::into_os_string)
        .map_err(to_pyerr)
}
