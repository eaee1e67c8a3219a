//! Blobs: the framed, checksummed form of a persisted result (`write_blob`, `frame_blob`,
//! `read_blob`, `map_blob`, `unframe_blob`, `read_header`, `BlobHeader`).
use std::any::Any;
use std::ffi::c_int;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use ferroflow_core::codec::CompressOptions;
use ferroflow_core::frame::{self, BlobHeader, Frame, FrameOptions, ReadChecks, SigningKey};
use ferroflow_core::fs::{self, FileReader, MappedSegments};
use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyMemoryView, PyString};

use crate::buffer::{new_bytes_filled, slices, work_on, InputBuffer, NewBytes};
use crate::errors::Result;
use crate::gil::{self, Work};

/// What a blob says about itself, read without its payload.
#[pyclass(frozen, module = "ferroflow._core", name = "BlobHeader")]
pub struct PyBlobHeader(pub(crate) BlobHeader);

#[pymethods]
impl PyBlobHeader {
    /// `"major.minor"` of the blob format.
    #[getter]
    fn format_version(&self) -> String {
        self.0.format_version_string()
    }

    /// The serializer's description, as JSON text.
    #[getter]
    fn serializer(&self) -> &str {
        &self.0.serializer
    }

    #[getter]
    fn codec(&self) -> &'static str {
        self.0.codec_name()
    }

    #[getter]
    fn level(&self) -> Option<i32> {
        self.0.level
    }

    #[getter]
    fn raw_length(&self) -> u64 {
        self.0.raw_length()
    }

    #[getter]
    fn stored_length(&self) -> u64 {
        self.0.stored_length()
    }

    #[getter]
    fn checksum_algorithm(&self) -> &str {
        &self.0.checksum_algorithm
    }

    #[getter]
    fn ferroflow_version(&self) -> &str {
        &self.0.ferroflow_version
    }

    /// When the blob was written, as an aware UTC datetime.
    #[getter]
    fn created_at<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let datetime = py.import("datetime")?;
        let utc = datetime.getattr("timezone")?.getattr("utc")?;
        let epoch = datetime
            .getattr("datetime")?
            .call_method1("fromtimestamp", (0, utc))?;
        let timedelta = datetime.getattr("timedelta")?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("microseconds", self.0.created_at_us)?;
        epoch.add(timedelta.call((), Some(&kwargs))?)
    }

    /// Segments start at multiples of this many bytes.
    #[getter]
    fn alignment(&self) -> u64 {
        self.0.alignment
    }

    /// The storage key the blob was written under; `None` for a blob written without one.
    #[getter]
    fn key(&self) -> Option<&str> {
        self.0.key.as_deref()
    }

    /// The codec that was asked for but skipped because it would not shrink the payload.
    #[getter]
    fn codec_skipped(&self) -> Option<&'static str> {
        self.0.codec_skipped.map(|codec| codec.name())
    }

    /// The id of the key that signed the blob; `None` when it is not signed.
    #[getter]
    fn signed_by(&self) -> Option<&str> {
        self.0.signature.as_ref().map(|s| s.key_id.as_str())
    }

    #[getter]
    fn segment_raw_lengths(&self) -> Vec<u64> {
        self.0.segments.iter().map(|s| s.raw).collect()
    }

    #[getter]
    fn segment_stored_lengths(&self) -> Vec<u64> {
        self.0.segments.iter().map(|s| s.stored).collect()
    }

    /// Every field as a plain dict.
    fn to_dict<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(slf.py());
        for name in FIELDS {
            dict.set_item(name, slf.getattr(name)?)?;
        }
        Ok(dict)
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let header = &slf.get().0;
        let repr = |text: &str| PyString::new(slf.py(), text).repr().map(|r| r.to_string());
        let created_at = slf
            .getattr("created_at")?
            .call_method0("isoformat")?
            .to_string();
        let level = header
            .level
            .map_or_else(|| "None".to_owned(), |level| level.to_string());
        Ok(format!(
            "BlobHeader(format_version={}, serializer={}, codec={}, level={level}, raw_length={}, stored_length={}, \
             segments={}, checksum_algorithm={}, ferroflow_version={}, created_at={})",
            repr(&header.format_version_string())?,
            repr(&header.serializer)?,
            repr(header.codec_name())?,
            header.raw_length(),
            header.stored_length(),
            header.segments.len(),
            repr(&header.checksum_algorithm)?,
            repr(&header.ferroflow_version)?,
            repr(&created_at)?,
        ))
    }
}

