//! Uploads that stream: what a writer produces leaves in parts while the rest is being produced,
//! so an upload never holds more than a few parts in memory, whatever its size.
use super::config::{UploadOptions, MAX_PART_SIZE};
use super::runtime::blocking_runtime;
use crate::error::Error;
use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStore, PutPayload};
use std::io::{self, Write};
use std::mem;
use tokio::runtime::Handle;
use tokio::task::JoinSet;

/// S3 takes at most this many parts; larger uploads get larger parts.
const MAX_PARTS: u64 = 10_000;
const MIB: u64 = 1024 * 1024;

/// Why an upload failed: the store said no, or producing the bytes failed.
#[derive(Debug)]
pub(super) enum UploadError {
    Store(object_store::Error),
    Local(Error),
}

/// Uploads the `len` bytes that `write` produces to `path`: in one PUT when they fit in one part,
/// otherwise as a multipart upload of `options.part_size` parts, at most
/// `options.max_parts_in_flight` uploading at once. Either way the object appears whole or not
/// at all: a multipart upload that fails is aborted.
pub(super) fn upload(
    store: &dyn ObjectStore,
    path: &Path,
    len: u64,
    options: &UploadOptions,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), UploadError> {
    let runtime = blocking_runtime().map_err(UploadError::Local)?;
    if len <= options.single_put_limit() as u64 {
        let mut buffer = Vec::with_capacity(len as usize);
        write(&mut buffer).map_err(producing_failed)?;
        runtime
            .block_on(store.put(path, PutPayload::from(buffer)))
            .map_err(UploadError::Store)?;
        return Ok(());
    }
    let upload = runtime
        .block_on(store.put_multipart(path))
        .map_err(UploadError::Store)?;
    let mut parts = PartSink {
        upload: Some(upload),
        tasks: JoinSet::new(),
        runtime: runtime.handle().clone(),
        part: Vec::new(),
        part_size: part_size_for(len, options.part_size),
        max_in_flight: options.max_parts_in_flight,
        unsent: len,
        failure: None,
    };
    let written = write(&mut parts);
    parts.finish(written)
}

/// Uploads `chunks`, one after another, to `path` without copying them: up to the single-PUT
/// limit as one PUT whose body is the chunks, otherwise as a multipart upload whose parts are
/// slices of the chunks (views, not copies), at most `options.max_parts_in_flight` at once.
/// Either way the object appears whole or not at all.
pub(super) fn upload_chunks(
    store: &dyn ObjectStore,
    path: &Path,
    chunks: Vec<Bytes>,
    options: &UploadOptions,
) -> Result<(), UploadError> {
    let runtime = blocking_runtime().map_err(UploadError::Local)?;
    let len: u64 = chunks.iter().map(|chunk| chunk.len() as u64).sum();
    if len <= options.single_put_limit() as u64 {
        runtime
            .block_on(store.put(path, PutPayload::from_iter(chunks)))
            .map_err(UploadError::Store)?;
        return Ok(());
    }
    let parts = into_parts(chunks, part_size_for(len, options.part_size));
    let mut upload = runtime
        .block_on(store.put_multipart(path))
        .map_err(UploadError::Store)?;
    let uploaded = runtime.block_on(async {
        let sending = futures::stream::iter(parts).map(|part| upload.put_part(part));
        let mut sending = sending.buffer_unordered(options.max_parts_in_flight.max(1));
        while let Some(sent) = sending.next().await {
            sent?;
        }
        drop(sending);
        upload.complete().await.map(|_| ())
    });
    if let Err(error) = uploaded {
        // The store drops the parts it has; if it cannot be reached, a lifecycle rule does.
        let _ = runtime.block_on(upload.abort());
        return Err(UploadError::Store(error));
    }
    Ok(())
}

/// `chunks` cut into payloads of `part_size` bytes (the last one shorter), each made of slices
/// of the chunks.
fn into_parts(chunks: Vec<Bytes>, part_size: usize) -> Vec<PutPayload> {
    let mut parts = Vec::new();
    let mut part: Vec<Bytes> = Vec::new();
    let mut filled = 0;
    for mut chunk in chunks {
        while !chunk.is_empty() {
            let taken = chunk.len().min(part_size - filled);
            part.push(chunk.split_to(taken));
            filled += taken;
            if filled == part_size {
                parts.push(PutPayload::from_iter(mem::take(&mut part)));
                filled = 0;
            }
        }
    }
    if filled > 0 {
        parts.push(PutPayload::from_iter(part));
    }
    parts
}

