//! The binary format of a persisted result (a "blob"): a checksummed, self-describing header,
//! the payload as aligned segments, and a trailer of per-segment checksums.
//! The byte layout and the versioning rule are specified in `docs/format.md`.
//!
//! Writing is a single pass with the checksums going to the trailer at the end: small segments
//! are hashed chunk by chunk just before each chunk is written, while it is in cache; large ones
//! on a helper thread while they are written. A header needs the stored lengths, so compressed
//! segments are all compressed (in memory) before the first byte is written.
//! Every read verifies the header, the padding and every segment before returning any data.
mod header;
mod implied;
mod reader;
mod signing;

pub(crate) use header::PRELUDE_LEN;
pub use header::{BlobHeader, SegmentLengths, Signature, MAC_ALGORITHM};
pub use reader::BlobReader;
pub use signing::{ReadChecks, SigningKey, MIN_KEY_MATERIAL};

use crate::codec::{self, Codec, CompressOptions};
use crate::error::{Error, Result};
use std::borrow::Cow;
use std::io::{self, Seek, SeekFrom, Write};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use xxhash_rust::xxh3::{xxh3_64, Xxh3Default};

/// Version of the format this build writes; it reads every `FORMAT_MAJOR.x`.
pub const FORMAT_MAJOR: u16 = 1;
/// 1.1 added the optional `key`, `codec_skipped` and `signature` fields.
pub const FORMAT_MINOR: u16 = 1;
/// Format 2.0 is 1.1 with a compact header body (see `docs/format.md`), written for small
/// unsigned blobs when asked for; a 1.x-only reader refuses it saying to upgrade.
pub const COMPACT_MAJOR: u16 = 2;
/// Format 3.0 is 2.0 with the serializer's description shortened: the members that hold their
/// implied value (a table frozen with the format, see `docs/format.md`) are left out, and put
/// back on reading. A reader of 1.x and 2.x only refuses it saying to upgrade, instead of
/// reading a short description as if it were whole.
pub const IMPLIED_MAJOR: u16 = 3;
/// Opens every blob. Like PNG's signature, the high byte and CR LF catch text-mode transfers.
pub const MAGIC: [u8; 8] = *b"\x89FFB\r\n\x1a\n";
/// Segments start at multiples of this, so NumPy can use any dtype in place from a memory map.
pub const ALIGNMENT: u64 = 64;
/// Blobs whose stored payload is smaller than [`SMALL_PAYLOAD`] are always read whole into new
/// buffers, never used in place, so their segments are aligned only to this: a tiny result's file
/// is not mostly padding.
pub const SMALL_ALIGNMENT: u64 = 8;
pub const SMALL_PAYLOAD: u64 = 4096;
pub const CHECKSUM_ALGORITHM: &str = "xxh3-64";
const CHECKSUM_LEN: usize = 8;
/// Data is hashed and copied in pieces of this size, small enough to stay in the L2 cache
/// between hashing and writing.
pub(crate) const CHUNK: usize = 256 * 1024;

/// The codec named `name`, where `"none"` means no compression.
pub fn codec_from_name(name: &str) -> Result<Option<Codec>> {
    if name == header::NO_CODEC {
        return Ok(None);
    }
    Codec::from_name(name).map(Some).map_err(|_| {
        let known: Vec<&str> = Codec::ALL.iter().map(|c| c.name()).collect();
        Error::InvalidArgument(format!(
            "unknown codec {name:?}; choose \"none\" or one of: {}",
            known.join(", ")
        ))
    })
}

/// What the writer needs besides the segments.
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameOptions<'a> {
    /// The serializer's description as JSON text, stored verbatim in the header.
    pub serializer: &'a str,
    /// `None` stores the segments as they are.
    pub codec: Option<Codec>,
    pub compress: CompressOptions,
    /// The storage key, recorded so that a reader can refuse a file copied or moved elsewhere.
    pub key: Option<&'a str>,
    /// Signs the blob (see `docs/format.md`, "Signed blobs").
    pub signing_key: Option<&'a SigningKey>,
    /// Write a small unsigned blob (stored payload under [`SMALL_PAYLOAD`]) with the compact
    /// header: in format 3.0 when its serializer description can be shortened, otherwise in 2.0.
    /// A tiny result's file then carries at most about 250 bytes besides its payload (instead of
    /// 350 to 600 with the 1.1 header, depending on the serializer). Off, every blob is written
    /// in format 1.1, which 1.0 readers read.
    pub compact_small: bool,
}

