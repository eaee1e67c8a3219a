//! One streaming decoder per codec behind a common step function, driven into either a growing
//! `Vec` or a caller's fixed buffer.
use flate2::FlushDecompress;
use liblzma::stream::{Action, MtStreamBuilder, Stream};
use zstd::zstd_safe::{self, InBuffer, OutBuffer};

use super::{counted, Codec};
use crate::error::{Error, Result};

/// What one decoder step did.
struct Step {
    consumed: usize,
    produced: usize,
    /// The current stream (or zstd frame) is complete and all its output was written.
    stream_end: bool,
}

trait Decoder {
    fn codec(&self) -> Codec;
    /// Decodes from `input` into `output`, which is never empty.
    fn step(&mut self, input: &[u8], output: &mut [u8]) -> Result<Step>;
    /// A stream ended with `leftover` input after it: get ready for the next stream and return how
    /// many bytes to skip before it (padding), or refuse the leftover bytes.
    fn start_next_stream(&mut self, leftover: &[u8]) -> Result<usize>;
}

fn decoder_for(codec: Codec) -> Result<Box<dyn Decoder>> {
    Ok(match codec {
        Codec::Lzma => Box::new(LzmaDecoder::new()?),
        Codec::Bz2 => Box::new(Bz2Decoder(bzip2::Decompress::new(false))),
        Codec::Zlib => Box::new(ZlibDecoder(flate2::Decompress::new(true))),
        Codec::Zstd => Box::new(ZstdDecoder::new()?),
    })
}

/// Where decoded bytes go.
trait Output {
    /// Writable space after the bytes written so far; empty when the output can take no more.
    fn spare(&mut self) -> Result<&mut [u8]>;
    fn advance(&mut self, written: usize);
}

enum Outcome {
    Complete,
    /// The data decodes to more bytes than the output can take.
    OutputFull,
}

/// Feeds all of `data` through `decoder`, stream after stream, until the input ends on a stream end.
fn run(decoder: &mut dyn Decoder, data: &[u8], output: &mut dyn Output) -> Result<Outcome> {
    // Once the output is full, one byte of room tells a stream that ends exactly there from one
    // that goes on.
    let mut probe = [0u8; 1];
    let mut consumed = 0;
    loop {
        let space = output.spare()?;
        let full = space.is_empty();
        let step = decoder.step(&data[consumed..], if full { &mut probe } else { space })?;
        if full && step.produced > 0 {
            return Ok(Outcome::OutputFull);
        }
        output.advance(step.produced);
        consumed += step.consumed;
        if step.stream_end {
            if consumed == data.len() {
                return Ok(Outcome::Complete);
            }
            consumed += decoder.start_next_stream(&data[consumed..])?;
            if consumed == data.len() {
                return Ok(Outcome::Complete);
            }
        } else if step.consumed == 0 && step.produced == 0 {
            // Every input byte and room to write were offered, yet nothing moved: the data stops
            // before its stream's end (or is empty).
            return Err(truncated(decoder.codec(), data.len()));
        }
    }
}

fn truncated(codec: Codec, len: usize) -> Error {
    let what = if len == 0 {
        "is empty"
    } else {
        "ends before the end of its stream (truncated)"
    };
    Error::Corrupt(format!(
        "{}: the compressed data {what}; it is not a complete {} stream",
        codec.name(),
        codec.name()
    ))
}

pub(super) fn to_vec(
    codec: Codec,
    data: &[u8],
    capacity: Option<usize>,
    max_output: usize,
) -> Result<Vec<u8>> {
    let capacity = capacity
        .unwrap_or(data.len().saturating_mul(4))
        .min(max_output);
    let mut output = GrowingOutput {
        buf: super::allocate(capacity),
        filled: 0,
        limit: max_output,
    };
    let mut decoder = decoder_for(codec)?;
    match run(decoder.as_mut(), data, &mut output)? {
        Outcome::Complete => Ok(output.into_vec()),
        Outcome::OutputFull => Err(Error::OutputLimit(format!(
            "{}: the data decompresses to more than max_output={max_output} bytes; \
             raise max_output if you trust this data",
            codec.name()
        ))),
    }
}

pub(super) fn into_slice(codec: Codec, data: &[u8], out: &mut [u8]) -> Result<Option<usize>> {
    let mut output = SliceOutput {
        buf: out,
        filled: 0,
    };
    let mut decoder = decoder_for(codec)?;
    Ok(match run(decoder.as_mut(), data, &mut output)? {
        Outcome::Complete => Some(output.filled),
        Outcome::OutputFull => None,
    })
}

