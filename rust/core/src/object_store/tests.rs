use super::*;
use crate::codec::Codec;
use std::time::{Duration, Instant};

const SERIALIZER: &str = r#"{"type": "pickle"}"#;
const MIB: usize = 1024 * 1024;

fn frame_options(codec: Option<Codec>) -> FrameOptions<'static> {
    FrameOptions {
        serializer: SERIALIZER,
        codec,
        ..FrameOptions::default()
    }
}

/// A new, empty in-memory store with `part_size` parts, uploading anything larger than one part
/// as a multipart upload.
fn memory_store(part_size: usize) -> Store {
    let options = StoreOptions {
        upload: UploadOptions {
            part_size,
            multipart_threshold: Some(part_size),
            ..UploadOptions::default()
        },
        ..StoreOptions::default()
    };
    Store::open("memory://", options).unwrap()
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn in_place(blob: FetchedBlob) -> Vec<Vec<u8>> {
    match blob.segments {
        FetchedSegments::InPlace { data, ranges } => {
            ranges.into_iter().map(|r| data[r].to_vec()).collect()
        }
        FetchedSegments::Decoded(_) => panic!("an uncompressed blob was decoded"),
        FetchedSegments::Apart { .. } => panic!("read_blob placed a segment apart"),
    }
}

/// Memory a test gives a read to place a segment in.
#[derive(Debug)]
struct GivenMemory(Vec<u8>);

impl SegmentMemory for GivenMemory {
    fn bytes(&mut self) -> &mut [u8] {
        &mut self.0
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}

#[test]
fn the_largest_segment_of_an_uncompressed_blob_is_received_into_the_memory_given() {
    for reads_in_flight in [1, 4] {
        let store = Store::open(
            "memory://",
            StoreOptions {
                reads_in_flight: Some(reads_in_flight),
                ..StoreOptions::default()
            },
        )
        .unwrap();
        // 9 MiB: across two of the 8 MiB ranges of a ranged read.
        let segments = [pattern(100, 1), pattern(9 * MIB + 3, 2), pattern(300, 3)];
        let borrowed: Vec<&[u8]> = segments.iter().map(Vec::as_slice).collect();
        store
            .write_blob("k", &borrowed, &frame_options(None))
            .unwrap();
        let mut asked = Vec::new();
        let mut place = |len: usize| -> Option<Box<dyn SegmentMemory>> {
            asked.push(len);
            Some(Box::new(GivenMemory(vec![0; len])))
        };
        let blob = store
            .read_blob_placing("k", &ReadChecks::default(), &mut place)
            .unwrap();
        assert_eq!(asked, [9 * MIB + 3]);
        let FetchedSegments::Apart {
            data,
            ranges,
            apart,
            memory,
        } = blob.segments
        else {
            panic!("no segment apart");
        };
        assert_eq!(apart, 1);
        let given = memory.into_any().downcast::<GivenMemory>().unwrap();
        assert_eq!(given.0, segments[1]);
        assert_eq!(data[ranges[0].clone()], segments[0]);
        assert_eq!(data[ranges[2].clone()], segments[2]);

        // Small and compressed blobs are read as before, without asking.
        store
            .write_blob("small", &borrowed[..1], &frame_options(None))
            .unwrap();
        store
            .write_blob("z", &borrowed, &frame_options(Some(Codec::Zstd)))
            .unwrap();
        let mut never = |_: usize| -> Option<Box<dyn SegmentMemory>> { panic!("asked") };
        for key in ["small", "z"] {
            let blob = store.read_blob_placing(key, &ReadChecks::default(), &mut never);
            assert!(!matches!(
                blob.unwrap().segments,
                FetchedSegments::Apart { .. }
            ));
        }
        // Memory refused: the segment stays in the read's buffer.
        let blob = store
            .read_blob_placing("k", &ReadChecks::default(), &mut |_| None)
            .unwrap();
        assert_eq!(in_place(blob), segments);
    }
}

#[test]
fn a_blob_larger_than_a_part_round_trips_verified() {
    let store = memory_store(8 * MIB);
    let segments = [
        pattern(1000, 1),
        pattern(25 * MIB + 3, 2),
        Vec::new(),
        pattern(15 * MIB, 3),
    ];
    let borrowed: Vec<&[u8]> = segments.iter().map(Vec::as_slice).collect();
    let written = store
        .write_blob("runs/big", &borrowed, &frame_options(None))
        .unwrap();

    assert_eq!(store.read_header("runs/big").unwrap(), written);
    let blob = store.read_blob("runs/big").unwrap();
    assert_eq!(blob.header, written);
    assert_eq!(in_place(blob), segments);
}

#[test]
fn the_object_is_byte_for_byte_a_local_blob() {
    let store = memory_store(MIB);
    let segments: [&[u8]; 3] = [b"stream", &[7; 3 * MIB], b"tail"];
    let written = store
        .write_blob("blob", &segments, &frame_options(None))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob");
    std::fs::write(&path, store.get("blob").unwrap()).unwrap();
    let (header, read) = crate::fs::read_blob(&path, &crate::frame::ReadChecks::default()).unwrap();
    assert_eq!(header, written);
    assert_eq!(read, segments.map(<[u8]>::to_vec));
    // Past the header (whose creation time differs), the bytes are those of a local frame.
    let object = store.get("blob").unwrap();
    let local = Frame::new(&segments, &frame_options(None))
        .unwrap()
        .to_vec()
        .1;
    let header_len = frame::header_len_from_prelude(&object[..frame::PRELUDE_LEN]).unwrap();
    assert_eq!(
        frame::header_len_from_prelude(&local[..frame::PRELUDE_LEN]).unwrap(),
        header_len
    );
    assert_eq!(object[header_len..], local[header_len..]);
}

#[test]
fn a_compressed_blob_is_decoded() {
    let store = memory_store(MIB);
    let segments = [pattern(3 * MIB, 5), b"small".to_vec()];
    let borrowed: Vec<&[u8]> = segments.iter().map(Vec::as_slice).collect();
    store
        .write_blob("zstd", &borrowed, &frame_options(Some(Codec::Zstd)))
        .unwrap();
    let blob = store.read_blob("zstd").unwrap();
    assert_eq!(blob.header.codec, Some(Codec::Zstd));
    match blob.segments {
        FetchedSegments::Decoded(decoded) => assert_eq!(decoded, segments),
        FetchedSegments::InPlace { .. } | FetchedSegments::Apart { .. } => {
            panic!("a compressed blob was not decoded")
        }
    }
}

fn expect_corrupt(result: Result<impl fmt::Debug>, mentioning: &str) {
    match result {
        Err(Error::Corrupt(message)) => {
            assert!(message.contains(mentioning), "{message}");
            assert!(message.contains("memory://blob"), "{message}");
        }
        other => panic!("expected a corrupt blob, got {other:?}"),
    }
}

#[test]
fn corrupted_and_truncated_objects_are_refused() {
    let store = memory_store(MIB);
    store
        .write_blob("blob", &[&pattern(100_000, 9)], &frame_options(None))
        .unwrap();
    let good = store.get("blob").unwrap();

    let mut payload_flipped = good.clone();
    let middle = payload_flipped.len() / 2;
    payload_flipped[middle] ^= 1;
    store.put("blob", &[&payload_flipped]).unwrap();
    store.read_header("blob").unwrap();
    expect_corrupt(store.read_blob("blob"), "checksum");

    let mut header_flipped = good.clone();
    header_flipped[20] ^= 1;
    store.put("blob", &[&header_flipped]).unwrap();
    expect_corrupt(store.read_header("blob"), "header");
    expect_corrupt(store.read_blob("blob"), "header");

    store.put("blob", &[&good[..good.len() - 8]]).unwrap();
    expect_corrupt(store.read_header("blob"), "truncated");
    expect_corrupt(store.read_blob("blob"), "truncated");

    store.put("blob", &[b""]).unwrap();
    expect_corrupt(store.read_header("blob"), "too few");
    expect_corrupt(store.read_blob("blob"), "too few");
}

#[test]
fn a_header_beyond_the_first_read_is_fetched_in_a_second() {
    let store = memory_store(MIB);
    // Enough segments that the header's JSON passes the first read.
    let segments: Vec<&[u8]> = vec![b"x"; 12_000];
    let written = store
        .write_blob("many", &segments, &frame_options(None))
        .unwrap();
    let object = store.get("many").unwrap();
    let header_len = frame::header_len_from_prelude(&object[..frame::PRELUDE_LEN]).unwrap();
    assert!(header_len as u64 > HEADER_READ, "{header_len}");
    assert_eq!(store.read_header("many").unwrap(), written);
}

#[test]
fn put_if_absent_creates_once() {
    let store = memory_store(MIB);
    assert!(store.put_if_absent("lock", b"first").unwrap());
    assert!(!store.put_if_absent("lock", b"second").unwrap());
    assert_eq!(store.get("lock").unwrap(), b"first");
}

#[test]
fn objects_are_put_got_listed_and_deleted() {
    let store = memory_store(MIB);
    assert_eq!(store.put("a/b", &[b"hello ", b"world"]).unwrap(), 11);
    store.put("a/c 100%#", &[b"odd name"]).unwrap();
    store.put("ab", &[b"x"]).unwrap();
    assert_eq!(store.get("a/b").unwrap(), b"hello world");
    assert_eq!(store.get("a\\c 100%#").unwrap(), b"odd name");

    let keys = |prefix: &str| -> Vec<String> {
        store
            .list(prefix)
            .unwrap()
            .into_iter()
            .map(|info| info.key)
            .collect()
    };
    assert_eq!(keys(""), ["a/b", "a/c 100%#", "ab"]);
    assert_eq!(keys("a"), ["a/b", "a/c 100%#"]);
    assert_eq!(keys("a/"), ["a/b", "a/c 100%#"]);
    assert!(keys("missing").is_empty());

    let info = store.head("a/b").unwrap();
    assert_eq!((info.key.as_str(), info.size), ("a/b", 11));
    assert!(info.last_modified <= SystemTime::now());
    assert!(store.exists("a/b").unwrap());

    store.delete("a/b").unwrap();
    store.delete("a/b").unwrap();
    assert!(!store.exists("a/b").unwrap());
    assert!(matches!(store.get("a/b"), Err(Error::NotFound(m)) if m.contains("memory://a/b")));
    assert!(matches!(store.head("a/b"), Err(Error::NotFound(_))));
    assert!(matches!(store.read_blob("a/b"), Err(Error::NotFound(_))));
    assert!(matches!(store.read_header("a/b"), Err(Error::NotFound(_))));
}

#[test]
fn named_memory_stores_are_shared_and_keys_are_relative_to_the_prefix() {
    let whole = Store::open("memory://shared-by-name", StoreOptions::default()).unwrap();
    let under = Store::open("memory://shared-by-name/team/", StoreOptions::default()).unwrap();
    under.put("result", &[b"r"]).unwrap();
    assert_eq!(whole.get("team/result").unwrap(), b"r");
    assert_eq!(under.list("").unwrap()[0].key, "result");
    assert_eq!(whole.list("").unwrap()[0].key, "team/result");
    assert!(Store::open("memory://", StoreOptions::default())
        .unwrap()
        .list("")
        .unwrap()
        .is_empty());
}

#[test]
fn keys_that_escape_the_prefix_are_refused() {
    let store = memory_store(MIB);
    for key in [
        "../x",
        "a/../../x",
        "/abs",
        "\\abs",
        "",
        "/",
        "./.",
        "C:x",
        "a\0b",
    ] {
        assert!(
            matches!(store.put(key, &[b"x"]), Err(Error::UnsafeKey(_))),
            "{key:?}"
        );
        assert!(
            matches!(store.get(key), Err(Error::UnsafeKey(_))),
            "{key:?}"
        );
        assert!(
            matches!(
                store.write_blob(key, &[b"x"], &frame_options(None)),
                Err(Error::UnsafeKey(_))
            ),
            "{key:?}"
        );
    }
    assert!(matches!(store.list("../up"), Err(Error::UnsafeKey(_))));
    assert!(store.list("").unwrap().is_empty());
}

/// Static credentials, so that no credential service is ever asked.
fn s3_options(endpoint: &str, timeout: Duration) -> StoreOptions {
    StoreOptions {
        config: vec![
            ("aws_access_key_id".into(), "test".into()),
            ("aws_secret_access_key".into(), "test".into()),
            ("aws_region".into(), "us-east-1".into()),
            ("aws_endpoint".into(), endpoint.into()),
        ],
        retry: RetryOptions {
            max_retries: 1,
            init_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(20),
            retry_timeout: Duration::from_secs(5),
        },
        timeout,
        connect_timeout: timeout,
        ..StoreOptions::default()
    }
}

fn expect_unavailable_within(result: Result<impl fmt::Debug>, started: Instant, limit: Duration) {
    let elapsed = started.elapsed();
    match result {
        Err(Error::Unavailable(message)) => {
            assert!(message.contains("\"bucket\""), "{message}");
            assert!(message.contains("127.0.0.1"), "{message}");
        }
        other => panic!("expected an unavailable store, got {other:?}"),
    }
    assert!(elapsed < limit, "took {elapsed:?}");
}

#[test]
fn an_endpoint_that_refuses_connections_fails_quickly() {
    let store = Store::open(
        "s3://bucket/prefix",
        s3_options("http://127.0.0.1:1", Duration::from_secs(2)),
    )
    .unwrap();
    let started = Instant::now();
    let result = store.get("key");
    expect_unavailable_within(result, started, Duration::from_secs(5));
    let started = Instant::now();
    let result = store.put("key", &[b"x"]);
    expect_unavailable_within(result, started, Duration::from_secs(5));
}

#[test]
fn an_endpoint_that_never_answers_fails_within_the_timeout() {
    // Connections complete in the kernel's backlog, but nothing ever answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let store = Store::open(
        "s3://bucket",
        s3_options(&endpoint, Duration::from_millis(300)),
    )
    .unwrap();
    let started = Instant::now();
    let result = store.read_header("key");
    // Two attempts of 300 ms and a short backoff.
    expect_unavailable_within(result, started, Duration::from_millis(1500));
}

#[test]
fn options_are_checked_when_the_store_is_opened() {
    let refused =
        |url: &str, options: StoreOptions, mentioning: &str| match Store::open(url, options) {
            Err(Error::InvalidArgument(message)) => {
                assert!(message.contains(mentioning), "{message}")
            }
            other => panic!("expected {url} to be refused, got {other:?}"),
        };
    let with = |key: &str| StoreOptions {
        config: vec![(key.into(), "x".into())],
        ..StoreOptions::default()
    };
    refused("s3://bucket", with("aws_no_such_key"), "aws_no_such_key");
    refused("memory://", with("aws_region"), "aws_region");
    refused("file:///tmp/x", StoreOptions::default(), "s3://bucket");
    refused("not a url", StoreOptions::default(), "s3://bucket");
    let small_parts = StoreOptions {
        upload: UploadOptions {
            part_size: MIB,
            max_parts_in_flight: 4,
            multipart_threshold: None,
        },
        ..StoreOptions::default()
    };
    refused("s3://bucket", small_parts, "5 MiB");
}

#[test]
fn each_cloud_is_opened_without_a_request() {
    let opened = |url: &str, config: &[(&str, &str)]| {
        let options = StoreOptions {
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..StoreOptions::default()
        };
        Store::open(url, options).unwrap().kind()
    };
    assert_eq!(
        opened("s3://bucket/p", &[("AWS_REGION", "eu-west-1")]),
        StoreKind::S3
    );
    assert_eq!(
        opened("gs://bucket/p", &[("google_skip_signature", "true")]),
        StoreKind::Gcs
    );
    assert_eq!(
        opened(
            "az://container/p",
            &[
                ("azure_storage_account_name", "account"),
                ("azure_storage_account_key", "a2V5"),
            ]
        ),
        StoreKind::Azure
    );
}

#[test]
fn the_multipart_threshold_defaults_to_one_gib_over_plain_http_and_64_mib_otherwise() {
    let threshold = |url: &str, endpoint: Option<&str>, set: Option<usize>| {
        let mut config = vec![("aws_region".to_owned(), "eu-west-1".to_owned())];
        if let Some(endpoint) = endpoint {
            config.push(("aws_endpoint".to_owned(), endpoint.to_owned()));
        }
        let options = StoreOptions {
            config: if url.starts_with("s3://") {
                config
            } else {
                Vec::new()
            },
            upload: UploadOptions {
                multipart_threshold: set,
                ..UploadOptions::default()
            },
            ..StoreOptions::default()
        };
        let store = Store::open(url, options).unwrap();
        store.upload_options().multipart_threshold.unwrap()
    };
    let local = Some("http://127.0.0.1:9000");
    let remote = Some("https://s3.example.com");
    assert_eq!(
        threshold("s3://b", local, None),
        PLAIN_HTTP_MULTIPART_THRESHOLD
    );
    assert_eq!(
        threshold("s3://b", remote, None),
        DEFAULT_MULTIPART_THRESHOLD
    );
    assert_eq!(
        threshold("memory://", None, None),
        DEFAULT_MULTIPART_THRESHOLD
    );
    // A threshold the caller chose is kept, whatever the endpoint.
    assert_eq!(threshold("s3://b", local, Some(10 * MIB)), 10 * MIB);
    assert_eq!(threshold("s3://b", remote, Some(0)), 0);
}

#[test]
fn calls_from_async_code_are_refused_instead_of_stalling_it() {
    let store = memory_store(MIB);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let result = runtime.block_on(async { store.get("key") });
    assert!(matches!(result, Err(Error::InvalidArgument(m)) if m.contains("async")));
    let result = runtime.block_on(async { store.put("key", &[b"x"]) });
    assert!(matches!(result, Err(Error::InvalidArgument(m)) if m.contains("async")));
}

#[test]
fn a_store_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Store>();
    let store = memory_store(MIB);
    std::thread::scope(|scope| {
        for thread in 0..4 {
            let store = &store;
            scope.spawn(move || {
                let key = format!("thread-{thread}");
                store
                    .write_blob(&key, &[&pattern(2 * MIB, thread)], &frame_options(None))
                    .unwrap();
                assert_eq!(
                    in_place(store.read_blob(&key).unwrap()),
                    [pattern(2 * MIB, thread)]
                );
            });
        }
    });
    assert_eq!(store.list("").unwrap().len(), 4);
}