/// A blob ready to be written: the header is encoded and compressed segments are computed;
/// uncompressed segments stay borrowed from the caller.
#[derive(Debug)]
pub struct Frame<'a> {
    header: BlobHeader,
    /// With a signing key, the header carries a MAC of zeros until the trailer is known.
    header_bytes: Vec<u8>,
    stored: Vec<Cow<'a, [u8]>>,
    signing_key: Option<SigningKey>,
}

impl<'a> Frame<'a> {
    pub fn new(segments: &[&'a [u8]], options: &FrameOptions<'_>) -> Result<Frame<'a>> {
        // Arguments are checked before any segment is compressed.
        match options.codec {
            None if options.compress.level.is_some() => return Err(Error::InvalidArgument(
                "a compression level was given without a codec; pass codec= as well, or drop level"
                    .into(),
            )),
            None => {}
            Some(codec) => {
                codec.resolve_level(options.compress.level)?;
            }
        }
        let mut header = BlobHeader::new(options)?;
        let mut stored = segments
            .iter()
            .map(|segment| store_segment(segment, options))
            .collect::<Result<Vec<_>>>()?;
        let total =
            |segments: &[Cow<'_, [u8]>]| segments.iter().map(|s| s.len() as u64).sum::<u64>();
        let raw_total: u64 = segments.iter().map(|s| s.len() as u64).sum::<u64>();
        if options.codec.is_some() && total(&stored) >= raw_total {
            // Compression would not make the payload smaller: store it as it is, and say so.
            stored = segments.iter().map(|s| Cow::Borrowed(*s)).collect();
            header.codec_skipped = header.codec.take();
            header.level = None;
        }
        let mut short_serializer = None;
        if total(&stored) < SMALL_PAYLOAD {
            header.alignment = SMALL_ALIGNMENT;
            if options.compact_small && options.signing_key.is_none() {
                // Format 2.0 keeps a description that 3.0 could not restore exactly readable by
                // 2.x readers.
                short_serializer = header.short_serializer();
                let major = if short_serializer.is_some() {
                    IMPLIED_MAJOR
                } else {
                    COMPACT_MAJOR
                };
                header.format_version = (major, 0);
            }
        }
        header.segments = segments
            .iter()
            .zip(&stored)
            .map(|(raw, stored)| SegmentLengths {
                raw: raw.len() as u64,
                stored: stored.len() as u64,
            })
            .collect();
        let header_bytes = header.encode(short_serializer.as_deref())?;
        Ok(Frame {
            header,
            header_bytes,
            stored,
            signing_key: options.signing_key.cloned(),
        })
    }

    pub fn header(&self) -> &BlobHeader {
        &self.header
    }

    /// The exact number of bytes `write_to` produces.
    pub fn encoded_len(&self) -> u64 {
        let payload: u64 = self
            .stored
            .iter()
            .map(|s| align_up(s.len() as u64, self.header.alignment))
            .sum();
        self.header_bytes.len() as u64 + payload + (CHECKSUM_LEN * self.stored.len()) as u64
    }

    /// Writes the blob in one pass to a file or a buffer, and returns its header as written. A
    /// signed blob's header is written again at the end, over the first, once the trailer it
    /// covers is known: a seek back rather than a second pass over the data.
    pub fn write_to<W: Write + Seek + ?Sized>(&self, out: &mut W) -> io::Result<BlobHeader> {
        let start = out.stream_position()?;
        let trailer = self.write_with_header(out, &self.header_bytes)?;
        match self.signed_header(&trailer) {
            None => Ok(self.header.clone()),
            Some((header, bytes)) => {
                out.seek(SeekFrom::Start(start))?;
                out.write_all(&bytes)?;
                out.seek(SeekFrom::Start(start + self.encoded_len()))?;
                Ok(header)
            }
        }
    }

    /// Writes the blob strictly in order, to a stream that cannot seek (an upload). A signed
    /// blob's segments are then hashed before the header is written: one more pass over them.
    pub fn write_streaming<W: Write + ?Sized>(&self, out: &mut W) -> io::Result<BlobHeader> {
        if self.signing_key.is_none() {
            self.write_with_header(out, &self.header_bytes)?;
            return Ok(self.header.clone());
        }
        let checksums: Vec<u64> = self.stored.iter().map(|s| xxh3_64(s)).collect();
        let (header, bytes) = self
            .signed_header(&trailer_bytes(&checksums))
            .expect("a signing key gives a signed header");
        self.write_with_header(out, &bytes)?;
        Ok(header)
    }

    /// The header with its MAC, and its encoding, for a signed blob whose trailer is `trailer`.
    fn signed_header(&self, trailer: &[u8]) -> Option<(BlobHeader, Vec<u8>)> {
        let key = self.signing_key.as_ref()?;
        let covered = &self.header_bytes[..self.covered_len()];
        let mut header = self.header.clone();
        let signature = header
            .signature
            .as_mut()
            .expect("signed frames carry a signature");
        signature.mac = key.mac(covered, trailer);
        let bytes = header
            .encode(None)
            .expect("the same header encoded once already (signed: format 1.x)");
        debug_assert_eq!(bytes.len(), self.header_bytes.len());
        Some((header, bytes))
    }

    /// The prelude and body of the header: what the header checksum (and the MAC) covers.
    fn covered_len(&self) -> usize {
        let body_len = u32::from_le_bytes(self.header_bytes[12..16].try_into().expect("4 bytes"));
        PRELUDE_LEN + body_len as usize
    }

    /// Writes `header`, the segments and the trailer; returns the trailer.
    fn write_with_header<W: Write + ?Sized>(
        &self,
        out: &mut W,
        header: &[u8],
    ) -> io::Result<Vec<u8>> {
        out.write_all(header)?;
        let large: Vec<&[u8]> = self
            .stored
            .iter()
            .filter(|s| s.len() >= HASH_ASIDE_MIN)
            .map(|s| &s[..])
            .collect();
        let checksums = if large.is_empty() {
            merge_checksums(self.write_segments(out, true)?, Vec::new())
        } else {
            self.write_segments_hashing_aside(out, &large)?
        };
        let trailer = trailer_bytes(&checksums);
        out.write_all(&trailer)?;
        Ok(trailer)
    }

    /// Writes every segment and its padding. Small segments (and large ones when
    /// `hash_large_here`) are hashed chunk by chunk as they are written; the others get `None`.
    fn write_segments<W: Write + ?Sized>(
        &self,
        out: &mut W,
        hash_large_here: bool,
    ) -> io::Result<Vec<Option<u64>>> {
        let mut checksums = Vec::with_capacity(self.stored.len());
        for segment in &self.stored {
            if segment.len() >= HASH_ASIDE_MIN && !hash_large_here {
                out.write_all(segment)?;
                checksums.push(None);
            } else {
                checksums.push(Some(write_hashed(out, segment)?));
            }
            let padding = padding_after(segment.len() as u64, self.header.alignment);
            out.write_all(&ZEROS[..padding])?;
        }
        Ok(checksums)
    }

    /// Hashes the large segments on a helper thread while this one writes them. Writing is a
    /// memory copy into the OS's cache; with the hash beside it instead of in front of it, a
    /// framed write takes about as long as a plain one whenever a second core is free.
    fn write_segments_hashing_aside<W: Write + ?Sized>(
        &self,
        out: &mut W,
        large: &[&[u8]],
    ) -> io::Result<Vec<u64>> {
        let stop = AtomicBool::new(false);
        thread::scope(|scope| {
            let helper = thread::Builder::new()
                .name("ferroflow-checksum".into())
                .spawn_scoped(scope, || hash_segments(large, &stop));
            let Ok(helper) = helper else {
                // No thread to be had: hash in line, as for small segments.
                return Ok(merge_checksums(self.write_segments(out, true)?, Vec::new()));
            };
            let written = self.write_segments(out, false);
            if written.is_err() {
                stop.store(true, Ordering::Relaxed);
            }
            let aside = helper
                .join()
                .map_err(|_| io::Error::other("the checksum thread failed"))?;
            Ok(merge_checksums(written?, aside))
        })
    }

    /// The blob as the pieces `write_to` writes one after another, for a writer that sends
    /// them without copying: the encoded header, then each stored segment (borrowed when
    /// uncompressed) and the zero padding after it, then the trailer of checksums. Every
    /// checksum is known before the first piece is sent, so a signed blob's header comes with
    /// its MAC already in place: the same bytes `write_to` leaves in a file.
    pub fn into_pieces(self) -> FramePieces<'a> {
        let checksums: Vec<u64> = self.stored.iter().map(|s| xxh3_64(s)).collect();
        let trailer = trailer_bytes(&checksums);
        let alignment = self.header.alignment;
        let (header, header_bytes) = match self.signed_header(&trailer) {
            Some(signed) => signed,
            None => (self.header, self.header_bytes),
        };
        let segments = self
            .stored
            .into_iter()
            .map(|segment| {
                let padding = padding_after(segment.len() as u64, alignment);
                (segment, &ZEROS[..padding])
            })
            .collect();
        FramePieces {
            header,
            header_bytes,
            segments,
            trailer,
        }
    }

