//! Results on object storage: S3 (and S3-compatible servers), Google Cloud Storage and Azure Blob
//! Storage through the `object_store` crate, and an in-memory store for tests.
//!
//! A [`Store`] is opened from a URL — `s3://bucket/prefix`, `gs://bucket/prefix`,
//! `az://container/prefix`, `memory://` (a new, empty store) or `memory://name` (the process's
//! store of that name, shared by every handle on it) — and [`StoreOptions`]: object_store's
//! configuration keys as strings, with every key not given read from the environment as the
//! crate's `from_env` builders do (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, `AWS_REGION`/`AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL`, ...). An S3 endpoint
//! given as `http://` allows plain HTTP unless `allow_http` says otherwise. Without configured
//! credentials object_store falls back to the cloud's own sources (web identity, the container or
//! instance metadata service), as the cloud SDKs do.
//!
//! What it guarantees:
//! - Keys are relative to the URL's path and checked like local keys ([`crate::fs::resolve_key`]):
//!   `..`, absolute keys, drive letters and NUL are refused with [`Error::UnsafeKey`]. Characters
//!   object stores advise against (`%`, `#`, `~`, ...) are percent-encoded in the object's name,
//!   as object_store does, and decoded again by [`Store::list`].
//! - [`Store::write_blob`] stores the same bytes as a local blob ([`crate::fs::write_blob`]): the
//!   frame is produced once, by the same writer, straight into the upload.
//! - An object appears whole or not at all. Up to [`UploadOptions::part_size`] (8 MiB by
//!   default) an upload is one PUT; a larger one is a multipart upload whose parts are uploaded
//!   while the rest is framed, at most [`UploadOptions::max_parts_in_flight`] (4) at once, so an
//!   upload holds at most `max_parts_in_flight + 1` parts in memory besides the caller's segments.
//!   A failed multipart upload is aborted; parts of one whose process died stay invisible until
//!   the bucket's lifecycle rule for incomplete multipart uploads removes them.
//! - Every read of a blob verifies what it returns as local reads do: the header (a ranged GET
//!   of its first 64 KiB for [`Store::read_header`]), the object's length against it, every
//!   segment's checksum and the padding ([`Store::read_blob`]).
//! - Errors say what to do: a missing object is [`Error::NotFound`], a missing bucket
//!   [`Error::BucketNotFound`], refused credentials or operations [`Error::PermissionDenied`],
//!   an endpoint that cannot be reached or does not answer [`Error::Unavailable`].
//!
//! Time is bounded: a request that gets no answer within [`StoreOptions::timeout`] (60 s; a
//! connection within `connect_timeout`, 5 s) fails, and failures are retried with exponential
//! backoff (from 100 ms to at most 2 s) at most [`RetryOptions::max_retries`] (3) times and not
//! after [`RetryOptions::retry_timeout`] (30 s) from the first try.
//!
//! The API blocks, so a binding can call it with its interpreter lock released; it must not be
//! called from async code running on a tokio runtime (that is refused with an error). The
//! requests run on one tokio runtime of the process with two worker threads, started on first
//! use. After `fork`, the child starts its own runtime and each [`Store`] rebuilds its HTTP
//! client on first use (the parent's threads and connections do not exist in the child); in-memory
//! stores are copied with the process, as any memory is.
mod config;
mod errors;
mod runtime;
mod upload;

pub use config::{
    RetryOptions, StoreKind, StoreOptions, UploadOptions, DEFAULT_MULTIPART_THRESHOLD,
    DEFAULT_PARTS_IN_FLIGHT, DEFAULT_PART_SIZE, MAX_PART_SIZE, MIN_PART_SIZE,
    PLAIN_HTTP_MULTIPART_THRESHOLD,
};

use crate::error::{Error, Result};
use crate::frame::{self, BlobHeader, Frame, FrameOptions, ReadChecks};
use bytes::Bytes;
use config::Target;
use errors::Action;
use futures::{StreamExt, TryStreamExt};
use object_store::path::{Path, PathPart};
use object_store::{GetOptions, GetRange, ObjectMeta, ObjectStore, PutMode, PutPayload};
use runtime::block_on;
use std::borrow::Cow;
use std::fmt;
use std::io::Write;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;
use upload::UploadError;