const FIELDS: [&str; 15] = [
    "format_version",
    "serializer",
    "codec",
    "codec_skipped",
    "level",
    "raw_length",
    "stored_length",
    "checksum_algorithm",
    "ferroflow_version",
    "created_at",
    "alignment",
    "key",
    "signed_by",
    "segment_raw_lengths",
    "segment_stored_lengths",
];

/// A key that signs result blobs and verifies their signatures, derived from a secret.
#[pyclass(frozen, module = "ferroflow._core", name = "SigningKey")]
pub struct PySigningKey(SigningKey);

#[pymethods]
impl PySigningKey {
    #[new]
    fn new(material: &[u8]) -> Result<Self> {
        Ok(PySigningKey(SigningKey::from_material(material)?))
    }

    /// The public id a signed blob's header names the key by.
    #[getter]
    fn key_id(&self) -> &str {
        self.0.id()
    }

    fn __repr__(&self) -> String {
        format!("SigningKey(key_id={:?})", self.0.id())
    }
}

/// What a reader checks beyond integrity: signatures and the decompressed size.
#[pyclass(frozen, module = "ferroflow._core", name = "ReadPolicy")]
pub struct PyReadPolicy {
    verification_keys: Vec<SigningKey>,
    require_signature: bool,
    max_decompressed_length: Option<u64>,
}

#[pymethods]
impl PyReadPolicy {
    #[new]
    #[pyo3(signature = (*, verification_keys = None, require_signature = false, max_decompressed_length = None))]
    fn new(
        verification_keys: Option<Vec<PyRef<'_, PySigningKey>>>,
        require_signature: bool,
        max_decompressed_length: Option<u64>,
    ) -> Self {
        PyReadPolicy {
            verification_keys: (verification_keys.unwrap_or_default().iter())
                .map(|k| k.0.clone())
                .collect(),
            require_signature,
            max_decompressed_length,
        }
    }

    #[getter]
    fn verification_key_ids(&self) -> Vec<String> {
        self.verification_keys
            .iter()
            .map(|k| k.id().to_owned())
            .collect()
    }

    #[getter]
    fn require_signature(&self) -> bool {
        self.require_signature
    }

    #[getter]
    fn max_decompressed_length(&self) -> Option<u64> {
        self.max_decompressed_length
    }

    fn __repr__(&self) -> String {
        format!(
            "ReadPolicy(verification_key_ids={:?}, require_signature={}, max_decompressed_length={:?})",
            self.verification_key_ids(),
            if self.require_signature { "True" } else { "False" },
            self.max_decompressed_length
        )
    }
}

/// The core's checks for a read of the blob stored under `key` with `policy`.
pub(crate) fn read_checks<'a>(
    key: Option<&'a str>,
    policy: Option<&'a PyReadPolicy>,
) -> ReadChecks<'a> {
    match policy {
        None => ReadChecks {
            expected_key: key,
            ..ReadChecks::default()
        },
        Some(policy) => ReadChecks {
            expected_key: key,
            verification_keys: &policy.verification_keys,
            require_signature: policy.require_signature,
            max_decompressed_length: policy.max_decompressed_length,
        },
    }
}

pub(crate) fn frame_options<'a>(
    serializer: &'a str,
    codec: &str,
    level: Option<i32>,
    threads: u32,
    key: Option<&'a str>,
    signing_key: Option<&'a PySigningKey>,
) -> Result<FrameOptions<'a>> {
    Ok(FrameOptions {
        serializer,
        codec: frame::codec_from_name(codec)?,
        compress: CompressOptions {
            level,
            threads,
            extreme: false,
        },
        key,
        signing_key: signing_key.map(|k| &k.0),
        compact_small: true,
    })
}