/// The configured part size, raised when `len` would need more than [`MAX_PARTS`] parts.
fn part_size_for(len: u64, configured: usize) -> usize {
    let needed = len.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    (configured as u64).max(needed).min(MAX_PART_SIZE as u64) as usize
}

fn producing_failed(error: io::Error) -> UploadError {
    UploadError::Local(Error::io("producing the bytes to upload", error))
}

/// A `Write` that cuts what it is given into parts and uploads each one as soon as it is full.
struct PartSink {
    /// `None` once the upload was completed or aborted.
    upload: Option<Box<dyn MultipartUpload>>,
    tasks: JoinSet<object_store::Result<()>>,
    runtime: Handle,
    part: Vec<u8>,
    part_size: usize,
    max_in_flight: usize,
    /// Bytes not yet handed to an upload task, the part being filled included.
    unsent: u64,
    /// The first part upload that failed; the writer is stopped with an `io::Error` meanwhile.
    failure: Option<object_store::Error>,
}

impl Write for PartSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.failure.is_some() {
            return Err(part_failed());
        }
        if self.part.capacity() == 0 {
            // Sized to what is left, so the last part does not reserve a whole part's memory.
            self.part
                .reserve_exact(self.unsent.min(self.part_size as u64) as usize);
        }
        let taken = data.len().min(self.part_size - self.part.len());
        self.part.extend_from_slice(&data[..taken]);
        if self.part.len() == self.part_size {
            self.send_part()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl PartSink {
    /// Starts uploading the part being filled, once fewer than `max_in_flight` are uploading:
    /// that wait is what bounds the memory held to `max_in_flight + 1` parts.
    fn send_part(&mut self) -> io::Result<()> {
        self.wait_until_in_flight_below(self.max_in_flight)?;
        let part = mem::take(&mut self.part);
        self.unsent = self.unsent.saturating_sub(part.len() as u64);
        let upload = self
            .upload
            .as_mut()
            .expect("parts are sent only while the upload is open");
        let sending = upload.put_part(PutPayload::from(part));
        self.tasks.spawn_on(sending, &self.runtime);
        Ok(())
    }

    fn wait_until_in_flight_below(&mut self, limit: usize) -> io::Result<()> {
        while self.tasks.len() >= limit {
            let Some(finished) = self.runtime.block_on(self.tasks.join_next()) else {
                break;
            };
            let outcome = finished.unwrap_or_else(|join_error| {
                Err(object_store::Error::Generic {
                    store: "upload",
                    source: Box::new(join_error),
                })
            });
            if let Err(error) = outcome {
                self.failure.get_or_insert(error);
                return Err(part_failed());
            }
        }
        Ok(())
    }

    /// Sends the last part and completes the upload, or aborts it if anything failed.
    fn finish(mut self, written: io::Result<()>) -> Result<(), UploadError> {
        let outcome = written.and_then(|()| {
            if !self.part.is_empty() {
                self.send_part()?;
            }
            self.wait_until_in_flight_below(1)
        });
        let outcome = match outcome {
            Ok(()) => self.complete(),
            Err(error) => Err(match self.failure.take() {
                Some(store_error) => UploadError::Store(store_error),
                None => producing_failed(error),
            }),
        };
        if outcome.is_err() {
            self.abort();
        }
        outcome
    }

    fn complete(&mut self) -> Result<(), UploadError> {
        let upload = self
            .upload
            .as_mut()
            .expect("the upload is open until completed or aborted");
        self.runtime
            .block_on(upload.complete())
            .map_err(UploadError::Store)?;
        self.upload = None;
        Ok(())
    }

    /// Stops the parts still uploading, then aborts the upload so the store drops the parts it
    /// has. A failed abort leaves only invisible parts, which a bucket lifecycle rule removes.
    fn abort(&mut self) {
        self.tasks.abort_all();
        let tasks = &mut self.tasks;
        self.runtime
            .block_on(async { while tasks.join_next().await.is_some() {} });
        if let Some(mut upload) = self.upload.take() {
            let _ = self.runtime.block_on(upload.abort());
        }
    }
}

impl Drop for PartSink {
    /// Reached with the upload open only when the writer panicked: abort it in the background.
    fn drop(&mut self) {
        if let Some(mut upload) = self.upload.take() {
            self.tasks.abort_all();
            drop(self.runtime.spawn(async move {
                let _ = upload.abort().await;
            }));
        }
    }
}

fn part_failed() -> io::Error {
    io::Error::other("uploading a part failed")
}

#[cfg(test)]
mod tests;