/// The first ranged read of [`Store::read_header`]: a header with thousands of segments still
/// fits, so it is almost always the only one.
const HEADER_READ: u64 = 64 * 1024;
/// Attempts of a create-only put that conflicts with a concurrent one but finds no object.
const CREATE_ATTEMPTS: usize = 3;

/// A handle on a bucket (and a prefix in it); cheap to share between threads.
pub struct Store {
    url: String,
    options: StoreOptions,
    target: Target,
    prefix: Path,
    client: Mutex<Client>,
}

/// The object_store client and the process it was made in.
struct Client {
    pid: u32,
    store: Arc<dyn ObjectStore>,
}

/// What a store says about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Relative to the store's prefix, parts separated by `/`.
    pub key: String,
    pub size: u64,
    pub last_modified: SystemTime,
    pub e_tag: Option<String>,
}

/// A verified blob read from a store.
#[derive(Debug)]
pub struct FetchedBlob {
    pub header: BlobHeader,
    pub segments: FetchedSegments,
}

#[derive(Debug)]
pub enum FetchedSegments {
    /// The whole object as read; an uncompressed blob's segments are these ranges of it.
    InPlace {
        data: Vec<u8>,
        ranges: Vec<Range<usize>>,
    },
    /// An uncompressed blob whose segment `apart` was received straight into the caller's
    /// `memory` (see [`Store::read_blob_placing`]); the other segments are `ranges` of `data`,
    /// the rest of the object.
    Apart {
        data: Vec<u8>,
        ranges: Vec<Range<usize>>,
        apart: usize,
        memory: Box<dyn SegmentMemory>,
    },
    /// A compressed blob's segments, decompressed.
    Decoded(Vec<Vec<u8>>),
}

/// Memory of the caller's that a read fills with one segment, such as the buffer of the object
/// the segment must become: the segment then needs no copy after it arrives.
pub trait SegmentMemory: Send + fmt::Debug {
    /// The memory, of exactly the length it was asked for. The read writes all of it before
    /// reading any of it, so it may start uninitialised.
    fn bytes(&mut self) -> &mut [u8];

    /// The memory as `Any`, for the caller to take back what it gave.
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send>;
}

/// Asked, once the header of a blob being read has arrived, for memory of this many bytes to
/// receive its largest segment in; `None` leaves the segment in the read's own buffer.
pub type PlaceSegment<'a> = dyn FnMut(usize) -> Option<Box<dyn SegmentMemory>> + Send + 'a;