    /// The blob as one buffer, and its header as written.
    pub fn to_vec(&self) -> (BlobHeader, Vec<u8>) {
        let mut out = io::Cursor::new(Vec::with_capacity(self.encoded_len() as usize));
        let header = self
            .write_to(&mut out)
            .expect("writing to a Vec cannot fail");
        (header, out.into_inner())
    }
}

fn trailer_bytes(checksums: &[u64]) -> Vec<u8> {
    checksums
        .iter()
        .flat_map(|checksum| checksum.to_le_bytes())
        .collect()
}

const ZEROS: [u8; ALIGNMENT as usize] = [0; ALIGNMENT as usize];

/// A framed blob in pieces ([`Frame::into_pieces`]); their concatenation is the blob.
#[derive(Debug)]
pub struct FramePieces<'a> {
    pub header: BlobHeader,
    pub header_bytes: Vec<u8>,
    /// Each stored segment and the zeros that follow it.
    pub segments: Vec<(Cow<'a, [u8]>, &'static [u8])>,
    pub trailer: Vec<u8>,
}

fn store_segment<'a>(segment: &'a [u8], options: &FrameOptions<'_>) -> Result<Cow<'a, [u8]>> {
    match options.codec {
        None => Ok(Cow::Borrowed(segment)),
        Some(codec) => codec::compress(codec, segment, &options.compress).map(Cow::Owned),
    }
}

