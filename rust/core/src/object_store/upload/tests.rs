use super::*;
use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::{
    GetOptions, GetResult, ListResult, ObjectMeta, PutMultipartOptions, PutOptions, PutResult,
    UploadPart,
};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PART: usize = MIB as usize;

/// An in-memory store whose multipart uploads record their parts, hold each part for a while
/// (so overlapping uploads show), and fail the part numbered `fail_part`.
#[derive(Debug)]
struct RecordingStore {
    inner: InMemory,
    log: Arc<PartLog>,
    fail_part: Option<usize>,
}

#[derive(Debug, Default)]
struct PartLog {
    sizes: Mutex<Vec<usize>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    completed: AtomicBool,
    aborted: AtomicBool,
}

impl RecordingStore {
    fn new(fail_part: Option<usize>) -> RecordingStore {
        RecordingStore {
            inner: InMemory::new(),
            log: Arc::default(),
            fail_part,
        }
    }

    fn stored(&self, path: &Path) -> object_store::Result<Vec<u8>> {
        let runtime = blocking_runtime().unwrap();
        let fetched = runtime.block_on(self.inner.get(path))?;
        Ok(runtime.block_on(fetched.bytes())?.to_vec())
    }

    fn part_sizes(&self) -> Vec<usize> {
        self.log.sizes.lock().unwrap().clone()
    }
}

impl fmt::Display for RecordingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordingStore")
    }
}

#[derive(Debug)]
struct RecordingUpload {
    inner: Box<dyn MultipartUpload>,
    log: Arc<PartLog>,
    next_part: usize,
    fail_part: Option<usize>,
}

#[async_trait]
impl MultipartUpload for RecordingUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let index = self.next_part;
        self.next_part += 1;
        self.log.sizes.lock().unwrap().push(data.content_length());
        let log = Arc::clone(&self.log);
        let fail = self.fail_part == Some(index);
        let stored = self.inner.put_part(data);
        Box::pin(async move {
            let now = log.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            log.max_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(150)).await;
            log.in_flight.fetch_sub(1, Ordering::SeqCst);
            if fail {
                return Err(object_store::Error::Generic {
                    store: "test",
                    source: "injected part failure".into(),
                });
            }
            stored.await
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.log.completed.store(true, Ordering::SeqCst);
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.log.aborted.store(true, Ordering::SeqCst);
        self.inner.abort().await
    }
}

#[async_trait]
impl ObjectStore for RecordingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Ok(Box::new(RecordingUpload {
            inner: self.inner.put_multipart_opts(location, opts).await?,
            log: Arc::clone(&self.log),
            next_part: 0,
            fail_part: self.fail_part,
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn delete(&self, location: &Path) -> object_store::Result<()> {
        self.inner.delete(location).await
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy(&self, from: &Path, to: &Path) -> object_store::Result<()> {
        self.inner.copy(from, to).await
    }

    async fn copy_if_not_exists(&self, from: &Path, to: &Path) -> object_store::Result<()> {
        self.inner.copy_if_not_exists(from, to).await
    }
}

fn options(part_size: usize, max_parts_in_flight: usize) -> UploadOptions {
    UploadOptions {
        part_size,
        max_parts_in_flight,
        multipart_threshold: None,
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[test]
fn a_large_upload_goes_in_full_parts_with_a_bounded_number_in_flight() {
    let store = RecordingStore::new(None);
    let path = Path::from("big");
    let data = pattern(5 * PART + 123);
    upload(&store, &path, data.len() as u64, &options(PART, 2), |out| {
        // Pieces that straddle part boundaries, as a framed blob's writes do.
        data.chunks(300_000)
            .try_for_each(|piece| out.write_all(piece))
    })
    .unwrap();
    assert_eq!(store.part_sizes(), [PART, PART, PART, PART, PART, 123]);
    assert_eq!(store.log.max_in_flight.load(Ordering::SeqCst), 2);
    assert!(store.log.completed.load(Ordering::SeqCst));
    assert!(!store.log.aborted.load(Ordering::SeqCst));
    assert_eq!(store.stored(&path).unwrap(), data);
}

#[test]
fn an_upload_that_fits_in_a_part_is_one_put() {
    let store = RecordingStore::new(Some(0));
    let path = Path::from("small");
    let data = pattern(PART);
    upload(&store, &path, data.len() as u64, &options(PART, 2), |out| {
        out.write_all(&data)
    })
    .unwrap();
    assert!(store.part_sizes().is_empty());
    assert_eq!(store.stored(&path).unwrap(), data);
}

#[test]
fn a_failed_part_aborts_the_upload_and_leaves_no_object() {
    let store = RecordingStore::new(Some(1));
    let path = Path::from("failed");
    let data = pattern(6 * PART);
    let result = upload(&store, &path, data.len() as u64, &options(PART, 2), |out| {
        out.write_all(&data)
    });
    match result {
        Err(UploadError::Store(error)) => {
            assert!(
                error.to_string().contains("injected part failure"),
                "{error}"
            )
        }
        other => panic!("expected the part's failure, got {other:?}"),
    }
    assert!(store.log.aborted.load(Ordering::SeqCst));
    assert!(!store.log.completed.load(Ordering::SeqCst));
    // The writer was stopped soon after the failure, not fed to the end.
    assert!(store.part_sizes().len() < 6, "{:?}", store.part_sizes());
    assert!(matches!(
        store.stored(&path),
        Err(object_store::Error::NotFound { .. })
    ));
}

#[test]
fn a_writer_that_fails_aborts_the_upload() {
    let store = RecordingStore::new(None);
    let path = Path::from("unfinished");
    let result = upload(&store, &path, 4 * PART as u64, &options(PART, 2), |out| {
        out.write_all(&pattern(2 * PART + 5))?;
        Err(io::Error::other("the producer gave up"))
    });
    match result {
        Err(UploadError::Local(error)) => {
            assert!(
                error.to_string().contains("the producer gave up"),
                "{error}"
            )
        }
        other => panic!("expected the writer's failure, got {other:?}"),
    }
    assert!(store.log.aborted.load(Ordering::SeqCst));
    assert!(!store.log.completed.load(Ordering::SeqCst));
    assert!(store.stored(&path).is_err());
}

#[test]
fn parts_grow_only_when_the_part_count_would_pass_the_limit() {
    let eight = 8 * MIB as usize;
    assert_eq!(part_size_for(40 * MIB, eight), eight);
    assert_eq!(part_size_for(MAX_PARTS * 8 * MIB, eight), eight);
    assert_eq!(
        part_size_for(MAX_PARTS * 8 * MIB + 1, eight),
        9 * MIB as usize
    );
}
