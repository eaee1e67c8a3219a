//! `compress`, `decompress` and `CODECS`: buffers in, `bytes` out, the GIL released while a codec runs.
use std::ptr::NonNull;

use ferroflow_core::codec::{self, Codec, CompressOptions};
use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::{PyMemoryError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::to_pyerr;

pub const CODECS: (&str, &str, &str, &str) = (
    Codec::Lzma.name(),
    Codec::Bz2.name(),
    Codec::Zlib.name(),
    Codec::Zstd.name(),
);

/// A read-only view of a C-contiguous Python buffer (bytes, bytearray, memoryview, NumPy array of
/// any dtype, `pickle.PickleBuffer`), held without copying while the GIL is released.
pub(crate) enum InputBuffer<'py> {
    /// `bytes` are read in place: cheaper than the buffer protocol for many small pieces.
    Bytes(Bound<'py, PyBytes>),
    Exported(PyUntypedBuffer),
}

impl<'py> InputBuffer<'py> {
    pub(crate) fn get(object: &Bound<'py, PyAny>) -> PyResult<Self> {
        if let Ok(bytes) = object.cast::<PyBytes>() {
            return Ok(InputBuffer::Bytes(bytes.clone()));
        }
        let buffer = PyUntypedBuffer::get(object).map_err(|_| {
            PyTypeError::new_err(format!(
                "expected a bytes-like object (bytes, bytearray, memoryview, NumPy array, \
                 pickle.PickleBuffer), not {}",
                type_name(object)
            ))
        })?;
        if !buffer.is_c_contiguous() {
            return Err(PyValueError::new_err(format!(
                "the {} buffer is not C-contiguous (a strided view or a transposed/Fortran-order array); \
                 pass numpy.ascontiguousarray(x) or bytes(x) instead",
                type_name(object)
            )));
        }
        Ok(InputBuffer::Exported(buffer))
    }

    /// The buffer's bytes. Python guarantees they stay in place while the buffer is held; like
    /// every C extension reading a buffer without the GIL, this assumes no other thread writes
    /// into a mutable exporter (a bytearray, an array) meanwhile.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        let buffer = match self {
            InputBuffer::Bytes(bytes) => return bytes.as_bytes(),
            InputBuffer::Exported(buffer) => buffer,
        };
        let len = buffer.len_bytes();
        let start = match NonNull::new(buffer.buf_ptr().cast::<u8>()) {
            Some(start) if len > 0 => start,
            _ => NonNull::dangling(),
        };
        // SAFETY: a held, C-contiguous buffer is `len_bytes` readable bytes at `buf_ptr`.
        unsafe { std::slice::from_raw_parts(start.as_ptr(), len) }
    }
}

fn type_name(object: &Bound<'_, PyAny>) -> String {
    object
        .get_type()
        .fully_qualified_name()
        .map_or_else(|_| "unknown type".to_owned(), |name| name.to_string())
}

/// Compresses a bytes-like object into one complete stream of `codec`.
#[pyfunction]
#[pyo3(signature = (data, codec, *, level=None, threads=1, extreme=false))]
pub fn compress<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    codec: &str,
    level: Option<i32>,
    threads: u32,
    extreme: bool,
) -> PyResult<Bound<'py, PyBytes>> {
    let codec = Codec::from_name(codec).map_err(to_pyerr)?;
    let input = InputBuffer::get(data)?;
    let bytes = input.as_bytes();
    let options = CompressOptions {
        level,
        threads,
        extreme,
    };
    let packed = py
        .detach(|| codec::compress(codec, bytes, &options))
        .map_err(to_pyerr)?;
    Ok(PyBytes::new(py, &packed))
}

/// Decompresses every stream of `codec` in a bytes-like object, refusing to produce more than
/// `max_output` bytes when it is given.
#[pyfunction]
#[pyo3(signature = (data, codec, *, size_hint=None, max_output=None))]
pub fn decompress<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    codec: &str,
    size_hint: Option<usize>,
    max_output: Option<usize>,
) -> PyResult<Bound<'py, PyBytes>> {
    let codec = Codec::from_name(codec).map_err(to_pyerr)?;
    let input = InputBuffer::get(data)?;
    let bytes = input.as_bytes();
    let max_output = max_output.unwrap_or(usize::MAX);
    let known_length = size_hint.or_else(|| codec::decompressed_size(codec, bytes));
    if let Some(length) = known_length.filter(|&length| length <= max_output) {
        if let Some(result) = decompress_into_bytes(py, codec, bytes, length)? {
            return Ok(result);
        }
    }
    // No length known, or the hint was too small: grow a buffer, then copy it once into `bytes`.
    let unpacked = py
        .detach(|| codec::decompress_at_most(codec, bytes, size_hint, max_output))
        .map_err(to_pyerr)?;
    Ok(PyBytes::new(py, &unpacked))
}

/// Decodes straight into a new `bytes` of `length` bytes; `None` when the result is longer.
fn decompress_into_bytes<'py>(
    py: Python<'py>,
    codec: Codec,
    data: &[u8],
    length: usize,
) -> PyResult<Option<Bound<'py, PyBytes>>> {
    let mut written = None;
    let filled = PyBytes::new_with(py, length, |out| {
        written = py
            .detach(|| codec::decompress_into(codec, data, out))
            .map_err(to_pyerr)?;
        Ok(())
    });
    let filled = match filled {
        // The hint asked for more memory than there is: decode without it, growing as needed.
        Err(error) if error.is_instance_of::<PyMemoryError>(py) && written.is_none() => {
            return Ok(None)
        }
        other => other?,
    };
    Ok(match written {
        Some(n) if n == length => Some(filled),
        // The hint was generous: keep only what was written (one copy, as without a hint).
        Some(n) => Some(PyBytes::new(py, &filled.as_bytes()[..n])),
        None => None,
    })
}
