//! Files: atomic writes, whole-file reads, blobs on disk and storage keys.
mod atomic;
mod keys;

pub use atomic::{atomic_write, atomic_write_with, is_temporary_file_name};
pub(crate) use keys::key_parts;
pub use keys::resolve_key;

use crate::error::{Error, Result};
use crate::frame::{self, BlobHeader, BlobReader, Frame, FrameOptions, ReadChecks};
use memmap2::{MmapMut, MmapOptions};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::ops::Range;
use std::path::Path;

/// Frames `segments` and writes them atomically to `path` in one pass, creating missing folders.
pub fn write_blob(
    path: &Path,
    segments: &[&[u8]],
    options: &FrameOptions<'_>,
    durable: bool,
) -> Result<BlobHeader> {
    let frame = Frame::new(segments, options)?;
    let mut written = None;
    atomic_write_with(path, durable, |out| {
        written = Some(frame.write_to(out)?);
        Ok(())
    })?;
    Ok(written.expect("set by a successful write"))
}

/// Opens a blob file and verifies its header and length, and makes the reader's `checks`; the
/// payload is not read yet.
pub fn open_blob<'a>(path: &'a Path, checks: &ReadChecks<'_>) -> Result<BlobFile<'a>> {
    FileReader::open(path)?.into_blob(checks)
}

/// A blob file with a verified header; its errors name the file.
#[derive(Debug)]
pub struct BlobFile<'a> {
    path: &'a Path,
    reader: BlobReader<File>,
}

impl BlobFile<'_> {
    pub fn header(&self) -> &BlobHeader {
        self.reader.header()
    }

    pub fn into_header(self) -> BlobHeader {
        self.reader.into_header()
    }

    /// See [`BlobReader::read_segments_into`].
    pub fn read_segments_into(&mut self, outputs: &mut [&mut [u8]]) -> Result<()> {
        self.reader
            .read_segments_into(outputs)
            .map_err(|e| at_path(e, self.path))
    }

    pub fn read_segments(&mut self) -> Result<Vec<Vec<u8>>> {
        self.reader
            .read_segments()
            .map_err(|e| at_path(e, self.path))
    }
}

pub fn read_header(path: &Path, checks: &ReadChecks<'_>) -> Result<BlobHeader> {
    open_blob(path, checks).map(BlobFile::into_header)
}

/// Reads and verifies a whole blob; every segment is decoded into its own buffer.
pub fn read_blob(path: &Path, checks: &ReadChecks<'_>) -> Result<(BlobHeader, Vec<Vec<u8>>)> {
    let mut blob = open_blob(path, checks)?;
    let segments = blob.read_segments()?;
    Ok((blob.into_header(), segments))
}

/// A verified blob in memory: uncompressed segments stay in place in a private memory map.
#[derive(Debug)]
pub struct MappedBlob {
    pub header: BlobHeader,
    pub segments: MappedSegments,
}

#[derive(Debug)]
pub enum MappedSegments {
    /// Ranges of a copy-on-write map: writing to it never changes the file.
    InPlace {
        map: MmapMut,
        ranges: Vec<Range<usize>>,
    },
    /// A compressed blob's segments, decompressed.
    Decoded(Vec<Vec<u8>>),
}

/// Maps a blob privately (copy-on-write) and verifies all of it.
///
/// Like every memory map, the views assume the file is not truncated while they live; ferroflow
/// itself never truncates a blob in place (writes replace it by renaming).
pub fn map_blob(path: &Path, checks: &ReadChecks<'_>) -> Result<MappedBlob> {
    FileReader::open(path)?.map_blob(checks)
}

fn map_open_blob(
    path: &Path,
    file: &File,
    len: u64,
    checks: &ReadChecks<'_>,
) -> Result<MappedBlob> {
    if len < frame::PRELUDE_LEN as u64 {
        // Checked before mapping: an empty file cannot be mapped.
        return Err(at_path(frame::too_short(len as usize), path));
    }
    // SAFETY: the map is private, so our writes never reach the file; see the note above about
    // truncation by other processes.
    let map = unsafe { MmapOptions::new().map_copy(file) }
        .map_err(|e| Error::io(format!("memory-mapping {}", path.display()), e))?;
    let (header, ranges) = frame::verify_with(&map, checks).map_err(|e| at_path(e, path))?;
    let segments = match header.codec {
        None => MappedSegments::InPlace { map, ranges },
        Some(_) => MappedSegments::Decoded(
            ranges
                .into_iter()
                .enumerate()
                .map(|(index, range)| {
                    frame::decode_segment(&header, index, &map[range]).map(|raw| raw.into_owned())
                })
                .collect::<Result<_>>()
                .map_err(|e| at_path(e, path))?,
        ),
    };
    Ok(MappedBlob { header, segments })
}

