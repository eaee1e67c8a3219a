//! Reading a blob from a stream (a file) without holding the whole stored form in memory:
//! uncompressed segments are read straight into the caller's buffers, hashed chunk by chunk.
use super::header::{header_len, PRELUDE_LEN};
use super::{
    check_checksum, check_padding, decode_segment, decode_segment_into, decompress_checked,
    too_short, truncated, verify_payload, BlobHeader, Layout, ReadChecks, CHECKSUM_LEN, CHUNK,
};
use crate::error::{Error, Result};
use std::io::{self, Read, Seek, SeekFrom};
use xxhash_rust::xxh3::Xxh3Default;

/// The first read takes this much: the whole of a small blob (most results are small), so it
/// costs one read; the header, at least, of a large one.
const FIRST_READ: u64 = 64 * 1024;

/// A blob whose header has been read and verified; the segments are read on demand.
#[derive(Debug)]
pub struct BlobReader<R> {
    source: R,
    header: BlobHeader,
    header_len: u64,
    layout: Layout,
    /// The whole blob, when it came with the first read.
    whole: Option<Vec<u8>>,
}

impl<R: Read + Seek> BlobReader<R> {
    /// Reads and verifies the header. `source_len` is the stream's whole length (a file's size):
    /// a blob's length is fixed by its header, so truncation is caught before any payload is read.
    pub fn open(source: R, source_len: u64) -> Result<BlobReader<R>> {
        Self::open_with(source, source_len, &ReadChecks::default())
    }

    /// [`open`](Self::open) with the reader's checks (key, signature, decompressed size), all
    /// made before any segment is read.
    pub fn open_with(source: R, source_len: u64, checks: &ReadChecks<'_>) -> Result<BlobReader<R>> {
        Self::open_reading_first(source, source_len, FIRST_READ, checks)
    }

    /// `open` with the size of the first read chosen (tests use it to stream small blobs).
    pub(crate) fn open_reading_first(
        mut source: R,
        source_len: u64,
        first_read: u64,
        checks: &ReadChecks<'_>,
    ) -> Result<BlobReader<R>> {
        if source_len < PRELUDE_LEN as u64 {
            return Err(too_short(source_len as usize));
        }
        let mut head = vec![0; source_len.min(first_read.max(PRELUDE_LEN as u64)) as usize];
        read_exact_at(&mut source, 0, &mut head)?;
        let header_len = header_len(&head[..PRELUDE_LEN])?;
        if header_len as u64 > source_len {
            return Err(truncated(source_len, header_len as u64));
        }
        if header_len > head.len() {
            let read = head.len();
            head.resize(header_len, 0);
            read_exact(&mut source, &mut head[read..])?;
        }
        let header = BlobHeader::decode(&head[..header_len])?;
        let layout = Layout::new(&header, header_len as u64)?;
        layout.check_length(source_len)?;
        checks.check_header(&header)?;
        if checks.needs_trailer(&header) {
            let mut trailer = vec![0; (layout.trailer.end - layout.trailer.start) as usize];
            if head.len() as u64 == source_len {
                trailer.copy_from_slice(&head[layout.trailer.start as usize..]);
            } else {
                read_exact_at(&mut source, layout.trailer.start, &mut trailer)?;
            }
            checks.check_signature(&header, &head[..header_len - CHECKSUM_LEN], &trailer)?;
        }
        Ok(BlobReader {
            source,
            header,
            header_len: header_len as u64,
            layout,
            whole: (head.len() as u64 == source_len).then_some(head),
        })
    }

    pub fn header(&self) -> &BlobHeader {
        &self.header
    }

    pub fn into_header(self) -> BlobHeader {
        self.header
    }

