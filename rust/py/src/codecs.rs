//! `compress`, `decompress` and `CODECS`: buffers in, `bytes` out; `gil.rs` decides when a codec
//! runs with the GIL released.
use ferroflow_core::codec::{self, Codec, CompressOptions};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::buffer::{bytes_copied, new_bytes_filled, InputBuffer};
use crate::errors::Result;
use crate::gil::{self, Work};

pub const CODECS: (&str, &str, &str, &str) = (
    Codec::Lzma.name(),
    Codec::Bz2.name(),
    Codec::Zlib.name(),
    Codec::Zstd.name(),
);

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
) -> Result<Bound<'py, PyBytes>> {
    let codec = Codec::from_name(codec)?;
    let input = InputBuffer::borrow(data, "data")?;
    let bytes = input.as_bytes();
    let options = CompressOptions {
        level,
        threads,
        extreme,
    };
    let packed = gil::run(py, Work::Compressing, || {
        codec::compress(codec, bytes, &options)
    })?;
    bytes_copied(py, &packed)
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
) -> Result<Bound<'py, PyBytes>> {
    let codec = Codec::from_name(codec)?;
    let input = InputBuffer::borrow(data, "data")?;
    let bytes = input.as_bytes();
    let max_output = max_output.unwrap_or(usize::MAX);
    // Reads a zstd frame's header (at most 18 bytes): no byte work worth a GIL hand-off.
    let known_length = size_hint.or_else(|| codec::decompressed_size(codec, bytes));
    if let Some(length) = known_length.filter(|&length| length <= max_output) {
        if let Some(result) = decompress_into_bytes(py, codec, bytes, length)? {
            return Ok(result);
        }
    }
    // No length known, or the hint was too small: grow a buffer, then copy it once into `bytes`.
    let unpacked = gil::run(py, Work::DecompressingUnbounded, || {
        codec::decompress_at_most(codec, bytes, size_hint, max_output)
    })?;
    bytes_copied(py, &unpacked)
}

/// Decodes straight into a new `bytes` of `length` bytes; `None` when the result is longer, or
/// when `length` bytes could not be allocated (a hint larger than the memory there is).
fn decompress_into_bytes<'py>(
    py: Python<'py>,
    codec: Codec,
    data: &[u8],
    length: usize,
) -> Result<Option<Bound<'py, PyBytes>>> {
    let mut written = None;
    // Both the input read and the output written bound the decoder's work.
    let work = Work::Bytes(data.len().saturating_add(length));
    let filled = new_bytes_filled(py, &[length], work, |out| {
        written = codec::decompress_into(codec, data, out[0])?;
        Ok(())
    });
    let filled = match filled {
        Err(error) if error.is_out_of_memory(py) && written.is_none() => return Ok(None),
        other => other?.remove(0),
    };
    Ok(match written {
        Some(n) if n == length => Some(filled),
        // The hint was generous: keep only what was written (one copy, as without a hint).
        Some(n) => Some(bytes_copied(py, &filled.as_bytes()[..n])?),
        None => None,
    })
}