/// Segments at least this large are hashed beside the write rather than in line with it.
const HASH_ASIDE_MIN: usize = 1 << 20;

/// Fills the `None`s of `written` (segments hashed aside) with `aside`, in order.
fn merge_checksums(written: Vec<Option<u64>>, aside: Vec<u64>) -> Vec<u64> {
    let mut aside = aside.into_iter();
    written
        .into_iter()
        .map(|checksum| {
            checksum
                .or_else(|| aside.next())
                .expect("one checksum computed aside per large segment")
        })
        .collect()
}

/// The XXH3-64 of each segment; gives up early (with meaningless results) once `stop` is set.
fn hash_segments(segments: &[&[u8]], stop: &AtomicBool) -> Vec<u64> {
    segments
        .iter()
        .map(|segment| {
            let mut hasher = Xxh3Default::new();
            for chunk in segment.chunks(4 * CHUNK) {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                hasher.update(chunk);
            }
            hasher.digest()
        })
        .collect()
}

fn write_hashed<W: Write + ?Sized>(out: &mut W, data: &[u8]) -> io::Result<u64> {
    let mut hasher = Xxh3Default::new();
    for chunk in data.chunks(CHUNK) {
        hasher.update(chunk);
        out.write_all(chunk)?;
    }
    Ok(hasher.digest())
}

/// Frames `segments` into one buffer.
pub fn frame(segments: &[&[u8]], options: &FrameOptions<'_>) -> Result<(BlobHeader, Vec<u8>)> {
    Ok(Frame::new(segments, options)?.to_vec())
}

/// Verifies a whole blob held in memory and returns its header and stored segments.
/// For an uncompressed blob the stored segments are the raw ones; otherwise use
/// [`decode_segment_into`] or [`decode_segment`].
pub fn unframe(data: &[u8]) -> Result<(BlobHeader, Vec<&[u8]>)> {
    unframe_with(data, &ReadChecks::default())
}

/// [`unframe`] with the reader's checks (key, signature, decompressed size) made first.
pub fn unframe_with<'d>(
    data: &'d [u8],
    checks: &ReadChecks<'_>,
) -> Result<(BlobHeader, Vec<&'d [u8]>)> {
    let (header, ranges) = verify_with(data, checks)?;
    let segments = ranges.into_iter().map(|range| &data[range]).collect();
    Ok((header, segments))
}

/// The length of a blob's header (prelude, body, checksum) from its first [`PRELUDE_LEN`] bytes;
/// refuses anything that does not start with the blob signature.
pub(crate) fn header_len_from_prelude(prelude: &[u8]) -> Result<usize> {
    header::header_len(prelude)
}