/// Frames the segments and writes them atomically to `path` in one pass.
#[pyfunction]
#[pyo3(signature = (path, segments, *, serializer, codec = "none", level = None, threads = 1, durable = false, key = None, signing_key = None))]
#[allow(clippy::too_many_arguments)]
pub fn write_blob(
    path: PathBuf,
    segments: &Bound<'_, PyAny>,
    serializer: &str,
    codec: &str,
    level: Option<i32>,
    threads: u32,
    durable: bool,
    key: Option<&str>,
    signing_key: Option<PyRef<'_, PySigningKey>>,
) -> Result<PyBlobHeader> {
    let options = frame_options(
        serializer,
        codec,
        level,
        threads,
        key,
        signing_key.as_deref(),
    )?;
    let buffers = InputBuffer::borrow_segments(segments)?;
    let slices = slices(&buffers);
    let header = gil::run(segments.py(), Work::Blocking, || {
        fs::write_blob(&path, &slices, &options, durable)
    })?;
    Ok(PyBlobHeader(header))
}

/// The blob `write_blob` would write, in memory.
#[pyfunction]
#[pyo3(signature = (segments, *, serializer, codec = "none", level = None, threads = 1, key = None, signing_key = None))]
#[allow(clippy::too_many_arguments)]
pub fn frame_blob<'py>(
    py: Python<'py>,
    segments: &Bound<'py, PyAny>,
    serializer: &str,
    codec: &str,
    level: Option<i32>,
    threads: u32,
    key: Option<&str>,
    signing_key: Option<PyRef<'py, PySigningKey>>,
) -> Result<Bound<'py, PyBytes>> {
    let options = frame_options(
        serializer,
        codec,
        level,
        threads,
        key,
        signing_key.as_deref(),
    )?;
    let segments = InputBuffer::borrow_segments(segments)?;
    let slices = slices(&segments);
    // Without a codec, framing is checksumming the segments.
    let framing = match options.codec {
        Some(_) => Work::Compressing,
        None => work_on(&slices),
    };
    let frame = gil::run(py, framing, || Frame::new(&slices, &options))?;
    let len = usize::try_from(frame.encoded_len())
        .map_err(|_| PyValueError::new_err("the blob is too large for memory"))?;
    let mut blob = new_bytes_filled(py, &[len], Work::Bytes(len), |out| {
        let mut cursor = std::io::Cursor::new(&mut *out[0]);
        frame
            .write_to(&mut cursor)
            .map(drop)
            .map_err(|e| ferroflow_core::Error::io("framing in memory", e))
    })?;
    Ok(blob.remove(0))
}

type HeaderAndSegments<'py> = (PyBlobHeader, Vec<Bound<'py, PyBytes>>);

/// Reads and verifies a blob file; returns its header and decoded segments.
#[pyfunction]
#[pyo3(signature = (path, *, key = None, policy = None))]
pub fn read_blob<'py>(
    py: Python<'py>,
    path: PathBuf,
    key: Option<&str>,
    policy: Option<PyRef<'py, PyReadPolicy>>,
) -> Result<HeaderAndSegments<'py>> {
    let checks = read_checks(key, policy.as_deref());
    let blob = gil::run(py, Work::Blocking, || fs::open_blob(&path, &checks))?;
    read_segments(py, blob)
}

/// The header and decoded segments of an opened blob, each segment in a new bytes object.
fn read_segments<'py>(
    py: Python<'py>,
    mut blob: fs::BlobFile<'_>,
) -> Result<HeaderAndSegments<'py>> {
    let lengths = raw_lengths(blob.header())?;
    let work = Work::bytes_of(lengths.iter().copied());
    let segments = new_bytes_filled(py, &lengths, work, |outputs| {
        blob.read_segments_into(outputs)
    })?;
    Ok((PyBlobHeader(blob.into_header()), segments))
}

/// Verifies a blob held in memory; returns its header and decoded segments.
#[pyfunction]
#[pyo3(signature = (data, *, key = None, policy = None))]
pub fn unframe_blob<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    key: Option<&str>,
    policy: Option<PyRef<'py, PyReadPolicy>>,
) -> Result<HeaderAndSegments<'py>> {
    let checks = read_checks(key, policy.as_deref());
    let input = InputBuffer::borrow(data, "data")?;
    let data = input.as_bytes();
    let (header, ranges) = gil::run(py, Work::Bytes(data.len()), || {
        frame::verify_with(data, &checks)
    })?;
    let lengths = raw_lengths(&header)?;
    let work = Work::bytes_of(lengths.iter().copied());
    let segments = new_bytes_filled(py, &lengths, work, |outputs| {
        for (out, range) in outputs.iter_mut().zip(ranges) {
            frame::decode_segment_into(header.codec, &data[range], out)?;
        }
        Ok(())
    })?;
    Ok((PyBlobHeader(header), segments))
}

