//! Against a real S3 API: moto's server on a loopback port, when `moto_server` is on PATH
//! (skipped otherwise). One test, so the server starts once.
use super::*;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};

/// The server process, killed when the test ends however it ends.
struct MotoServer {
    child: Child,
    endpoint: String,
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|folder| folder.join(program).is_file())
    })
}

fn start_moto() -> Option<MotoServer> {
    if !on_path("moto_server") {
        eprintln!("moto_server is not on PATH: skipping the S3 test");
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server is on PATH but did not start");
    let server = MotoServer {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto_server did not listen within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(server)
}

/// object_store cannot create buckets; moto takes an unsigned request.
fn create_bucket(endpoint: &str, bucket: &str) {
    let address = endpoint.trim_start_matches("http://");
    let mut connection = TcpStream::connect(address).unwrap();
    write!(
        connection,
        "PUT /{bucket} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    connection.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn blobs_and_objects_on_an_s3_server() {
    let Some(moto) = start_moto() else { return };
    create_bucket(&moto.endpoint, "results");
    let options = StoreOptions {
        upload: UploadOptions {
            part_size: MIN_PART_SIZE,
            max_parts_in_flight: 2,
            multipart_threshold: Some(MIN_PART_SIZE),
        },
        ..s3_options(&moto.endpoint, Duration::from_secs(20))
    };
    let store = Store::open("s3://results/runs", options.clone()).unwrap();

    // Multipart, with S3's smallest parts.
    let segments = [
        pattern(7 * MIB, 1),
        pattern(100, 2),
        pattern(6 * MIB + 1, 3),
    ];
    let borrowed: Vec<&[u8]> = segments.iter().map(Vec::as_slice).collect();
    let written = store
        .write_blob("big", &borrowed, &frame_options(None))
        .unwrap();
    assert_eq!(store.read_header("big").unwrap(), written);
    assert_eq!(in_place(store.read_blob("big").unwrap()), segments);

    // One PUT.
    let small = store
        .write_blob("dir/small", &[b"small"], &frame_options(Some(Codec::Zstd)))
        .unwrap();
    assert_eq!(store.read_header("dir/small").unwrap(), small);

    assert!(store.put_if_absent("lock", b"first").unwrap());
    assert!(!store.put_if_absent("lock", b"second").unwrap());
    assert_eq!(store.get("lock").unwrap(), b"first");

    store.put("odd 100%#", &[b"x"]).unwrap();
    let keys: Vec<String> = store.list("").unwrap().into_iter().map(|i| i.key).collect();
    assert_eq!(keys, ["big", "dir/small", "lock", "odd 100%#"]);
    assert_eq!(store.list("dir").unwrap()[0].key, "dir/small");
    assert_eq!(store.head("lock").unwrap().size, 5);

    store.delete("lock").unwrap();
    store.delete("lock").unwrap();
    assert!(matches!(store.get("lock"), Err(Error::NotFound(_))));
    assert!(matches!(store.read_header("lock"), Err(Error::NotFound(_))));
    assert!(!store.exists("lock").unwrap());

    store.put("empty", &[]).unwrap();
    assert!(matches!(store.read_header("empty"), Err(Error::Corrupt(m)) if m.contains("too few")));

    let missing = Store::open("s3://no-such-bucket", options).unwrap();
    for result in [
        missing.get("key").map(drop),
        missing.put("key", &[b"x"]).map(drop),
        missing.list("").map(drop),
    ] {
        match result {
            Err(Error::BucketNotFound(message)) => {
                assert!(message.contains("\"no-such-bucket\""), "{message}")
            }
            other => panic!("expected a missing bucket, got {other:?}"),
        }
    }
}