/// Verifies the header at the start of `head` (which holds at least `header_len` bytes) of a blob
/// that is `blob_len` bytes long: the header's checksum and version, and that its lengths add up to
/// `blob_len`, so truncation is caught before any payload is fetched. Then makes the reader's
/// `checks`, as [`BlobReader::open_with`] does; when a signature is to be verified, the trailer
/// is taken from `head` if it holds it, otherwise from `fetch_trailer` (given its byte range).
pub(crate) fn verify_header(
    head: &[u8],
    header_len: usize,
    blob_len: u64,
    checks: &ReadChecks<'_>,
    fetch_trailer: impl FnOnce(Range<u64>) -> Result<Vec<u8>>,
) -> Result<BlobHeader> {
    let header_bytes = head
        .get(..header_len)
        .ok_or_else(|| truncated(head.len() as u64, header_len as u64))?;
    let header = BlobHeader::decode(header_bytes)?;
    let layout = Layout::new(&header, header_len as u64)?;
    layout.check_length(blob_len)?;
    checks.check_header(&header)?;
    if checks.needs_trailer(&header) {
        let range = layout.trailer.clone();
        let trailer = match to_usize(range.clone()) {
            Ok((start, end)) if end <= head.len() => head[start..end].to_vec(),
            _ => fetch_trailer(range)?,
        };
        checks.check_signature(
            &header,
            &header_bytes[..header_len - CHECKSUM_LEN],
            &trailer,
        )?;
    }
    Ok(header)
}

/// Like [`unframe`], returning where each stored segment lies in `data`.
pub fn verify(data: &[u8]) -> Result<(BlobHeader, Vec<Range<usize>>)> {
    verify_with(data, &ReadChecks::default())
}

/// [`verify`] with the reader's checks, made before any segment is looked at.
pub fn verify_with(
    data: &[u8],
    checks: &ReadChecks<'_>,
) -> Result<(BlobHeader, Vec<Range<usize>>)> {
    let (header, header_len, layout) = header_and_layout(data)?;
    layout.check_length(data.len() as u64)?;

    checks.check_header(&header)?;
    if checks.needs_trailer(&header) {
        let (trailer_start, _) = to_usize(layout.trailer.clone())?;
        checks.check_signature(
            &header,
            &data[..header_len - CHECKSUM_LEN],
            &data[trailer_start..],
        )?;
    }
    let ranges = verify_payload(data, header_len, &layout)?;
    Ok((header, ranges))
}

/// The header at the start of `data`, its length, and the layout of the blob it describes.
fn header_and_layout(data: &[u8]) -> Result<(BlobHeader, usize, Layout)> {
    let prelude = data
        .get(..header::PRELUDE_LEN)
        .ok_or_else(|| too_short(data.len()))?;
    let header_len = header::header_len(prelude)?;
    let header_bytes = data
        .get(..header_len)
        .ok_or_else(|| truncated(data.len() as u64, header_len as u64))?;
    let header = BlobHeader::decode(header_bytes)?;
    let layout = Layout::new(&header, header_len as u64)?;
    Ok((header, header_len, layout))
}