fn raw_lengths(header: &BlobHeader) -> PyResult<Vec<usize>> {
    header
        .segments
        .iter()
        .map(|s| {
            usize::try_from(s.raw)
                .map_err(|_| PyValueError::new_err("a segment is too large for memory"))
        })
        .collect()
}

/// The header of a blob file, without reading its payload.
#[pyfunction]
#[pyo3(signature = (path, *, key = None, policy = None))]
pub fn read_header<'py>(
    py: Python<'py>,
    path: PathBuf,
    key: Option<&str>,
    policy: Option<PyRef<'py, PyReadPolicy>>,
) -> Result<PyBlobHeader> {
    let checks = read_checks(key, policy.as_deref());
    let header = gil::run(py, Work::Blocking, || fs::read_header(&path, &checks))?;
    Ok(PyBlobHeader(header))
}

/// Maps and verifies a blob file. The segments are writable memoryviews: of a private
/// (copy-on-write) memory map when the blob is uncompressed, so writing never changes the file.
#[pyfunction]
#[pyo3(signature = (path, *, key = None, policy = None))]
pub fn map_blob<'py>(
    py: Python<'py>,
    path: PathBuf,
    key: Option<&str>,
    policy: Option<PyRef<'py, PyReadPolicy>>,
) -> Result<(PyBlobHeader, Bound<'py, PyList>)> {
    let checks = read_checks(key, policy.as_deref());
    let mapped = gil::run(py, Work::Blocking, || fs::map_blob(&path, &checks))?;
    Ok(mapped_to_python(py, mapped)?)
}

/// Reads and verifies a blob file the cheapest way for its size: a file smaller than `map_from`
/// bytes is read whole into bytes objects (with the GIL kept when it is small: for a small file
/// the release costs more than the read), a larger one is mapped as by `map_blob`, with the GIL
/// released.
#[pyfunction]
#[pyo3(signature = (path, map_from, *, key = None, policy = None))]
pub fn load_blob<'py>(
    py: Python<'py>,
    path: PathBuf,
    map_from: u64,
    key: Option<&str>,
    policy: Option<PyRef<'py, PyReadPolicy>>,
) -> Result<(PyBlobHeader, Bound<'py, PyList>)> {
    let checks = read_checks(key, policy.as_deref());
    // The one blocking call the binding makes with the GIL held, on purpose: this is the read of
    // every cache hit and result fetch, and opening a result file on a local disk takes a few
    // microseconds, less than a GIL hand-off. (`read_blob` and `map_blob` release it to open.)
    let file = FileReader::open(&path)?;
    if file.len() >= map_from {
        // Kept beside the map: a segment that must become an owned object is read from it.
        let handle = file.file().try_clone().ok().map(Arc::new);
        let mapped = gil::run(py, Work::Blocking, || file.map_blob(&checks))?;
        return Ok(mapped_to_python_from(py, mapped, handle)?);
    }
    // Reads the prelude and header of the opened file; the segments are read below.
    let len = usize::try_from(file.len()).unwrap_or(usize::MAX);
    let blob = gil::run(py, Work::Bytes(len), || file.into_blob(&checks))?;
    let (header, segments) = read_segments(py, blob)?;
    Ok((header, PyList::new(py, segments)?))
}

/// `data` as the shared owner of its segments at `ranges`, and where each segment lies. The
/// pointers stay valid while the owner lives: moving `data` into it does not move its heap buffer.
fn owned_segments(
    mut data: Vec<u8>,
    ranges: Vec<std::ops::Range<usize>>,
) -> (Arc<dyn Any + Send + Sync>, Vec<(*mut u8, usize)>) {
    let pointers = ranges
        .into_iter()
        .map(|range| {
            let segment = &mut data[range];
            (segment.as_mut_ptr(), segment.len())
        })
        .collect();
    (Arc::new(data), pointers)
}