/// Segments from this size on are worth receiving apart (see [`Store::read_blob_placing`]).
pub const PLACE_APART_FROM: u64 = 1024 * 1024;

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("url", &self.url)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens a handle on the store at `url`; no request is made yet.
    pub fn open(url: &str, options: StoreOptions) -> Result<Store> {
        let built = config::build(url, &options)?;
        let options = StoreOptions {
            upload: (options.upload).with_default_threshold(is_plain_http(&built.target)),
            ..options
        };
        Ok(Store {
            url: url.to_owned(),
            options,
            target: built.target,
            prefix: built.prefix,
            client: Mutex::new(Client {
                pid: std::process::id(),
                store: built.client,
            }),
        })
    }

    /// The URL the store was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn kind(&self) -> StoreKind {
        self.target.kind
    }

    /// How uploads are made, the multipart threshold resolved (never `None`).
    pub fn upload_options(&self) -> UploadOptions {
        self.options.upload
    }

    /// Frames `segments` as [`crate::fs::write_blob`] does and uploads the blob to `key`,
    /// replacing any object there.
    pub fn write_blob(
        &self,
        key: &str,
        segments: &[&[u8]],
        options: &FrameOptions<'_>,
    ) -> Result<BlobHeader> {
        let path = self.path(key)?;
        let frame = Frame::new(segments, options)?;
        let mut written = None;
        self.upload(key, &path, frame.encoded_len(), |out| {
            written = Some(frame.write_streaming(out)?);
            Ok(())
        })?;
        Ok(written.expect("set by a successful upload"))
    }

    /// Like [`Store::write_blob`], for segments held as [`Bytes`]: the upload sends them (and
    /// the header, padding and checksums beside them) without copying, as one PUT up to the
    /// single-PUT limit and as a multipart upload of slices of them beyond it. Compressed
    /// segments are compressed first, as always.
    pub fn write_blob_bytes(
        &self,
        key: &str,
        segments: &[Bytes],
        options: &FrameOptions<'_>,
    ) -> Result<BlobHeader> {
        let path = self.path(key)?;
        let slices: Vec<&[u8]> = segments.iter().map(|segment| &segment[..]).collect();
        let pieces = Frame::new(&slices, options)?.into_pieces();
        let mut chunks = Vec::with_capacity(2 * segments.len() + 2);
        chunks.push(Bytes::from(pieces.header_bytes));
        for ((stored, padding), segment) in pieces.segments.into_iter().zip(segments) {
            chunks.push(match stored {
                Cow::Borrowed(_) => segment.clone(),
                Cow::Owned(compressed) => Bytes::from(compressed),
            });
            if !padding.is_empty() {
                chunks.push(Bytes::from_static(padding));
            }
        }
        chunks.push(Bytes::from(pieces.trailer));
        self.upload_chunks(key, &path, chunks)?;
        Ok(pieces.header)
    }

    /// Like [`Store::put`], for segments held as [`Bytes`], sent without copying.
    pub fn put_bytes(&self, key: &str, segments: Vec<Bytes>) -> Result<u64> {
        let path = self.path(key)?;
        let len = segments.iter().map(|segment| segment.len() as u64).sum();
        self.upload_chunks(key, &path, segments)?;
        Ok(len)
    }

    /// Reads and verifies the header of the blob at `key` (and that the object's length agrees
    /// with it) without fetching the payload.
    pub fn read_header(&self, key: &str) -> Result<BlobHeader> {
        self.read_header_with(key, &ReadChecks::default())
    }

    /// [`Store::read_header`] with the reader's checks (key, signature, decompressed size), as
    /// a local read makes them; a signature to verify costs a ranged read of the trailer.
    pub fn read_header_with(&self, key: &str, checks: &ReadChecks<'_>) -> Result<BlobHeader> {
        let path = self.path(key)?;
        let client = self.client()?;
        let (head, blob_len) = match block_on(get_range(&*client, &path, 0..HEADER_READ))? {
            Ok(fetched) => fetched,
            Err(error) => return Err(self.range_read_failed(&*client, &path, key, error)),
        };
        let prelude = head
            .get(..frame::PRELUDE_LEN)
            .ok_or_else(|| self.at_object(frame::too_short(head.len()), key))?;
        let header_len =
            frame::header_len_from_prelude(prelude).map_err(|e| self.at_object(e, key))?;
        let head = if header_len > head.len() && header_len as u64 <= blob_len {
            let range = head.len() as u64..header_len as u64;
            let (rest, _) = block_on(get_range(&*client, &path, range))?
                .map_err(|e| self.convert(e, key, Action::Read))?;
            [head, rest].concat()
        } else {
            head.to_vec()
        };
        let fetch_trailer = |range: Range<u64>| {
            let (trailer, _) = block_on(get_range(&*client, &path, range))?
                .map_err(|e| self.convert(e, key, Action::Read))?;
            Ok(trailer.to_vec())
        };
        frame::verify_header(&head, header_len, blob_len, checks, fetch_trailer)
            .map_err(|e| self.at_object(e, key))
    }

    /// Reads the whole blob at `key` and verifies all of it; uncompressed segments stay in the
    /// buffer that was read, compressed ones are decompressed.
    pub fn read_blob(&self, key: &str) -> Result<FetchedBlob> {
        self.read_blob_with(key, &ReadChecks::default())
    }

    /// [`Store::read_blob`] with the reader's checks, made before any segment is looked at.
    pub fn read_blob_with(&self, key: &str, checks: &ReadChecks<'_>) -> Result<FetchedBlob> {
        self.read_blob_placing(key, checks, &mut |_| None)
    }

    /// [`Store::read_blob_with`], receiving the largest segment of an uncompressed blob (from
    /// [`PLACE_APART_FROM`] bytes) straight into memory that `place` gives once the header has
    /// arrived, instead of into the buffer of the whole object: a binding gives the buffer of
    /// the object the segment becomes, which then needs no copy. Every checksum is verified
    /// where the bytes landed, as for any read.
    pub fn read_blob_placing(
        &self,
        key: &str,
        checks: &ReadChecks<'_>,
        place: &mut PlaceSegment<'_>,
    ) -> Result<FetchedBlob> {
        let received = self.fetch(key, Some(place))?;
        if let Some((apart, mut memory)) = received.apart {
            let (header, ranges) =
                frame::verify_with_segment_apart(&received.data, apart, memory.bytes(), checks)
                    .map_err(|e| self.at_object(e, key))?;
            let segments = FetchedSegments::Apart {
                data: received.data,
                ranges,
                apart,
                memory,
            };
            return Ok(FetchedBlob { header, segments });
        }
        let data = received.data;
        let (header, ranges) =
            frame::verify_with(&data, checks).map_err(|e| self.at_object(e, key))?;
        let segments = match header.codec {
            None => FetchedSegments::InPlace { data, ranges },
            Some(_) => FetchedSegments::Decoded(
                ranges
                    .into_iter()
                    .enumerate()
                    .map(|(index, range)| {
                        frame::decode_segment(&header, index, &data[range])
                            .map(|raw| raw.into_owned())
                    })
                    .collect::<Result<_>>()
                    .map_err(|e| self.at_object(e, key))?,
            ),
        };
        Ok(FetchedBlob { header, segments })
    }

    /// Uploads `segments` one after another as the object at `key`, replacing any object there,
    /// without joining them first; returns the number of bytes written.
    pub fn put(&self, key: &str, segments: &[&[u8]]) -> Result<u64> {
        let path = self.path(key)?;
        let len = segments.iter().map(|segment| segment.len() as u64).sum();
        self.upload(key, &path, len, |out| {
            segments
                .iter()
                .try_for_each(|segment| out.write_all(segment))
        })?;
        Ok(len)
    }

    /// Creates the object at `key` unless one exists: `true` when this call created it, `false`
    /// when an object was already there (it is left as it was). One PUT, so for small objects.
    pub fn put_if_absent(&self, key: &str, data: &[u8]) -> Result<bool> {
        let path = self.path(key)?;
        let client = self.client()?;
        let data = Bytes::copy_from_slice(data);
        for _ in 0..CREATE_ATTEMPTS {
            let payload = PutPayload::from(data.clone());
            let created = block_on(client.put_opts(&path, payload, PutMode::Create.into()))?;
            match created {
                Ok(_) => return Ok(true),
                // S3 answers a create that races another one with 409, which object_store also
                // reports as AlreadyExists: only an object that is there means "no".
                Err(
                    object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. },
                ) => match block_on(client.head(&path))? {
                    Ok(_) => return Ok(false),
                    Err(object_store::Error::NotFound { .. }) => continue,
                    Err(error) => return Err(self.convert(error, key, Action::Inspect)),
                },
                Err(error) => return Err(self.convert(error, key, Action::Write)),
            }
        }
        Err(Error::Unavailable(format!(
            "creating {} conflicted with other writers {CREATE_ATTEMPTS} times; try again",
            self.target.object(key)
        )))
    }

    /// The whole object at `key`, in one buffer.
    pub fn get(&self, key: &str) -> Result<Vec<u8>> {
        Ok(self.fetch(key, None)?.data)
    }

    /// The object at `key`, with a blob's largest segment apart when `place` gives memory.
    fn fetch(&self, key: &str, place: Option<&mut PlaceSegment<'_>>) -> Result<Received> {
        let path = self.path(key)?;
        let client = self.client()?;
        let reads = get_all(&*client, &path, self.reads_in_flight(), place);
        block_on(reads)?.map_err(|e| match e {
            Fetch::Store(error) => self.convert(error, key, Action::Read),
            Fetch::TooLarge(size) => Error::OutOfMemory(format!(
                "{} has {size} bytes, more than can be allocated",
                self.target.object(key)
            )),
            Fetch::Changed => Error::Unavailable(format!(
                "{} changed while it was read; read it again",
                self.target.object(key)
            )),
        })
    }

    pub fn head(&self, key: &str) -> Result<ObjectInfo> {
        let path = self.path(key)?;
        let client = self.client()?;
        let meta =
            block_on(client.head(&path))?.map_err(|e| self.convert(e, key, Action::Inspect))?;
        Ok(self.info(meta))
    }

    pub fn exists(&self, key: &str) -> Result<bool> {
        match self.head(key) {
            Ok(_) => Ok(true),
            Err(Error::NotFound(_)) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Deletes the object at `key`. A missing object is not an error (S3 does not tell).
    pub fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        let client = self.client()?;
        match block_on(client.delete(&path))? {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(self.convert(error, key, Action::Delete)),
        }
    }

    /// Every object under the folder `prefix` (`""` for the whole store), sorted by key.
    /// A prefix matches whole folder names: `"a"` lists `a/b`, not `ab`.
    pub fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let path = if prefix
            .split(['/', '\\'])
            .all(|part| part.is_empty() || part == ".")
        {
            self.prefix.clone()
        } else {
            self.path(prefix)?
        };
        let client = self.client()?;
        let listed = block_on(async {
            let root = (!path.as_ref().is_empty()).then_some(&path);
            client.list(root).try_collect::<Vec<ObjectMeta>>().await
        })?
        .map_err(|e| self.convert(e, prefix, Action::List))?;
        let mut infos: Vec<ObjectInfo> = listed.into_iter().map(|meta| self.info(meta)).collect();
        infos.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(infos)
    }

    fn upload(
        &self,
        key: &str,
        path: &Path,
        len: u64,
        write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<()> {
        let client = self.client()?;
        upload::upload(&*client, path, len, &self.options.upload, write).map_err(|e| match e {
            UploadError::Store(error) => self.convert(error, key, Action::Write),
            UploadError::Local(error) => error,
        })
    }

    /// Ranged GETs of one object at once (see [`StoreOptions::reads_in_flight`]).
    fn reads_in_flight(&self) -> usize {
        let default = if is_plain_http(&self.target) {
            1
        } else {
            READS_IN_FLIGHT
        };
        self.options.reads_in_flight.unwrap_or(default).max(1)
    }

    fn upload_chunks(&self, key: &str, path: &Path, chunks: Vec<Bytes>) -> Result<()> {
        let client = self.client()?;
        upload::upload_chunks(&*client, path, chunks, &self.options.upload).map_err(|e| match e {
            UploadError::Store(error) => self.convert(error, key, Action::Write),
            UploadError::Local(error) => error,
        })
    }

    /// The client of this process: a handle used in a forked child gets a new one, as the
    /// parent's connections belong to a runtime whose threads the child does not have.
    fn client(&self) -> Result<Arc<dyn ObjectStore>> {
        let pid = std::process::id();
        let mut client = self.client.lock().unwrap_or_else(PoisonError::into_inner);
        if client.pid != pid {
            if self.target.kind != StoreKind::Memory {
                let fresh = config::build(&self.url, &self.options)?.client;
                // Never dropped in the child: dropping would touch the parent's runtime.
                std::mem::forget(std::mem::replace(&mut client.store, fresh));
            }
            client.pid = pid;
        }
        Ok(Arc::clone(&client.store))
    }

    /// The object path of `key` under the store's prefix; refuses unsafe keys.
    fn path(&self, key: &str) -> Result<Path> {
        let parts = crate::fs::key_parts(key)?;
        Ok(self
            .prefix
            .parts()
            .chain(parts.into_iter().map(PathPart::from))
            .collect())
    }

    fn info(&self, meta: ObjectMeta) -> ObjectInfo {
        ObjectInfo {
            key: self.key_of(&meta.location),
            size: meta.size,
            last_modified: meta.last_modified.into(),
            e_tag: meta.e_tag,
        }
    }

    /// The key of an object path under the prefix, its parts decoded as [`Store::path`]
    /// encoded them.
    fn key_of(&self, location: &Path) -> String {
        let decode = |part: PathPart<'_>| {
            percent_encoding::percent_decode_str(part.as_ref())
                .decode_utf8_lossy()
                .into_owned()
        };
        match location.prefix_match(&self.prefix) {
            Some(parts) => parts.map(decode).collect::<Vec<_>>().join("/"),
            None => location.parts().map(decode).collect::<Vec<_>>().join("/"),
        }
    }

    /// A failed ranged read: an object too short for the range (an empty one) is a truncated
    /// blob, not an error of the store.
    fn range_read_failed(
        &self,
        client: &dyn ObjectStore,
        path: &Path,
        key: &str,
        error: object_store::Error,
    ) -> Error {
        let converted = self.convert(error, key, Action::Read);
        if matches!(converted, Error::Io { .. }) {
            if let Ok(Ok(meta)) = block_on(client.head(path)) {
                if meta.size < frame::PRELUDE_LEN as u64 {
                    return self.at_object(frame::too_short(meta.size as usize), key);
                }
            }
        }
        converted
    }

    fn convert(&self, error: object_store::Error, key: &str, action: Action) -> Error {
        errors::convert(error, &self.target, key, action)
    }

    /// Names the object in an error about its content.
    fn at_object(&self, error: Error, key: &str) -> Error {
        let object = self.target.object(key);
        match error {
            Error::Corrupt(message) => Error::Corrupt(format!("{object}: {message}")),
            Error::UnsupportedFormat(message) => {
                Error::UnsupportedFormat(format!("{object}: {message}"))
            }
            other => other,
        }
    }
}

