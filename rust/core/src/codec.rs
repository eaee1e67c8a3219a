//! Compression codecs: lzma (the .xz container), bz2, zlib and zstd, whole buffers in and out.
//!
//! The lzma, bz2 and zlib streams written here are the ones Python's `lzma`, `bz2` and `zlib`
//! modules write and read; concatenated .xz and bzip2 streams (and zstd frames) decode as one.
//! Every failure is an [`Error`]: corrupt or truncated input is [`Error::Corrupt`] naming the codec,
//! a bad codec name, level or option is [`Error::InvalidArgument`] listing what is valid.
use std::num::NonZeroUsize;
use std::ops::RangeInclusive;

use crate::error::{Error, Result};

mod decode;
mod encode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Lzma,
    Bz2,
    Zlib,
    Zstd,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct CompressOptions {
    /// `None` picks the codec's default level.
    pub level: Option<i32>,
    /// Encoder threads (lzma, zstd); 1 means single-threaded, 0 means one per core.
    /// bz2 and zlib have no multi-threaded encoder and ignore it.
    pub threads: u32,
    /// lzma's "extreme" preset flag (slower, sometimes a little smaller); lzma only.
    pub extreme: bool,
}

impl Codec {
    pub const ALL: [Codec; 4] = [Codec::Lzma, Codec::Bz2, Codec::Zlib, Codec::Zstd];

    pub const fn name(self) -> &'static str {
        match self {
            Codec::Lzma => "lzma",
            Codec::Bz2 => "bz2",
            Codec::Zlib => "zlib",
            Codec::Zstd => "zstd",
        }
    }

    pub fn from_name(name: &str) -> Result<Codec> {
        Codec::ALL
            .into_iter()
            .find(|c| c.name() == name)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown codec {name:?}; choose one of: lzma, bz2, zlib, zstd"
                ))
            })
    }

    /// The levels the codec accepts; zstd's negative levels trade ratio for speed.
    pub fn levels(self) -> RangeInclusive<i32> {
        match self {
            Codec::Lzma => 0..=9,
            Codec::Bz2 => 1..=9,
            Codec::Zlib => 0..=9,
            Codec::Zstd => encode::zstd_levels(),
        }
    }

    /// The level used when none is given: the Python stdlib's default for lzma, bz2 and zlib,
    /// the zstd command line's for zstd.
    pub fn default_level(self) -> i32 {
        match self {
            Codec::Lzma => 6,
            Codec::Bz2 => 9,
            Codec::Zlib => 6,
            Codec::Zstd => 3,
        }
    }

    /// Checks `level` (or picks the default) and returns the level to use.
    pub fn resolve_level(self, level: Option<i32>) -> Result<i32> {
        let Some(level) = level else {
            return Ok(self.default_level());
        };
        let levels = self.levels();
        if levels.contains(&level) {
            Ok(level)
        } else {
            Err(Error::InvalidArgument(format!(
                "level {level} is out of range for {}; choose a level from {} to {} (default {})",
                self.name(),
                levels.start(),
                levels.end(),
                self.default_level()
            )))
        }
    }
}

/// Compresses `data` into one complete stream of `codec`.
pub fn compress(codec: Codec, data: &[u8], options: &CompressOptions) -> Result<Vec<u8>> {
    let level = codec.resolve_level(options.level)?;
    if options.extreme && codec != Codec::Lzma {
        return Err(Error::InvalidArgument(format!(
            "extreme=True applies only to lzma, not {}; drop it or use codec=\"lzma\"",
            codec.name()
        )));
    }
    let threads = resolve_threads(options.threads)?;
    match codec {
        Codec::Lzma => encode::lzma(data, level as u32, options.extreme, threads),
        Codec::Bz2 => encode::bz2(data, level as u32),
        Codec::Zlib => encode::zlib(data, level as u32),
        Codec::Zstd => encode::zstd(data, level, threads),
    }
}

