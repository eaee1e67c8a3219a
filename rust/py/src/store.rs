//! `Store`: a handle on an object store (S3, GCS, Azure, in-memory) and the calls on its
//! objects. Every call that reaches the network runs with the GIL released: a request can wait
//! for seconds, and other Python threads keep running meanwhile.
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;

use ferroflow_core::frame::FrameOptions;
use ferroflow_core::object_store::{
    FetchedSegments, ObjectInfo, RetryOptions, SegmentMemory, Store, StoreKind, StoreOptions,
    UploadOptions,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::buffer::{bytes_copied, HeldBuffer, InputBuffer, NewBytes};
use crate::errors::Result;
use crate::framing::{
    frame_options, read_checks, views_of, views_of_apart, views_of_decoded, PyBlobHeader,
    PyReadPolicy, PySigningKey,
};
use crate::gil::{self, Work};

/// What a store says about one object.
#[pyclass(frozen, get_all, module = "ferroflow._core", name = "ObjectInfo")]
pub struct PyObjectInfo {
    key: String,
    size: u64,
    /// Seconds since the Unix epoch.
    last_modified: f64,
    e_tag: Option<String>,
}

#[pymethods]
impl PyObjectInfo {
    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let this = slf.get();
        let key = slf.getattr("key")?.repr()?;
        let e_tag = slf.getattr("e_tag")?.repr()?;
        Ok(format!(
            "ObjectInfo(key={key}, size={}, last_modified={}, e_tag={e_tag})",
            this.size, this.last_modified
        ))
    }
}

impl From<ObjectInfo> for PyObjectInfo {
    fn from(info: ObjectInfo) -> Self {
        let last_modified = info
            .last_modified
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |since| since.as_secs_f64());
        PyObjectInfo {
            key: info.key,
            size: info.size,
            last_modified,
            e_tag: info.e_tag,
        }
    }
}

/// The memory of a Python buffer, kept alive (and exported, so unresizable) for as long as an
/// upload holds it: the request may outlive the call that started it (a cancelled request's
/// body is dropped by the I/O threads later).
struct PythonMemory {
    _keep: HeldBuffer,
    data: *const u8,
    len: usize,
}

// SAFETY: `data` points into memory that `_keep` holds alive and in place (a bytes object is
// immutable; an exported buffer cannot be resized); it is only read, from any thread, as every
// buffer read with the GIL released is. Dropping `_keep` on another thread takes the GIL first
// (PyO3 defers the reference count change, or releases the buffer with the GIL held).
unsafe impl Send for PythonMemory {}
// SAFETY: as for Send: shared access only reads.
unsafe impl Sync for PythonMemory {}

impl AsRef<[u8]> for PythonMemory {
    fn as_ref(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `len` readable bytes at `data`, alive and in place while `self` is (above).
        unsafe { std::slice::from_raw_parts(self.data, self.len) }
    }
}

/// Each of `segments` as `Bytes` over its own memory (no copy).
fn shared_segments(segments: &Bound<'_, PyAny>) -> PyResult<Vec<Bytes>> {
    let buffers = InputBuffer::borrow_segments(segments)?;
    Ok(buffers
        .into_iter()
        .map(|buffer| {
            let (data, len, buffer) = buffer.hold();
            Bytes::from_owner(PythonMemory {
                _keep: buffer,
                data,
                len,
            })
        })
        .collect())
}

/// A handle on a bucket (and a prefix in it); shared freely between threads.
#[pyclass(frozen, module = "ferroflow._core", name = "Store")]
pub struct PyStore(Store);

fn seconds(value: f64, name: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        PyValueError::new_err(format!(
            "{name} must be a positive number of seconds, not {value}"
        ))
    })
}