/// Whether the store is reached over plain HTTP: a local or LAN server (no cloud store is
/// reached that way), which the defaults of reads and uploads are chosen for.
fn is_plain_http(target: &Target) -> bool {
    (target.endpoint.as_deref()).is_some_and(|endpoint| endpoint.starts_with("http://"))
}

/// The bytes of `range` (cut at the object's end) and the object's whole length.
async fn get_range(
    client: &dyn ObjectStore,
    path: &Path,
    range: Range<u64>,
) -> object_store::Result<(Bytes, u64)> {
    let options = GetOptions {
        range: Some(GetRange::Bounded(range)),
        ..GetOptions::default()
    };
    let fetched = client.get_opts(path, options).await?;
    let len = fetched.meta.size;
    Ok((fetched.bytes().await?, len))
}

enum Fetch {
    Store(object_store::Error),
    TooLarge(u64),
    /// A response's length was not the one asked for: the object changed while it was read.
    Changed,
}

/// Objects larger than this are read as concurrent ranged GETs of this many bytes: one
/// connection rarely carries what the link (or the server's cores) can.
const READ_CHUNK: u64 = 8 * 1024 * 1024;
const READS_IN_FLIGHT: usize = 4;

/// An object as received: `data` holds it whole, or without the segment `apart` of a blob,
/// received into the caller's memory.
struct Received {
    data: Vec<u8>,
    apart: Option<(usize, Box<dyn SegmentMemory>)>,
}

