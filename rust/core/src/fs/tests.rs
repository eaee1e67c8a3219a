use super::*;
use std::io;

const SERIALIZER: &str = r#"{"type": "pickle"}"#;

fn options() -> FrameOptions<'static> {
    FrameOptions {
        serializer: SERIALIZER,
        ..FrameOptions::default()
    }
}

fn listing(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn atomic_write_creates_folders_and_replaces_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("a/b/out.bin");
    assert_eq!(
        atomic_write(&target, &[b"hello ", b"", b"world"], false).unwrap(),
        11
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"hello world");
    assert_eq!(atomic_write(&target, &[b"new"], true).unwrap(), 3);
    assert_eq!(std::fs::read(&target).unwrap(), b"new");
    assert_eq!(listing(target.parent().unwrap()), ["out.bin"]);
}

#[test]
fn a_failure_midway_removes_the_temporary_file_and_keeps_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out.bin");
    std::fs::write(&target, b"previous").unwrap();
    let result = atomic_write_with(&target, true, |out| {
        out.write_all(&vec![1; 3 * crate::frame::CHUNK])?;
        Err(io::Error::other("injected failure"))
    });
    match result {
        Err(Error::Io { context, source }) => {
            assert!(context.contains("out.bin"), "{context}");
            assert_eq!(source.to_string(), "injected failure");
        }
        other => panic!("expected an I/O error, got {other:?}"),
    }
    assert_eq!(std::fs::read(&target).unwrap(), b"previous");
    assert_eq!(listing(dir.path()), ["out.bin"]);
}

#[test]
fn a_path_without_a_file_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        atomic_write(&dir.path().join(".."), &[b"x"], false),
        Err(Error::InvalidArgument(_))
    ));
}

/// The names of the files in `folder` while a write of `target_name` is under way.
fn names_during_a_write(target_name: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    atomic_write_with(&dir.path().join(target_name), false, |_| {
        seen = listing(dir.path());
        Ok(())
    })
    .unwrap();
    seen
}

#[test]
fn the_temporary_file_of_a_write_is_recognised_by_its_name() {
    // 240 bytes: a valid name, cut to 100 characters in the temporary one.
    let long_name = "é".repeat(120);
    for target_name in [
        "out.bin",
        "a",
        ".hidden",
        "x.tmp",
        "résumé 1.ffb",
        &long_name,
    ] {
        let names = names_during_a_write(target_name);
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(
            is_temporary_file_name(names[0].as_ref()),
            "{} is not recognised",
            names[0]
        );
        assert!(!is_temporary_file_name(target_name.as_ref()));
    }
}

#[test]
fn only_names_of_the_temporary_form_are_temporary() {
    let temporary = |name: &str| is_temporary_file_name(name.as_ref());
    assert!(temporary(".out.bin.0123456789abcdef.tmp"));
    assert!(temporary(&format!(
        ".{}.0123456789abcdef.tmp",
        "x".repeat(100)
    )));
    for name in [
        "out.bin",
        ".tmp",
        "..0123456789abcdef.tmp",
        "out.bin.0123456789abcdef.tmp",
        ".out.bin.0123456789ABCDEF.tmp",
        ".out.bin.0123456789abcde.tmp",
        ".out.bin.0123456789abcdef0.tmp",
        ".out.bin.0123456789abcdeg.tmp",
        ".out.bin.0123456789abcdef.tmp~",
        ".out.bin.0123456789abcdef",
    ] {
        assert!(!temporary(name), "{name} taken for a temporary file");
    }
    // Longer than any target name the writer keeps.
    assert!(!temporary(&format!(
        ".{}.0123456789abcdef.tmp",
        "x".repeat(101)
    )));
}

#[cfg(unix)]
#[test]
fn a_name_that_is_not_utf8_is_not_temporary() {
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::OsStr::from_bytes(b".\xff.0123456789abcdef.tmp");
    assert!(!is_temporary_file_name(name));
}

#[test]
fn blob_files_round_trip_through_read_header_read_and_map() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob");
    let segments: [&[u8]; 3] = [b"stream", b"", &[5; 1000]];
    let written = write_blob(&path, &segments, &options(), false).unwrap();
    assert_eq!(read_header(&path, &ReadChecks::default()).unwrap(), written);
    let (header, read) = read_blob(&path, &ReadChecks::default()).unwrap();
    assert_eq!(header, written);
    assert_eq!(read, segments.map(<[u8]>::to_vec));
    let mapped = map_blob(&path, &ReadChecks::default()).unwrap();
    assert_eq!(mapped.header, written);
    match mapped.segments {
        MappedSegments::InPlace { mut map, ranges } => {
            assert_eq!(
                ranges.iter().map(|r| &map[r.clone()]).collect::<Vec<_>>(),
                segments
            );
            // The map is private: writing to it leaves the file as it was.
            let first = ranges[0].clone();
            map[first].fill(b'!');
            assert_eq!(
                read_blob(&path, &ReadChecks::default()).unwrap().1[0],
                b"stream"
            );
        }
        MappedSegments::Decoded(_) => panic!("an uncompressed blob is mapped in place"),
    }
}

#[test]
fn errors_reading_a_blob_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short.blob");
    std::fs::write(&path, b"tiny").unwrap();
    for result in [
        read_header(&path, &ReadChecks::default()).map(drop),
        read_blob(&path, &ReadChecks::default()).map(drop),
        map_blob(&path, &ReadChecks::default()).map(drop),
    ] {
        match result {
            Err(Error::Corrupt(message)) => assert!(message.contains("short.blob"), "{message}"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
    assert!(
        matches!(read_blob(&dir.path().join("missing"), &ReadChecks::default()), Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound)
    );
}

#[test]
fn read_file_reads_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let content: Vec<u8> = (0..=255u8).cycle().take(700_000).collect();
    std::fs::write(&path, &content).unwrap();
    assert_eq!(read_file(&path).unwrap(), content);
}

#[test]
fn keys_resolve_inside_the_base() {
    let base = Path::new("/storage");
    assert_eq!(
        resolve_key(base, "a/b\\c").unwrap(),
        Path::new("/storage/a/b/c")
    );
    assert_eq!(
        resolve_key(base, "./x//y/").unwrap(),
        Path::new("/storage/x/y")
    );
    for key in [
        "../x",
        "a/../../x",
        "/abs",
        "\\abs",
        "C:x",
        "a/c:/b",
        "nul\0",
        "",
        ".",
        "a/..",
    ] {
        assert!(
            matches!(resolve_key(base, key), Err(Error::UnsafeKey(_))),
            "{key:?} was accepted"
        );
    }
}