#[pymethods]
impl PyStore {
    #[new]
    #[pyo3(signature = (
        url,
        options = None,
        *,
        timeout = 60.0,
        connect_timeout = 5.0,
        max_retries = 3,
        retry_timeout = 30.0,
        part_size = None,
        max_parts_in_flight = None,
        multipart_threshold = None,
        reads_in_flight = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        url: &str,
        options: Option<Vec<(String, String)>>,
        timeout: f64,
        connect_timeout: f64,
        max_retries: usize,
        retry_timeout: f64,
        part_size: Option<usize>,
        max_parts_in_flight: Option<usize>,
        multipart_threshold: Option<usize>,
        reads_in_flight: Option<usize>,
    ) -> Result<Self> {
        let defaults = UploadOptions::default();
        let options = StoreOptions {
            config: options.unwrap_or_default(),
            retry: RetryOptions {
                max_retries,
                retry_timeout: seconds(retry_timeout, "retry_timeout")?,
                ..RetryOptions::default()
            },
            timeout: seconds(timeout, "timeout")?,
            connect_timeout: seconds(connect_timeout, "connect_timeout")?,
            upload: UploadOptions {
                part_size: part_size.unwrap_or(defaults.part_size),
                max_parts_in_flight: max_parts_in_flight.unwrap_or(defaults.max_parts_in_flight),
                multipart_threshold,
            },
            reads_in_flight,
        };
        Ok(PyStore(Store::open(url, options)?))
    }

    /// The URL the store was opened with.
    #[getter]
    fn url(&self) -> &str {
        self.0.url()
    }

    /// "s3", "gcs", "azure" or "memory".
    #[getter]
    fn kind(&self) -> &'static str {
        match self.0.kind() {
            StoreKind::S3 => "s3",
            StoreKind::Gcs => "gcs",
            StoreKind::Azure => "azure",
            StoreKind::Memory => "memory",
        }
    }

    /// Writes the blob as `_core.write_blob` does, recording `key` in its header (so a read
    /// refuses it under another key) and signing it with `signing_key` when given.
    #[pyo3(signature = (key, segments, *, serializer, codec = "none", level = None, threads = 1, signing_key = None))]
    #[allow(clippy::too_many_arguments)] // Python's keyword arguments
    fn write_blob(
        &self,
        py: Python<'_>,
        key: &str,
        segments: &Bound<'_, PyAny>,
        serializer: &str,
        codec: &str,
        level: Option<i32>,
        threads: u32,
        signing_key: Option<PyRef<'_, PySigningKey>>,
    ) -> Result<PyBlobHeader> {
        let options: FrameOptions<'_> = frame_options(
            serializer,
            codec,
            level,
            threads,
            Some(key),
            signing_key.as_deref(),
        )?;
        let segments = shared_segments(segments)?;
        let header = gil::run(py, Work::Blocking, || {
            self.0.write_blob_bytes(key, &segments, &options)
        })?;
        Ok(PyBlobHeader(header))
    }

    /// Reads and verifies the blob at `key`, refusing one that records another key and making
    /// the checks of `policy` (signatures, decompressed size) as a local read does.
    #[pyo3(signature = (key, *, policy = None))]
    fn read_blob<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        policy: Option<PyRef<'py, PyReadPolicy>>,
    ) -> Result<(PyBlobHeader, Bound<'py, PyList>)> {
        let checks = read_checks(Some(key), policy.as_deref());
        // The largest segment is received straight into a new bytes object: a `bytes` result
        // then is that object, with no copy after it arrives (`SegmentBuffer.stored_bytes`).
        // The object is made with the GIL taken back for a moment, once the header has come.
        let mut place = |len: usize| -> Option<Box<dyn SegmentMemory>> {
            let memory = Python::attach(|py| NewBytes::new(py, len)).ok()?;
            Some(Box::new(memory))
        };
        let blob = gil::run(py, Work::Blocking, || {
            self.0.read_blob_placing(key, &checks, &mut place)
        })?;
        let views = match blob.segments {
            FetchedSegments::InPlace { data, ranges } => views_of(py, data, ranges)?,
            FetchedSegments::Apart {
                data,
                ranges,
                apart,
                memory,
            } => {
                let memory = memory
                    .into_any()
                    .downcast::<NewBytes>()
                    .expect("the store fills the memory it was given");
                views_of_apart(py, data, ranges, apart, *memory)?
            }
            FetchedSegments::Decoded(decoded) => views_of_decoded(py, decoded)?,
        };
        Ok((PyBlobHeader(blob.header), views))
    }

    #[pyo3(signature = (key, *, policy = None))]
    fn read_header(
        &self,
        py: Python<'_>,
        key: &str,
        policy: Option<PyRef<'_, PyReadPolicy>>,
    ) -> Result<PyBlobHeader> {
        let checks = read_checks(Some(key), policy.as_deref());
        let header = gil::run(py, Work::Blocking, || self.0.read_header_with(key, &checks))?;
        Ok(PyBlobHeader(header))
    }

    fn put(&self, py: Python<'_>, key: &str, segments: &Bound<'_, PyAny>) -> Result<u64> {
        let segments = shared_segments(segments)?;
        Ok(gil::run(py, Work::Blocking, || {
            self.0.put_bytes(key, segments)
        })?)
    }

    fn put_if_absent(&self, py: Python<'_>, key: &str, data: &Bound<'_, PyAny>) -> Result<bool> {
        let buffer = InputBuffer::borrow(data, "data")?;
        let bytes = buffer.as_bytes();
        Ok(gil::run(py, Work::Blocking, || {
            self.0.put_if_absent(key, bytes)
        })?)
    }

    fn get<'py>(&self, py: Python<'py>, key: &str) -> Result<Bound<'py, PyBytes>> {
        let data = gil::run(py, Work::Blocking, || self.0.get(key))?;
        bytes_copied(py, &data)
    }

    fn head(&self, py: Python<'_>, key: &str) -> Result<PyObjectInfo> {
        Ok(gil::run(py, Work::Blocking, || self.0.head(key))?.into())
    }

    fn exists(&self, py: Python<'_>, key: &str) -> Result<bool> {
        Ok(gil::run(py, Work::Blocking, || self.0.exists(key))?)
    }

    fn delete(&self, py: Python<'_>, key: &str) -> Result<()> {
        Ok(gil::run(py, Work::Blocking, || self.0.delete(key))?)
    }

    #[pyo3(signature = (prefix = ""))]
    fn list(&self, py: Python<'_>, prefix: &str) -> Result<Vec<PyObjectInfo>> {
        let infos = gil::run(py, Work::Blocking, || self.0.list(prefix))?;
        Ok(infos.into_iter().map(PyObjectInfo::from).collect())
    }

    fn __repr__(&self) -> String {
        format!("Store({:?})", self.0.url())
    }
}