/// The whole object, read into one buffer of its size (the one copy out of the network's
/// buffers): a blob's segments are then handed out as views of it. With `place`, the largest
/// segment of an uncompressed blob goes into the memory `place` gives instead, decided once the
/// blob's header has arrived (see [`Store::read_blob_placing`]).
///
/// With one read in flight, that is one plain GET. Otherwise the first request asks for the
/// first [`READ_CHUNK`] bytes and learns the object's size and entity tag; the rest is read in
/// chunks, `in_flight` at once, each only if the object is still the same one (`If-Match`), so
/// a replaced object is never read half old, half new.
async fn get_all(
    client: &dyn ObjectStore,
    path: &Path,
    in_flight: usize,
    place: Option<&mut PlaceSegment<'_>>,
) -> std::result::Result<Received, Fetch> {
    let fetched = if in_flight <= 1 {
        client.get(path).await.map_err(Fetch::Store)?
    } else {
        let first_range = GetOptions {
            range: Some(GetRange::Bounded(0..READ_CHUNK)),
            ..GetOptions::default()
        };
        match client.get_opts(path, first_range).await {
            Ok(fetched) => fetched,
            // An empty object has no first byte to range over: ask for all of it.
            Err(error) if is_unsatisfiable_range(&error) => {
                client.get(path).await.map_err(Fetch::Store)?
            }
            Err(error) => return Err(Fetch::Store(error)),
        }
    };
    let size = fetched.meta.size;
    let e_tag = fetched.meta.e_tag.clone();
    let first_len = fetched.range.end - fetched.range.start;
    let too_large = || Fetch::TooLarge(size);
    let size_usize = usize::try_from(size).map_err(|_| too_large())?;
    let mut body = fetched.into_stream();
    // The first bytes, kept as they came (no copy), until the header is known.
    let mut arrived: Vec<Bytes> = Vec::new();
    let mut apart = None;
    if let Some(place) = place {
        let head = header_bytes(&mut arrived, &mut body).await?;
        if let Some((index, range)) = segment_to_place(&head, size) {
            if let Some(memory) = place(range.end - range.start) {
                apart = Some((index, range, memory));
            }
        }
    }
    let apart_len = apart
        .as_ref()
        .map_or(0, |(_, range, _)| range.end - range.start);
    let mut data = zeroed(size_usize - apart_len).ok_or_else(too_large)?;
    let mut apart_memory = apart;
    let first_len = usize::try_from(first_len).map_err(|_| too_large())?;
    let chunk = READ_CHUNK as usize;
    let mut ranges = Vec::with_capacity(1 + (size_usize - first_len.min(size_usize)) / chunk);
    ranges.push(0..first_len.min(size_usize));
    ranges.extend(
        (first_len..size_usize)
            .step_by(chunk)
            .map(|start| start..(start + chunk).min(size_usize)),
    );
    {
        let gap = apart_memory
            .as_mut()
            .map(|(_, range, memory)| (range.clone(), memory.bytes()));
        let mut targets = carve(&mut data, gap, &ranges).into_iter();
        let first_targets = targets.next().expect("the first range");
        fill(first_targets, arrived, body).await?;
        let reads = targets.zip(&ranges[1..]).map(|(out, range)| {
            let options = GetOptions {
                range: Some(GetRange::Bounded(range.start as u64..range.end as u64)),
                if_match: e_tag.clone(),
                ..GetOptions::default()
            };
            async move {
                let fetched = client.get_opts(path, options).await.map_err(Fetch::Store)?;
                fill(out, Vec::new(), fetched.into_stream()).await
            }
        });
        let mut reads = futures::stream::iter(reads).buffer_unordered(in_flight.max(1));
        while let Some(read) = reads.next().await {
            read?;
        }
    }
    Ok(Received {
        data,
        apart: apart_memory.map(|(index, _, memory)| (index, memory)),
    })
}