/// A `Vec` that grows as output arrives, up to `limit` bytes; only memory written to is touched.
struct GrowingOutput {
    buf: Vec<u8>,
    filled: usize,
    limit: usize,
}

impl GrowingOutput {
    fn into_vec(mut self) -> Vec<u8> {
        self.buf.truncate(self.filled);
        self.buf
    }
}

impl Output for GrowingOutput {
    fn spare(&mut self) -> Result<&mut [u8]> {
        if self.filled == self.buf.len() {
            // Zero (and so commit) the next chunk only, whatever capacity was reserved up front.
            let chunk = self
                .buf
                .len()
                .clamp(64 << 10, 64 << 20)
                .min(self.limit - self.buf.len());
            super::reserve(&mut self.buf, chunk)?;
            self.buf.resize(self.buf.len() + chunk, 0);
        }
        Ok(&mut self.buf[self.filled..])
    }

    fn advance(&mut self, written: usize) {
        self.filled += written;
    }
}

/// A caller's buffer of fixed size.
struct SliceOutput<'a> {
    buf: &'a mut [u8],
    filled: usize,
}

impl Output for SliceOutput<'_> {
    fn spare(&mut self) -> Result<&mut [u8]> {
        Ok(&mut self.buf[self.filled..])
    }

    fn advance(&mut self, written: usize) {
        self.filled += written;
    }
}

/// Memory liblzma's multi-threaded decoder may use for decoding blocks in parallel; a file that
/// would need more is decoded on one thread instead (never refused).
const LZMA_THREADING_MEMORY: u64 = 1 << 30;

struct LzmaDecoder(Stream);

impl LzmaDecoder {
    /// liblzma's multi-threaded decoder: it decodes the blocks of a multi-block file (as the
    /// multi-threaded encoder writes) on every core, and anything else like the plain decoder.
    fn new() -> Result<Self> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        MtStreamBuilder::new()
            .threads(threads)
            .memlimit_threading(LZMA_THREADING_MEMORY)
            .memlimit_stop(u64::MAX)
            .decoder()
            .map(LzmaDecoder)
            .map_err(lzma_error)
    }
}

impl Decoder for LzmaDecoder {
    fn codec(&self) -> Codec {
        Codec::Lzma
    }

    fn step(&mut self, input: &[u8], output: &mut [u8]) -> Result<Step> {
        let (consumed, produced, status) = counted(&mut self.0, |stream| {
            stream
                .process(input, output, Action::Finish)
                .map_err(lzma_error)
        })?;
        Ok(Step {
            consumed,
            produced,
            stream_end: status == liblzma::stream::Status::StreamEnd,
        })
    }

    fn start_next_stream(&mut self, leftover: &[u8]) -> Result<usize> {
        // Concatenated .xz streams decode as one, as with `xz -d` and Python's `lzma`. The format
        // allows null padding between streams, in multiples of four bytes.
        let padding = leftover.iter().take_while(|&&byte| byte == 0).count();
        if padding % 4 != 0 {
            return Err(Error::Corrupt(format!(
                "lzma: {padding} null byte(s) follow an .xz stream; padding must be a multiple of 4 bytes, \
                 so the data is not valid lzma (.xz) data"
            )));
        }
        *self = LzmaDecoder::new()?;
        Ok(padding)
    }
}

fn lzma_error(error: liblzma::stream::Error) -> Error {
    use liblzma::stream::Error as E;
    let reason = match error {
        E::Format => "is not in the .xz format (no .xz stream header)",
        E::Data => "is corrupted (an .xz integrity check or the LZMA2 data is invalid)",
        E::Options => "uses .xz options this decoder does not support",
        E::Mem | E::MemLimit => {
            return Error::OutOfMemory("lzma: not enough memory to decompress".into());
        }
        E::Program | E::NoCheck | E::UnsupportedCheck => "could not be decoded",
    };
    Error::Corrupt(format!(
        "lzma: the compressed data {reason}; it is not valid lzma (.xz) data"
    ))
}

struct Bz2Decoder(bzip2::Decompress);

impl Decoder for Bz2Decoder {
    fn codec(&self) -> Codec {
        Codec::Bz2
    }

