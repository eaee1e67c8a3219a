//! One encoder per codec, each writing a complete stream into a `Vec` sized once for the worst case.
use std::ops::RangeInclusive;

use bzip2::Compression as Bz2Level;
use flate2::Compression as ZlibLevel;
use liblzma::stream::{Check, MtStreamBuilder, Stream, PRESET_EXTREME};
use zstd::zstd_safe::{self, CParameter};

use super::counted;
use crate::error::{Error, Result};

/// The smallest block the multi-threaded xz encoder is given: smaller blocks cost ratio and
/// gain nothing, since a block's thread start-up is then a noticeable part of its work.
const MIN_LZMA_BLOCK: usize = 1 << 20;

/// The xz dictionary size of each preset 0-9 (the liblzma preset table).
const LZMA_DICT_SIZES: [usize; 10] = [
    256 << 10,
    1 << 20,
    2 << 20,
    4 << 20,
    4 << 20,
    8 << 20,
    8 << 20,
    16 << 20,
    32 << 20,
    64 << 20,
];

pub(super) fn zstd_levels() -> RangeInclusive<i32> {
    zstd_safe::min_c_level()..=zstd_safe::max_c_level()
}

/// The .xz container with a CRC64 check, like Python's `lzma.compress`.
pub(super) fn lzma(data: &[u8], preset: u32, extreme: bool, threads: u32) -> Result<Vec<u8>> {
    let flags = preset | if extreme { PRESET_EXTREME } else { 0 };
    let block_size = lzma_block_size(data.len(), preset, threads);
    // More threads than blocks would only allocate buffers that stay idle; one block needs none.
    let threads = threads.min(data.len().div_ceil(block_size).max(1) as u32);
    let stream = if threads > 1 {
        MtStreamBuilder::new()
            .threads(threads)
            .preset(flags)
            .check(Check::Crc64)
            .block_size(block_size as u64)
            .encoder()
    } else {
        Stream::new_easy_encoder(flags, Check::Crc64)
    };
    let mut stream = stream.map_err(|e| lzma_encoder_error(e, threads))?;
    encode_all(data, |input, out| {
        let (consumed, _, status) = counted(&mut stream, |stream| {
            stream
                .process_vec(input, out, liblzma::stream::Action::Finish)
                .map_err(|e| lzma_encoder_error(e, threads))
        })?;
        Ok((consumed, status == liblzma::stream::Status::StreamEnd))
    })
}

/// Splits the input so each thread gets a block (so a few tens of MiB already use every core),
/// but never beyond liblzma's own default of three dictionaries, which bounds memory and keeps the ratio.
pub(super) fn lzma_block_size(len: usize, preset: u32, threads: u32) -> usize {
    let per_thread = len.div_ceil(threads as usize);
    let largest = 3 * LZMA_DICT_SIZES[preset as usize];
    per_thread.min(largest).max(MIN_LZMA_BLOCK)
}

fn lzma_encoder_error(error: liblzma::stream::Error, threads: u32) -> Error {
    match error {
        liblzma::stream::Error::Mem | liblzma::stream::Error::MemLimit => Error::OutOfMemory(
            format!("lzma: not enough memory for the encoder with {threads} thread(s); use fewer threads or a lower level"),
        ),
        other => Error::InvalidArgument(format!(
            "lzma: the encoder refused its options ({other}) with {threads} thread(s)"
        )),
    }
}

/// A bzip2 stream, like Python's `bz2.compress`.
pub(super) fn bz2(data: &[u8], level: u32) -> Result<Vec<u8>> {
    // 30 is libbzip2's default work factor (how hard it tries before its fallback sort).
    let mut encoder = bzip2::Compress::new(Bz2Level::new(level), 30);
    encode_all(data, |input, out| {
        let (consumed, _, status) = counted(&mut encoder, |encoder| {
            encoder
                .compress_vec(input, out, bzip2::Action::Finish)
                .map_err(|e| Error::InvalidArgument(format!("bz2: the encoder failed: {e}")))
        })?;
        Ok((consumed, status == bzip2::Status::StreamEnd))
    })
}

/// A zlib stream (RFC 1950), like Python's `zlib.compress`.
pub(super) fn zlib(data: &[u8], level: u32) -> Result<Vec<u8>> {
    let mut encoder = flate2::Compress::new(ZlibLevel::new(level), true);
    encode_all(data, |input, out| {
        let (consumed, _, status) = counted(&mut encoder, |encoder| {
            encoder
                .compress_vec(input, out, flate2::FlushCompress::Finish)
                .map_err(|e| Error::InvalidArgument(format!("zlib: the encoder failed: {e}")))
        })?;
        Ok((consumed, status == flate2::Status::StreamEnd))
    })
}

/// One zstd frame recording its content size (so decoding allocates once) and a content checksum.
pub(super) fn zstd(data: &[u8], level: i32, threads: u32) -> Result<Vec<u8>> {
    let mut context = zstd_safe::CCtx::try_create().ok_or_else(|| {
        Error::OutOfMemory("zstd: could not allocate a compression context".into())
    })?;
    let set = |context: &mut zstd_safe::CCtx, parameter: CParameter| {
        context.set_parameter(parameter).map(drop).map_err(|code| {
            Error::InvalidArgument(format!(
                "zstd: the encoder refused its options: {} (level {level}, {threads} thread(s))",
                zstd_safe::get_error_name(code)
            ))
        })
    };
    set(&mut context, CParameter::CompressionLevel(level))?;
    set(&mut context, CParameter::ChecksumFlag(true))?;
    if threads > 1 {
        set(&mut context, CParameter::NbWorkers(threads))?;
    }
    let mut out = super::allocate(zstd_safe::compress_bound(data.len()));
    context
        .compress2(&mut out, data)
        .map_err(|code| Error::OutOfMemory(format!("zstd: {}", zstd_safe::get_error_name(code))))?;
    Ok(out)
}

/// Runs a streaming encoder over all of `data` in finish mode until it reports the stream's end.
///
/// `step(input, out)` encodes from `input` into `out`'s spare capacity and returns how many input
/// bytes it consumed and whether the stream is complete. The output starts at a size that holds
/// any result of these codecs (their worst case is a few bytes per KiB over the input), so the
/// loop grows it only in pathological cases.
fn encode_all(
    data: &[u8],
    mut step: impl FnMut(&[u8], &mut Vec<u8>) -> Result<(usize, bool)>,
) -> Result<Vec<u8>> {
    const MIN_SPARE: usize = 64 << 10;
    let mut out = super::allocate(data.len() + data.len() / 64 + MIN_SPARE);
    let mut consumed = 0;
    loop {
        if out.capacity() - out.len() < MIN_SPARE {
            let grow_by = out.len().max(MIN_SPARE);
            super::reserve(&mut out, grow_by)?;
        }
        let (taken, finished) = step(&data[consumed..], &mut out)?;
        consumed += taken;
        if finished {
            return Ok(out);
        }
    }
}