/// Decompresses every stream in `data` (concatenated .xz and bzip2 streams, zstd frames).
///
/// `size_hint`, when the caller knows the decompressed length, lets the output be allocated once.
/// A wrong hint costs only speed. For zstd the frames' recorded content size is used when no hint is given.
pub fn decompress(codec: Codec, data: &[u8], size_hint: Option<usize>) -> Result<Vec<u8>> {
    decompress_at_most(codec, data, size_hint, usize::MAX)
}

/// Like [`decompress`], but fails with [`Error::OutputLimit`] rather than produce more than
/// `max_output` bytes: a guard against "decompression bombs", small inputs that expand enormously.
pub fn decompress_at_most(
    codec: Codec,
    data: &[u8],
    size_hint: Option<usize>,
    max_output: usize,
) -> Result<Vec<u8>> {
    let capacity = size_hint.or_else(|| decompressed_size(codec, data));
    decode::to_vec(codec, data, capacity, max_output)
}

/// Decompresses `data` into `out` when the whole result fits in it.
///
/// Returns `Some(length)` (`length <= out.len()`) when every stream was decoded, `None` when `out`
/// was too small; the caller then falls back to [`decompress`]. This lets a caller that knows the
/// decompressed length write straight into memory it owns (e.g. a Python `bytes` object).
pub fn decompress_into(codec: Codec, data: &[u8], out: &mut [u8]) -> Result<Option<usize>> {
    decode::into_slice(codec, data, out)
}

/// The decompressed length recorded in `data`, when the format records it (zstd frames do).
pub fn decompressed_size(codec: Codec, data: &[u8]) -> Option<usize> {
    match codec {
        Codec::Zstd => decode::zstd_content_size(data),
        Codec::Lzma | Codec::Bz2 | Codec::Zlib => None,
    }
}

/// Codec states that count the bytes they have consumed and produced (liblzma, libbzip2, zlib).
trait Totals {
    fn totals(&self) -> (u64, u64);
}

macro_rules! impl_totals {
    ($($state:ty),*) => {$(
        impl Totals for $state {
            fn totals(&self) -> (u64, u64) {
                (self.total_in(), self.total_out())
            }
        }
    )*};
}

impl_totals!(
    liblzma::stream::Stream,
    bzip2::Compress,
    bzip2::Decompress,
    flate2::Compress,
    flate2::Decompress
);

/// Runs one `call` on `state`; returns the bytes it consumed and produced, and its result.
fn counted<S: Totals, R>(
    state: &mut S,
    call: impl FnOnce(&mut S) -> Result<R>,
) -> Result<(usize, usize, R)> {
    let (in_before, out_before) = state.totals();
    let result = call(state)?;
    let (in_after, out_after) = state.totals();
    Ok((
        (in_after - in_before) as usize,
        (out_after - out_before) as usize,
        result,
    ))
}

/// More encoder threads than this gain nothing and only cost memory (each holds a block).
pub const MAX_THREADS: u32 = 256;

/// `threads == 0` means one per core.
fn resolve_threads(threads: u32) -> Result<u32> {
    match threads {
        0 => Ok(std::thread::available_parallelism().map_or(1, NonZeroUsize::get) as u32),
        1..=MAX_THREADS => Ok(threads),
        _ => Err(Error::InvalidArgument(format!(
            "threads={threads} is too many; use 1 to {MAX_THREADS}, or 0 for one per core"
        ))),
    }
}

/// An empty `Vec` able to hold `capacity` bytes, or a smaller one when that much memory is not
/// available: capacities here are estimates, and a too-small `Vec` only grows later.
fn allocate(capacity: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    if buf.try_reserve_exact(capacity).is_err() {
        buf = Vec::with_capacity(capacity.min(1 << 20));
    }
    buf
}

/// Makes room for `additional` more bytes, failing cleanly (not aborting) when memory runs out.
fn reserve(buf: &mut Vec<u8>, additional: usize) -> Result<()> {
    buf.try_reserve(additional).map_err(|_| {
        Error::OutOfMemory(format!(
            "not enough memory to grow an output buffer of {} bytes by {additional} bytes",
            buf.len()
        ))
    })
}

#[cfg(test)]
mod tests;