/// A file opened for reading, sized once: lets a caller choose how to read it before reading any
/// of it — into a buffer it allocated, or as a blob read whole (small) or mapped (large).
#[derive(Debug)]
pub struct FileReader<'a> {
    path: &'a Path,
    file: File,
    len: u64,
}

impl<'a> FileReader<'a> {
    pub fn open(path: &'a Path) -> Result<FileReader<'a>> {
        let (file, len) = open_with_len(path)?;
        Ok(FileReader { path, file, len })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The open file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The file as a blob: see [`open_blob`].
    pub fn into_blob(self, checks: &ReadChecks<'_>) -> Result<BlobFile<'a>> {
        let reader = BlobReader::open_with(self.file, self.len, checks)
            .map_err(|e| at_path(e, self.path))?;
        Ok(BlobFile {
            path: self.path,
            reader,
        })
    }

    /// The file as a mapped blob: see [`map_blob`].
    pub fn map_blob(self, checks: &ReadChecks<'_>) -> Result<MappedBlob> {
        map_open_blob(self.path, &self.file, self.len, checks)
    }

    /// Reads the whole file into `out`, which must be `len()` bytes.
    pub fn read_into(mut self, out: &mut [u8]) -> Result<()> {
        let changed = || {
            Error::io(
                format!("reading {}", self.path.display()),
                std::io::Error::other("the file changed size while it was read; read it again"),
            )
        };
        if out.len() as u64 != self.len {
            return Err(Error::InvalidArgument(format!(
                "a buffer of {} bytes given for a {}-byte file",
                out.len(),
                self.len
            )));
        }
        self.file.read_exact(out).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => changed(),
            _ => Error::io(format!("reading {}", self.path.display()), e),
        })?;
        match self.file.read(&mut [0; 1]) {
            Ok(0) => Ok(()),
            Ok(_) => Err(changed()),
            Err(e) => Err(Error::io(format!("reading {}", self.path.display()), e)),
        }
    }
}

/// The first `len` bytes of a file (fewer when it is shorter).
pub fn read_file_prefix(path: &Path, len: usize) -> Result<Vec<u8>> {
    let reader = FileReader::open(path)?;
    let mut out = Vec::with_capacity(len.min(reader.len() as usize));
    (&reader.file)
        .take(len as u64)
        .read_to_end(&mut out)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    Ok(out)
}

/// Reads a whole file.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    let reader = FileReader::open(path)?;
    let mut out = vec![0; reader.len() as usize];
    reader.read_into(&mut out)?;
    Ok(out)
}

/// Opens a regular file for reading. Anything else is refused at once: without `O_NONBLOCK`,
/// opening a FIFO would wait for a writer forever, and a device has no end to read to.
fn open_with_len(path: &Path) -> Result<(File, u64)> {
    let context = || format!("opening {}", path.display());
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options.open(path).map_err(|e| Error::io(context(), e))?;
    let metadata = file.metadata().map_err(|e| Error::io(context(), e))?;
    let file_type = metadata.file_type();
    if file_type.is_dir() {
        // EISDIR, so that Python raises IsADirectoryError, as reading a folder would.
        return Err(Error::io(context(), std::io::Error::from_raw_os_error(21)));
    }
    if !file_type.is_file() {
        return Err(Error::Corrupt(format!(
            "{} is {}, not a regular file: a result is always a regular file, and reading this \
             one could block or never end; remove it so the result is computed again",
            path.display(),
            special_file_kind(&file_type)
        )));
    }
    Ok((file, metadata.len()))
}

fn special_file_kind(file_type: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if file_type.is_char_device() || file_type.is_block_device() {
            return "a device";
        }
        if file_type.is_socket() {
            return "a socket";
        }
    }
    let _ = file_type;
    "a special file"
}

/// Names the file in an error that came from reading it.
fn at_path(error: Error, path: &Path) -> Error {
    let path = path.display();
    match error {
        Error::Io { context, source } => Error::Io {
            context: format!("{context} ({path})"),
            source,
        },
        Error::Corrupt(message) => Error::Corrupt(format!("{path}: {message}")),
        Error::UnsupportedFormat(message) => Error::UnsupportedFormat(format!("{path}: {message}")),
        Error::Untrusted(message) => Error::Untrusted(format!("{path}: {message}")),
        other => other,
    }
}

#[cfg(test)]
mod tests;