/// Memoryviews of `ranges` of `data`, which they keep alive: the segments of a blob read into
/// one buffer, handed out without copying them.
pub(crate) fn views_of<'py>(
    py: Python<'py>,
    data: Vec<u8>,
    ranges: Vec<std::ops::Range<usize>>,
) -> PyResult<Bound<'py, PyList>> {
    let (owner, pointers) = owned_segments(data, ranges);
    let views = pointers
        .into_iter()
        .map(|(data, len)| {
            let segment = SegmentBuffer::new(owner.clone(), data, len);
            PyMemoryView::from(Bound::new(py, segment)?.as_any())
        })
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, views)
}

/// [`views_of`] for a blob read with segment `apart` received into the new bytes object
/// `memory`: that segment's view is of the object, which `stored_bytes` then hands out as is.
pub(crate) fn views_of_apart(
    py: Python<'_>,
    data: Vec<u8>,
    ranges: Vec<std::ops::Range<usize>>,
    apart: usize,
    memory: NewBytes,
) -> PyResult<Bound<'_, PyList>> {
    let (owner, pointers) = owned_segments(data, ranges);
    let (object, object_data, object_len) = memory.into_parts();
    let views = pointers
        .into_iter()
        .enumerate()
        .map(|(index, (data, len))| {
            let segment = if index == apart {
                let keep: Arc<dyn Any + Send + Sync> = Arc::new(object.clone_ref(py));
                let mut segment = SegmentBuffer::new(keep, object_data, object_len);
                segment.object = Mutex::new(Some(object.clone_ref(py)));
                segment
            } else {
                SegmentBuffer::new(owner.clone(), data, len)
            };
            PyMemoryView::from(Bound::new(py, segment)?.as_any())
        })
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, views)
}

/// Memoryviews of decoded segments, each keeping its own buffer alive.
pub(crate) fn views_of_decoded(
    py: Python<'_>,
    decoded: Vec<Vec<u8>>,
) -> PyResult<Bound<'_, PyList>> {
    let views = decoded
        .into_iter()
        .map(|mut bytes| {
            let (data, len) = (bytes.as_mut_ptr(), bytes.len());
            let segment = SegmentBuffer::new(Arc::new(bytes), data, len);
            PyMemoryView::from(Bound::new(py, segment)?.as_any())
        })
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, views)
}

fn mapped_to_python(
    py: Python<'_>,
    mapped: fs::MappedBlob,
) -> PyResult<(PyBlobHeader, Bound<'_, PyList>)> {
    mapped_to_python_from(py, mapped, None)
}

/// The segments of a mapped blob as memoryviews; with the mapped `file`, each in-place segment
/// also knows where it is stored, so [`SegmentBuffer::stored_bytes`] reads it with one read.
fn mapped_to_python_from(
    py: Python<'_>,
    mapped: fs::MappedBlob,
    file: Option<Arc<File>>,
) -> PyResult<(PyBlobHeader, Bound<'_, PyList>)> {
    let segments: Vec<SegmentBuffer> = match mapped.segments {
        MappedSegments::InPlace { mut map, ranges } => {
            // The pointers stay valid when `map` moves into `owner`: the mapping does not move.
            let pointers: Vec<(*mut u8, usize, u64)> = ranges
                .into_iter()
                .map(|range| {
                    let offset = range.start as u64;
                    let segment = &mut map[range];
                    (segment.as_mut_ptr(), segment.len(), offset)
                })
                .collect();
            let owner: Arc<dyn Any + Send + Sync> = Arc::new(map);
            pointers
                .into_iter()
                .map(|(data, len, offset)| {
                    let mut segment = SegmentBuffer::new(owner.clone(), data, len);
                    segment.stored_at = file.clone().map(|file| (file, offset));
                    segment
                })
                .collect()
        }
        MappedSegments::Decoded(decoded) => decoded
            .into_iter()
            .map(|mut bytes| {
                let (data, len) = (bytes.as_mut_ptr(), bytes.len());
                SegmentBuffer::new(Arc::new(bytes), data, len)
            })
            .collect(),
    };
    let views = segments
        .into_iter()
        .map(|segment| PyMemoryView::from(Bound::new(py, segment)?.as_any()))
        .collect::<PyResult<Vec<_>>>()?;
    Ok((PyBlobHeader(mapped.header), PyList::new(py, views)?))
}