/// Reads from `body` (after what `arrived` holds) until the blob's header is in, and returns a
/// copy of the header's bytes; what was read stays in `arrived`. Fewer bytes when the body ends
/// first or is not a blob: the read goes on, and the checks of the whole object report it.
async fn header_bytes(
    arrived: &mut Vec<Bytes>,
    body: &mut futures::stream::BoxStream<'static, object_store::Result<Bytes>>,
) -> std::result::Result<Vec<u8>, Fetch> {
    let mut head = Vec::new();
    // The bytes that arrived and are not in `head` yet start at `arrived[next].slice(offset..)`.
    let (mut next, mut offset) = (0, 0);
    loop {
        let wanted = if head.len() < frame::PRELUDE_LEN {
            frame::PRELUDE_LEN
        } else {
            match frame::header_len_from_prelude(&head[..frame::PRELUDE_LEN]) {
                Ok(len) => len,
                Err(_) => return Ok(head),
            }
        };
        if head.len() >= wanted {
            return Ok(head);
        }
        if next == arrived.len() {
            let Some(chunk) = body.next().await else {
                return Ok(head);
            };
            arrived.push(chunk.map_err(Fetch::Store)?);
        }
        let chunk = &arrived[next][offset..];
        let taken = chunk.len().min(wanted - head.len());
        head.extend_from_slice(&chunk[..taken]);
        if taken == chunk.len() {
            (next, offset) = (next + 1, 0);
        } else {
            offset += taken;
        }
    }
}