/// [`verify_with`] for a blob received with one segment apart: `data` is the blob without the
/// stored bytes of segment `apart`, which are `apart_bytes` (so what followed that segment starts
/// in `data` where the segment did). Returns where each stored segment lies in `data`; the
/// segment apart gets an empty range there.
pub fn verify_with_segment_apart(
    data: &[u8],
    apart: usize,
    apart_bytes: &[u8],
    checks: &ReadChecks<'_>,
) -> Result<(BlobHeader, Vec<Range<usize>>)> {
    let (header, header_len, layout) = header_and_layout(data)?;
    layout.check_length(data.len() as u64 + apart_bytes.len() as u64)?;
    let gap = match layout.segments.get(apart) {
        Some(extent) if extent.data.end - extent.data.start == apart_bytes.len() as u64 => {
            extent.data.clone()
        }
        _ => {
            return Err(Error::InvalidArgument(format!(
                "segment {apart} of {} bytes is not one of the blob's",
                apart_bytes.len()
            )))
        }
    };
    // Where a range of the blob lies in `data`: before the gap, or moved back by its length.
    let in_data = |range: Range<u64>| {
        let shift = if range.start >= gap.end {
            gap.end - gap.start
        } else {
            0
        };
        to_usize(range.start - shift..range.end - shift).map(|(start, end)| start..end)
    };
    checks.check_header(&header)?;
    let trailer = in_data(layout.trailer.clone())?;
    if checks.needs_trailer(&header) {
        checks.check_signature(
            &header,
            &data[..header_len - CHECKSUM_LEN],
            &data[trailer.clone()],
        )?;
    }
    let checksums = &data[trailer];
    let (header_end, payload_start) = to_usize(header_len as u64..layout.payload_start)?;
    check_padding(&data[header_end..payload_start], "the header")?;
    let mut ranges = Vec::with_capacity(layout.segments.len());
    for (index, extent) in layout.segments.iter().enumerate() {
        let range = if index == apart {
            let start = in_data(extent.data.clone())?.start;
            start..start
        } else {
            in_data(extent.data.clone())?
        };
        let stored = if index == apart {
            apart_bytes
        } else {
            &data[range.clone()]
        };
        check_checksum(index, xxh3_64(stored), checksums)?;
        let padding = in_data(extent.data.end..extent.padded_end)?;
        check_padding(&data[padding], &format!("segment {index}"))?;
        ranges.push(range);
    }
    Ok((header, ranges))
}

/// Verifies the padding and the segments of a blob held in memory whose header (`header_len`
/// bytes) was decoded into `layout` and whose length was checked against it; returns where each
/// stored segment lies.
pub(crate) fn verify_payload(
    data: &[u8],
    header_len: usize,
    layout: &Layout,
) -> Result<Vec<Range<usize>>> {
    let (trailer_start, _) = to_usize(layout.trailer.clone())?;
    let checksums = &data[trailer_start..];
    let (header_end, payload_start) = to_usize(header_len as u64..layout.payload_start)?;
    check_padding(&data[header_end..payload_start], "the header")?;
    let mut ranges = Vec::with_capacity(layout.segments.len());
    for (index, extent) in layout.segments.iter().enumerate() {
        let (start, end) = to_usize(extent.data.clone())?;
        let (_, padded_end) = to_usize(extent.data.start..extent.padded_end)?;
        check_checksum(index, xxh3_64(&data[start..end]), checksums)?;
        check_padding(&data[end..padded_end], &format!("segment {index}"))?;
        ranges.push(start..end);
    }
    Ok(ranges)
}

/// Decodes a verified stored segment into `out`, which must be exactly the raw length.
pub fn decode_segment_into(codec: Option<Codec>, stored: &[u8], out: &mut [u8]) -> Result<()> {
    let Some(codec) = codec else {
        if stored.len() != out.len() {
            return Err(Error::InvalidArgument(format!(
                "output of {} bytes given for a segment of {} bytes",
                out.len(),
                stored.len()
            )));
        }
        out.copy_from_slice(stored);
        return Ok(());
    };
    match codec::decompress_into(codec, stored, out)? {
        Some(written) if written == out.len() => Ok(()),
        Some(written) => Err(length_mismatch(
            codec,
            &written.to_string(),
            out.len() as u64,
        )),
        None => Err(length_mismatch(codec, "more", out.len() as u64)),
    }
}

/// Decodes verified stored segment `index`; borrows it when the blob is uncompressed.
pub fn decode_segment<'a>(
    header: &BlobHeader,
    index: usize,
    stored: &'a [u8],
) -> Result<Cow<'a, [u8]>> {
    match header.codec {
        None => Ok(Cow::Borrowed(stored)),
        Some(codec) => {
            decompress_checked(codec, stored, header.segments[index].raw).map(Cow::Owned)
        }
    }
}

/// Decompresses a segment, refusing to produce more than the header records.
fn decompress_checked(codec: Codec, stored: &[u8], raw_len: u64) -> Result<Vec<u8>> {
    let limit = usize::try_from(raw_len).unwrap_or(usize::MAX);
    let raw =
        codec::decompress_at_most(codec, stored, Some(limit), limit).map_err(|e| match e {
            Error::OutputLimit(_) => length_mismatch(codec, "more", raw_len),
            other => other,
        })?;
    if raw.len() as u64 == raw_len {
        Ok(raw)
    } else {
        Err(length_mismatch(codec, &raw.len().to_string(), raw_len))
    }
}

fn length_mismatch(codec: Codec, actual: &str, recorded: u64) -> Error {
    Error::Corrupt(format!(
        "a {} segment decompressed to {actual} bytes, but the header records {recorded}; the blob is corrupted, \
         delete it so the result is computed again",
        codec.name()
    ))
}