#[cfg(unix)]
fn read_exact_at(file: &File, out: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, out, offset)
}

#[cfg(windows)]
fn read_exact_at(file: &File, mut out: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    while !out.is_empty() {
        match std::os::windows::fs::FileExt::seek_read(file, out, offset)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            read => {
                out = &mut out[read..];
                offset += read as u64;
            }
        }
    }
    Ok(())
}

/// Exports one segment through the buffer protocol and keeps its memory (a map or a
/// decompressed buffer) alive for as long as any view of it exists.
#[pyclass(frozen, module = "ferroflow._core")]
pub(crate) struct SegmentBuffer {
    /// Never read through by Rust after creation; Python writes through it.
    data: SendPtr,
    len: usize,
    _owner: Arc<dyn Any + Send + Sync>,
    /// The file (and offset) a mapped segment is stored at.
    stored_at: Option<(Arc<File>, u64)>,
    /// The bytes object whose memory the segment is (one received from a bucket), handed out
    /// once by `stored_bytes` instead of a copy.
    object: Mutex<Option<Py<PyBytes>>>,
}

struct SendPtr(*mut u8);
// SAFETY: the pointer is into memory owned by `_owner` (Send + Sync), which Rust never reads
// again once views exist; concurrent access from Python threads is the buffer protocol's own
// contract, the same as for a bytearray.
unsafe impl Send for SendPtr {}
// SAFETY: as for Send: sharing a `SendPtr` only shares the address, which Rust never reads
// through; `__getbuffer__` hands it to Python.
unsafe impl Sync for SendPtr {}

impl SegmentBuffer {
    pub(crate) fn new(
        owner: Arc<dyn Any + Send + Sync>,
        data: *mut u8,
        len: usize,
    ) -> SegmentBuffer {
        SegmentBuffer {
            data: SendPtr(data),
            len,
            _owner: owner,
            stored_at: None,
            object: Mutex::new(None),
        }
    }
}

#[pymethods]
impl SegmentBuffer {
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("no view to fill"));
        }
        let this = slf.get();
        let len =
            isize::try_from(this.len).map_err(|_| PyBufferError::new_err("segment too large"))?;
        // SAFETY: fills a 1-D writable byte view of memory kept alive by `slf`, which the view
        // references (PyBuffer_FillInfo takes the reference).
        let status = unsafe {
            ffi::PyBuffer_FillInfo(view, slf.as_ptr(), this.data.0.cast(), len, 0, flags)
        };
        if status == -1 {
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }

    /// A new `bytes` object holding the segment as stored, for a result that must become an
    /// owned object: a mapped segment is read from its file with one read straight into it
    /// (cheaper than copying from the map, whose pages would be faulted in one by one), any
    /// other is copied; with the GIL released when large. Writes made through views of a
    /// mapped segment (private to the map) are not included.
    ///
    /// A segment received from a bucket straight into a bytes object is that object, handed out
    /// the first time without a copy. Views exported before stay writable: a loader writes
    /// through none of them once it made the value a `bytes` (each segment of a pickle is one
    /// out-of-band buffer, consumed once), and later calls copy.
    fn stored_bytes<'py>(slf: &Bound<'py, Self>) -> crate::errors::Result<Bound<'py, PyBytes>> {
        let this = slf.get();
        let object = (this.object.lock())
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(object) = object {
            return Ok(object.into_bound(slf.py()));
        }
        let len = this.len;
        let mut objects = new_bytes_filled(slf.py(), &[len], Work::Bytes(len), |out| {
            if let Some((file, offset)) = &this.stored_at {
                if read_exact_at(file, out[0], *offset).is_ok() {
                    return Ok(());
                }
            }
            // SAFETY: `len` bytes at `data`, kept alive by `_owner` (see `SendPtr`).
            let memory = unsafe { std::slice::from_raw_parts(this.data.0.cast_const(), len) };
            out[0].copy_from_slice(memory);
            Ok(())
        })?;
        Ok(objects.remove(0))
    }

    /// Nothing to free per view: each view holds a reference to this object, and the memory
    /// goes when the last reference does.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}
}