/// The index and stored range of the segment of a blob (whose header is `head`, and whose
/// object is `size` bytes) worth receiving apart: the largest, if the blob is uncompressed and
/// the segment at least [`PLACE_APART_FROM`] bytes. `None` for anything else, a damaged header
/// included (the whole object's checks say what is wrong).
fn segment_to_place(head: &[u8], size: u64) -> Option<(usize, Range<usize>)> {
    // A body that ended before its header did is not a blob: nothing to decode.
    let prelude = head.get(..frame::PRELUDE_LEN)?;
    if frame::header_len_from_prelude(prelude).ok()? != head.len() {
        return None;
    }
    let header = BlobHeader::decode(head).ok()?;
    if header.codec.is_some() {
        return None;
    }
    let layout = frame::Layout::new(&header, head.len() as u64).ok()?;
    if layout.total_len() != size {
        return None;
    }
    let (index, extent) = (layout.segments.iter().enumerate())
        .max_by_key(|(_, extent)| extent.data.end - extent.data.start)?;
    if extent.data.end - extent.data.start < PLACE_APART_FROM {
        return None;
    }
    let start = usize::try_from(extent.data.start).ok()?;
    let end = usize::try_from(extent.data.end).ok()?;
    Some((index, start..end))
}

/// The memory that receives each of `ranges` (consecutive ranges of the object, from 0), as
/// pieces in order: `data` holds the object without the bytes of `gap` (if any), which go to
/// the gap's own memory.
fn carve<'a>(
    data: &'a mut [u8],
    gap: Option<(Range<usize>, &'a mut [u8])>,
    ranges: &[Range<usize>],
) -> Vec<Vec<&'a mut [u8]>> {
    let (gap_range, mut gap_rest) = match gap {
        Some((range, memory)) => (range, memory),
        None => (usize::MAX..usize::MAX, &mut [][..]),
    };
    let mut data_rest = data;
    fn take<'a>(rest: &mut &'a mut [u8], len: usize) -> &'a mut [u8] {
        let (piece, after) = std::mem::take(rest).split_at_mut(len);
        *rest = after;
        piece
    }
    ranges
        .iter()
        .map(|range| {
            let mut pieces = Vec::new();
            let mut at = range.start;
            while at < range.end {
                let piece = if gap_range.contains(&at) {
                    take(&mut gap_rest, range.end.min(gap_range.end) - at)
                } else if at < gap_range.start {
                    take(&mut data_rest, range.end.min(gap_range.start) - at)
                } else {
                    take(&mut data_rest, range.end - at)
                };
                at += piece.len();
                pieces.push(piece);
            }
            pieces
        })
        .collect()
}