#[test]
fn store_errors_say_what_went_wrong() {
    let store = Store::open(
        "s3://results/team",
        s3_options("http://127.0.0.1:1", Duration::from_secs(1)),
    )
    .unwrap();
    let convert = |error, action| errors::convert(error, &store.target, "key", action);
    let not_found = |body: &str| object_store::Error::NotFound {
        path: "team/key".into(),
        source: body.to_owned().into(),
    };
    let denied = |body: &str| object_store::Error::PermissionDenied {
        path: "team/key".into(),
        source: body.to_owned().into(),
    };

    match convert(not_found("<Code>NoSuchKey</Code>"), Action::Read) {
        Error::NotFound(message) => assert!(message.contains("s3://results/team/key"), "{message}"),
        other => panic!("{other:?}"),
    }
    for action in [Action::Read, Action::List] {
        match convert(not_found("<Code>NoSuchBucket</Code>"), action) {
            Error::BucketNotFound(message) => {
                assert!(
                    message.contains("S3 bucket \"results\" at http://127.0.0.1:1"),
                    "{message}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
    // A write cannot miss its object: a 404 without a body is about the bucket too.
    assert!(matches!(
        convert(not_found(""), Action::Write),
        Error::BucketNotFound(_)
    ));
    match convert(denied("<Code>InvalidAccessKeyId</Code>"), Action::Write) {
        Error::PermissionDenied(message) => {
            assert!(message.contains("refused the credentials"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    match convert(denied("<Code>AccessDenied</Code>"), Action::Delete) {
        Error::PermissionDenied(message) => {
            assert!(
                message.contains("deleting s3://results/team/key was denied"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    let refused = object_store::Error::Generic {
        store: "S3",
        source: Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
    };
    assert!(matches!(
        convert(refused, Action::Read),
        Error::Unavailable(_)
    ));
    let other = object_store::Error::Generic {
        store: "S3",
        source: "Server returned non-2xx status code: 400 Bad Request".into(),
    };
    assert!(matches!(convert(other, Action::Read), Error::Io { .. }));
}

mod moto;