    /// Reads, verifies and decodes every segment into `outputs`, one buffer per segment of
    /// exactly its raw length (see `header().segments`).
    pub fn read_segments_into(&mut self, outputs: &mut [&mut [u8]]) -> Result<()> {
        let raw_lengths: Vec<u64> = self.header.segments.iter().map(|s| s.raw).collect();
        let given: Vec<u64> = outputs.iter().map(|out| out.len() as u64).collect();
        if given != raw_lengths {
            return Err(Error::InvalidArgument(format!(
                "output buffers of {given:?} bytes given for segments of {raw_lengths:?} bytes"
            )));
        }
        let codec = self.header.codec;
        if let Some(whole) = &self.whole {
            // The header was decoded and checked when the blob was opened.
            let ranges = verify_payload(whole, self.header_len as usize, &self.layout)?;
            for (range, out) in ranges.into_iter().zip(outputs.iter_mut()) {
                decode_segment_into(codec, &whole[range], out)?;
            }
            return Ok(());
        }
        let mut scratch = Vec::new();
        let mut read_one = |index: usize, segment: SegmentSource<'_, R>| match codec {
            None => segment.read_into(outputs[index]),
            Some(_) => {
                decode_segment_into(codec, segment.read_to_vec(&mut scratch)?, outputs[index])
            }
        };
        Self::visit_segments(
            &mut self.source,
            &self.layout,
            self.header_len,
            &mut read_one,
        )
    }

    /// Reads, verifies and decodes every segment into a new buffer each.
    pub fn read_segments(&mut self) -> Result<Vec<Vec<u8>>> {
        if let Some(whole) = &self.whole {
            let ranges = verify_payload(whole, self.header_len as usize, &self.layout)?;
            let header = &self.header;
            return (ranges.into_iter().enumerate())
                .map(
                    |(index, range)| Ok(decode_segment(header, index, &whole[range])?.into_owned()),
                )
                .collect();
        }
        let mut segments = Vec::with_capacity(self.header.segments.len());
        let header = &self.header;
        let mut scratch = Vec::new();
        let mut read_one = |index: usize, segment: SegmentSource<'_, R>| -> Result<()> {
            let raw_len = header.segments[index].raw;
            segments.push(match header.codec {
                None => {
                    // Bounded by the file's length, which was checked against the header.
                    let mut raw = vec![0; raw_len as usize];
                    segment.read_into(&mut raw)?;
                    raw
                }
                // Bounded by the raw length the (verified) header records.
                Some(codec) => {
                    decompress_checked(codec, segment.read_to_vec(&mut scratch)?, raw_len)?
                }
            });
            Ok(())
        };
        Self::visit_segments(
            &mut self.source,
            &self.layout,
            self.header_len,
            &mut read_one,
        )?;
        Ok(segments)
    }

    /// Reads the trailer first, so each segment is verified before anything decodes it.
    fn visit_segments(
        source: &mut R,
        layout: &Layout,
        header_len: u64,
        accept: &mut dyn FnMut(usize, SegmentSource<'_, R>) -> Result<()>,
    ) -> Result<()> {
        let mut trailer = vec![0; (layout.trailer.end - layout.trailer.start) as usize];
        read_exact_at(source, layout.trailer.start, &mut trailer)?;
        source
            .seek(SeekFrom::Start(header_len))
            .map_err(read_error)?;
        read_padding(source, layout.payload_start - header_len, "the header")?;
        for (index, extent) in layout.segments.iter().enumerate() {
            let stored_len = extent.data.end - extent.data.start;
            accept(
                index,
                SegmentSource {
                    source,
                    index,
                    stored_len,
                    trailer: &trailer,
                },
            )?;
            read_padding(
                source,
                extent.padded_end - extent.data.end,
                &format!("segment {index}"),
            )?;
        }
        Ok(())
    }
}

/// One stored segment, positioned at its first byte, with the checksum it must match.
struct SegmentSource<'a, R> {
    source: &'a mut R,
    index: usize,
    stored_len: u64,
    trailer: &'a [u8],
}

impl<R: Read> SegmentSource<'_, R> {
    /// Reads the stored bytes into `out` (exactly their length) and verifies them.
    fn read_into(self, out: &mut [u8]) -> Result<()> {
        debug_assert_eq!(out.len() as u64, self.stored_len);
        let checksum = read_hashing_in_line(self.source, out)?;
        check_checksum(self.index, checksum, self.trailer)
    }

    fn read_to_vec(self, scratch: &mut Vec<u8>) -> Result<&[u8]> {
        scratch.clear();
        // Bounded by the file's length, which was checked against the header.
        scratch.resize(self.stored_len as usize, 0);
        self.read_into(scratch)?;
        Ok(scratch)
    }
}

/// Hashes each chunk right after it lands, while it is in cache. (Unlike writing, reading gains
/// nothing measurable from hashing on a second thread: the copy out of the OS's cache into fresh
/// memory dominates.)
fn read_hashing_in_line(source: &mut impl Read, out: &mut [u8]) -> Result<u64> {
    let mut hasher = Xxh3Default::new();
    for chunk in out.chunks_mut(CHUNK) {
        read_exact(source, chunk)?;
        hasher.update(chunk);
    }
    Ok(hasher.digest())
}

fn read_padding(source: &mut impl Read, len: u64, after: &str) -> Result<()> {
    let mut padding = vec![0; len as usize];
    read_exact(source, &mut padding)?;
    check_padding(&padding, after)
}

fn read_exact_at<R: Read + Seek>(source: &mut R, offset: u64, out: &mut [u8]) -> Result<()> {
    source.seek(SeekFrom::Start(offset)).map_err(read_error)?;
    read_exact(source, out)
}

/// The length was checked up front, so running out of bytes means the blob shrank while read.
fn read_exact(source: &mut impl Read, out: &mut [u8]) -> Result<()> {
    source.read_exact(out).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => Error::Corrupt(
            "the blob ended early: it was truncated while being read; delete it so the result is computed again"
                .into(),
        ),
        _ => read_error(e),
    })
}

fn read_error(source: io::Error) -> Error {
    Error::io("reading the blob failed", source)
}