/// A buffer of `len` zero bytes, or `None` if it cannot be allocated. Zeroed by the allocator:
/// a large one comes straight from the system's zero pages, without a pass over it.
fn zeroed(len: usize) -> Option<Vec<u8>> {
    if len == 0 {
        return Some(Vec::new());
    }
    let layout = std::alloc::Layout::array::<u8>(len).ok()?;
    // SAFETY: `layout` has a non-zero size (len > 0).
    let data = unsafe { std::alloc::alloc_zeroed(layout) };
    if data.is_null() {
        return None;
    }
    // SAFETY: `data` was allocated by the global allocator with the layout of `len` bytes
    // (capacity `len`), and all `len` bytes are initialised (zero).
    let mut buffer = unsafe { Vec::from_raw_parts(data, len, len) };
    // Not touched yet: the response is then received into huge pages (see `crate::memory`).
    crate::memory::advise_huge_pages(&mut buffer);
    Some(buffer)
}

/// A 416 answer (or the in-memory store's "Invalid range"): the range asked for starts past the
/// object's end (an empty object).
fn is_unsatisfiable_range(error: &object_store::Error) -> bool {
    matches!(error, object_store::Error::Generic { .. }) && {
        let text = errors::full_text(error);
        text.contains("416") || text.contains("Invalid range")
    }
}

/// Copies what `arrived` holds, then the rest of a response's body, into `out`, pieces of
/// memory in order, which must be exactly the body's length.
async fn fill<'a>(
    out: Vec<&'a mut [u8]>,
    arrived: Vec<Bytes>,
    mut chunks: futures::stream::BoxStream<'static, object_store::Result<Bytes>>,
) -> std::result::Result<(), Fetch> {
    let mut pieces = out.into_iter();
    let mut current: &'a mut [u8] = &mut [];
    let mut copy = |mut chunk: &[u8]| {
        while !chunk.is_empty() {
            if current.is_empty() {
                current = pieces.next().ok_or(Fetch::Changed)?;
                continue;
            }
            let len = chunk.len().min(current.len());
            let (target, rest) = std::mem::take(&mut current).split_at_mut(len);
            target.copy_from_slice(&chunk[..len]);
            current = rest;
            chunk = &chunk[len..];
        }
        Ok(())
    };
    for chunk in arrived {
        copy(&chunk)?;
    }
    while let Some(chunk) = chunks.next().await {
        copy(&chunk.map_err(Fetch::Store)?)?;
    }
    if !current.is_empty() || pieces.any(|piece| !piece.is_empty()) {
        return Err(Fetch::Changed);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