    fn step(&mut self, input: &[u8], output: &mut [u8]) -> Result<Step> {
        let (consumed, produced, status) = counted(&mut self.0, |decoder| {
            decoder.decompress(input, output).map_err(bz2_error)
        })?;
        Ok(Step {
            consumed,
            produced,
            stream_end: status == bzip2::Status::StreamEnd,
        })
    }

    fn start_next_stream(&mut self, _leftover: &[u8]) -> Result<usize> {
        // Concatenated bzip2 streams (pbzip2, `cat a.bz2 b.bz2`) decode as one, as in Python's `bz2`.
        self.0 = bzip2::Decompress::new(false);
        Ok(0)
    }
}

fn bz2_error(error: bzip2::Error) -> Error {
    let reason = match error {
        bzip2::Error::DataMagic => "does not start with a bzip2 stream header",
        _ => "is corrupted (a bzip2 block or checksum is invalid)",
    };
    Error::Corrupt(format!(
        "bz2: the compressed data {reason}; it is not valid bz2 data"
    ))
}

struct ZlibDecoder(flate2::Decompress);

impl Decoder for ZlibDecoder {
    fn codec(&self) -> Codec {
        Codec::Zlib
    }

    fn step(&mut self, input: &[u8], output: &mut [u8]) -> Result<Step> {
        let (consumed, produced, status) = counted(&mut self.0, |decoder| {
            decoder
                .decompress(input, output, FlushDecompress::None)
                .map_err(zlib_error)
        })?;
        Ok(Step {
            consumed,
            produced,
            stream_end: status == flate2::Status::StreamEnd,
        })
    }

    fn start_next_stream(&mut self, leftover: &[u8]) -> Result<usize> {
        // A zlib stream is a whole file; bytes after it mean the input is not what was written.
        Err(Error::Corrupt(format!(
            "zlib: {} byte(s) of unexpected data follow the end of the compressed stream; \
             the data is not valid zlib data (or was joined to something else)",
            leftover.len()
        )))
    }
}

fn zlib_error(error: flate2::DecompressError) -> Error {
    let detail = error.message().unwrap_or("invalid deflate data");
    Error::Corrupt(format!(
        "zlib: the compressed data is corrupted ({detail}); it is not valid zlib data"
    ))
}

struct ZstdDecoder(zstd_safe::DCtx<'static>);

impl ZstdDecoder {
    fn new() -> Result<Self> {
        zstd_safe::DCtx::try_create()
            .map(ZstdDecoder)
            .ok_or_else(|| {
                Error::OutOfMemory("zstd: could not allocate a decompression context".into())
            })
    }
}

impl Decoder for ZstdDecoder {
    fn codec(&self) -> Codec {
        Codec::Zstd
    }

    fn step(&mut self, input: &[u8], output: &mut [u8]) -> Result<Step> {
        let mut input = InBuffer::around(input);
        let mut output = OutBuffer::around(output);
        let hint = self
            .0
            .decompress_stream(&mut output, &mut input)
            .map_err(|code| {
                Error::Corrupt(format!(
                    "zstd: the compressed data is invalid ({}); it is not valid zstd data",
                    zstd_safe::get_error_name(code)
                ))
            })?;
        // A hint of 0 means a frame was fully decoded and flushed.
        Ok(Step {
            consumed: input.pos(),
            produced: output.pos(),
            stream_end: hint == 0,
        })
    }

    fn start_next_stream(&mut self, _leftover: &[u8]) -> Result<usize> {
        // The context starts the next frame by itself: concatenated frames are one zstd stream.
        Ok(0)
    }
}

/// A zstd block holds at most 128 KiB and takes at least 4 bytes (an RLE block): no frame expands more.
const ZSTD_MAX_EXPANSION: usize = (128 << 10) / 4;

/// The total content size recorded in the headers of all zstd frames, if every frame records it
/// and the total is possible at all: a damaged header must not make a caller allocate memory the
/// data could never fill. (zstd reports skippable frames as empty.)
pub(super) fn zstd_content_size(data: &[u8]) -> Option<usize> {
    let mut total: usize = 0;
    let mut rest = data;
    while !rest.is_empty() {
        let frame_len = zstd_safe::find_frame_compressed_size(rest).ok()?;
        let frame_content = zstd_safe::get_frame_content_size(rest).ok()??;
        total = total.checked_add(usize::try_from(frame_content).ok()?)?;
        rest = rest.get(frame_len..)?;
    }
    (total <= data.len().saturating_mul(ZSTD_MAX_EXPANSION)).then_some(total)
}