/// Where everything lies in a blob, computed from its header.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub payload_start: u64,
    pub segments: Vec<SegmentExtent>,
    pub trailer: Range<u64>,
}

#[derive(Debug, Clone)]
pub(crate) struct SegmentExtent {
    pub data: Range<u64>,
    pub padded_end: u64,
}

impl Layout {
    pub fn new(header: &BlobHeader, header_len: u64) -> Result<Layout> {
        let overflow = || {
            Error::Corrupt(
                "the header records lengths too large for any file; the blob is corrupted".into(),
            )
        };
        let alignment = header.alignment;
        let payload_start = checked_align_up(header_len, alignment).ok_or_else(overflow)?;
        let mut offset = payload_start;
        let mut segments = Vec::with_capacity(header.segments.len());
        for lengths in &header.segments {
            let end = offset.checked_add(lengths.stored).ok_or_else(overflow)?;
            let padded_end = checked_align_up(end, alignment).ok_or_else(overflow)?;
            segments.push(SegmentExtent {
                data: offset..end,
                padded_end,
            });
            offset = padded_end;
        }
        let trailer_len = (header.segments.len() as u64)
            .checked_mul(CHECKSUM_LEN as u64)
            .ok_or_else(overflow)?;
        let trailer = offset..offset.checked_add(trailer_len).ok_or_else(overflow)?;
        Ok(Layout {
            payload_start,
            segments,
            trailer,
        })
    }

    pub fn total_len(&self) -> u64 {
        self.trailer.end
    }

    /// A blob's length is fixed by its header: anything else is truncation or trailing garbage.
    pub fn check_length(&self, actual: u64) -> Result<()> {
        let expected = self.total_len();
        if actual < expected {
            Err(truncated(actual, expected))
        } else if actual > expected {
            Err(Error::Corrupt(format!(
                "the blob has {} unexpected bytes after its end ({actual} bytes, the header describes {expected}); \
                 something else wrote to it, delete it so the result is computed again",
                actual - expected
            )))
        } else {
            Ok(())
        }
    }
}

pub(crate) fn check_checksum(index: usize, actual: u64, trailer: &[u8]) -> Result<()> {
    let stored = &trailer[index * CHECKSUM_LEN..(index + 1) * CHECKSUM_LEN];
    let expected = u64::from_le_bytes(stored.try_into().expect("8-byte slice"));
    if actual == expected {
        Ok(())
    } else {
        Err(Error::Corrupt(format!(
            "segment {index} of the blob failed its {CHECKSUM_ALGORITHM} checksum \
             (stored {expected:016x}, computed {actual:016x}): the blob is corrupted; \
             delete it so the result is computed again"
        )))
    }
}

pub(crate) fn check_padding(padding: &[u8], after: &str) -> Result<()> {
    if padding.iter().all(|&byte| byte == 0) {
        Ok(())
    } else {
        Err(Error::Corrupt(format!(
            "the padding after {after} is not zero: the blob is corrupted; delete it so the result is computed again"
        )))
    }
}

pub(crate) fn too_short(len: usize) -> Error {
    Error::Corrupt(format!(
        "{len} bytes are too few for a ferroflow blob (the header alone takes more); \
         the blob is truncated, delete it so the result is computed again"
    ))
}

pub(crate) fn truncated(actual: u64, expected: u64) -> Error {
    Error::Corrupt(format!(
        "the blob is truncated: it has {actual} bytes but its header needs at least {expected}; \
         it was not fully written, delete it so the result is computed again"
    ))
}

fn to_usize(range: Range<u64>) -> Result<(usize, usize)> {
    let convert = |n: u64| {
        usize::try_from(n)
            .map_err(|_| Error::Corrupt("the blob is larger than this platform can address".into()))
    };
    Ok((convert(range.start)?, convert(range.end)?))
}

pub(crate) fn align_up(n: u64, alignment: u64) -> u64 {
    checked_align_up(n, alignment).expect("lengths of data held in memory cannot overflow u64")
}

fn checked_align_up(n: u64, alignment: u64) -> Option<u64> {
    Some(n.checked_add(alignment - 1)? & !(alignment - 1))
}

pub(crate) fn padding_after(len: u64, alignment: u64) -> usize {
    (align_up(len, alignment) - len) as usize
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
