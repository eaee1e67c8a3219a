use super::header::PRELUDE_LEN;
use super::*;
use std::io::{self, Cursor, Write};

const SERIALIZER: &str = r#"{"type": "pickle", "protocol": 5}"#;

/// Without `compact_small`: the tests that edit headers edit 1.x field names.
fn options() -> FrameOptions<'static> {
    FrameOptions {
        serializer: SERIALIZER,
        ..FrameOptions::default()
    }
}

fn sample_segments() -> Vec<Vec<u8>> {
    vec![
        b"pickle opcodes".to_vec(),
        Vec::new(),
        (0..=255u8).cycle().take(1000).collect(),
        vec![7; 64],
    ]
}

fn framed(segments: &[Vec<u8>]) -> Vec<u8> {
    let slices: Vec<&[u8]> = segments.iter().map(Vec::as_slice).collect();
    frame(&slices, &options()).unwrap().1
}

fn body_range(blob: &[u8]) -> Range<usize> {
    let body_len = u32::from_le_bytes(blob[12..16].try_into().unwrap()) as usize;
    PRELUDE_LEN..PRELUDE_LEN + body_len
}

/// Re-encodes `blob`'s header with another version and an edited JSON body (checksum recomputed),
/// as a writer of that version would have.
fn rewrite_header(
    blob: &[u8],
    major: u16,
    minor: u16,
    edit: impl FnOnce(&mut serde_json::Value),
) -> Vec<u8> {
    let (header, _) = verify(blob).unwrap();
    let old_payload_start = Layout::new(&header, (body_range(blob).end + CHECKSUM_LEN) as u64)
        .unwrap()
        .payload_start;
    let mut body: serde_json::Value = serde_json::from_slice(&blob[body_range(blob)]).unwrap();
    edit(&mut body);
    let json = serde_json::to_vec(&body).unwrap();
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&major.to_le_bytes());
    out.extend_from_slice(&minor.to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&out).to_le_bytes());
    out.resize(align_up(out.len() as u64, header.alignment) as usize, 0);
    out.extend_from_slice(&blob[old_payload_start as usize..]);
    out
}

/// Readers of `blob` both ways: whole in the first read, and streamed piece by piece.
fn stream_readers(blob: &[u8]) -> [Result<BlobReader<Cursor<&[u8]>>>; 2] {
    [u64::MAX, 0].map(|first_read| {
        BlobReader::open_reading_first(
            Cursor::new(blob),
            blob.len() as u64,
            first_read,
            &ReadChecks::default(),
        )
    })
}

fn corrupt_message(result: Result<impl std::fmt::Debug>) -> String {
    match result {
        Err(Error::Corrupt(message)) => message,
        other => panic!("expected a Corrupt error, got {other:?}"),
    }
}

#[test]
fn round_trip_in_memory_keeps_every_segment_and_header_field() {
    let segments = sample_segments();
    let slices: Vec<&[u8]> = segments.iter().map(Vec::as_slice).collect();
    let (written, blob) = frame(&slices, &options()).unwrap();
    let (read, stored) = unframe(&blob).unwrap();
    assert_eq!(read, written);
    assert_eq!(stored, slices);
    assert_eq!(read.format_version, (FORMAT_MAJOR, FORMAT_MINOR));
    assert_eq!(read.serializer, SERIALIZER);
    assert_eq!(read.codec, None);
    assert_eq!(read.checksum_algorithm, "xxh3-64");
    assert_eq!(read.ferroflow_version, crate::VERSION);
    assert_eq!(
        read.raw_length(),
        segments.iter().map(|s| s.len() as u64).sum::<u64>()
    );
    assert_eq!(read.stored_length(), read.raw_length());
    assert!(
        read.created_at_us > 1_700_000_000_000_000,
        "created_at is a current timestamp"
    );
}

#[test]
fn segments_start_aligned_and_frame_len_is_exact() {
    for (segments, alignment) in [
        (sample_segments(), SMALL_ALIGNMENT),
        (large_segments(), ALIGNMENT),
    ] {
        let blob = framed(&segments);
        let slices: Vec<&[u8]> = segments.iter().map(Vec::as_slice).collect();
        assert_eq!(
            Frame::new(&slices, &options()).unwrap().encoded_len(),
            blob.len() as u64
        );
        let (header, ranges) = verify(&blob).unwrap();
        assert_eq!(header.alignment, alignment);
        for range in ranges {
            assert_eq!(range.start % alignment as usize, 0);
        }
    }
}

#[test]
fn a_blob_without_segments_round_trips() {
    let blob = framed(&[]);
    let (header, stored) = unframe(&blob).unwrap();
    assert!(header.segments.is_empty());
    assert!(stored.is_empty());
}

#[test]
fn stream_reader_reads_the_header_without_the_payload() {
    let mut blob = framed(&sample_segments());
    let (header, _) = verify(&blob).unwrap();
    // Destroy the payload: opening must still succeed because it reads only the header.
    let payload_start = align_up((body_range(&blob).end + CHECKSUM_LEN) as u64, ALIGNMENT) as usize;
    let len = blob.len();
    blob[payload_start..len].fill(0xAB);
    let reader = BlobReader::open(Cursor::new(&blob), len as u64).unwrap();
    assert_eq!(reader.header(), &header);
}

#[test]
fn stream_reader_returns_the_segments() {
    let segments = sample_segments();
    let blob = framed(&segments);
    for reader in stream_readers(&blob) {
        let mut reader = reader.unwrap();
        assert_eq!(reader.read_segments().unwrap(), segments);

        let mut outputs: Vec<Vec<u8>> = segments.iter().map(|s| vec![0; s.len()]).collect();
        let mut slices: Vec<&mut [u8]> = outputs.iter_mut().map(Vec::as_mut_slice).collect();
        reader.read_segments_into(&mut slices).unwrap();
        assert_eq!(outputs, segments);
    }
}

#[test]
fn stream_reader_refuses_wrongly_sized_outputs() {
    let blob = framed(&sample_segments());
    let mut reader = BlobReader::open(Cursor::new(&blob), blob.len() as u64).unwrap();
    let mut one = [0u8; 3];
    assert!(matches!(
        reader.read_segments_into(&mut [&mut one]),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn bad_magic_is_corrupt() {
    let mut blob = framed(&sample_segments());
    blob[1] = b'X';
    assert!(corrupt_message(unframe(&blob)).contains("not a ferroflow blob"));
}

#[test]
fn header_checksum_mismatch_is_corrupt() {
    let mut blob = framed(&sample_segments());
    let inside_body = body_range(&blob).start + 3;
    blob[inside_body] ^= 0x01;
    assert!(corrupt_message(unframe(&blob)).contains("header failed its checksum"));
}

#[test]
fn segment_checksum_mismatch_names_the_segment() {
    let segments = sample_segments();
    let mut blob = framed(&segments);
    let (_, ranges) = verify(&blob).unwrap();
    blob[ranges[2].start + 500] ^= 0x80;
    assert!(corrupt_message(unframe(&blob))
        .contains("segment 2 of the blob failed its xxh3-64 checksum"));
    for reader in stream_readers(&blob) {
        assert!(corrupt_message(reader.unwrap().read_segments()).contains("segment 2"));
    }
}

#[test]
fn nonzero_padding_is_corrupt() {
    let mut blob = framed(&sample_segments());
    let (_, ranges) = verify(&blob).unwrap();
    blob[ranges[0].end] = 1;
    assert!(corrupt_message(unframe(&blob)).contains("padding after segment 0"));
}

#[test]
fn truncation_and_trailing_bytes_are_corrupt() {
    let blob = framed(&sample_segments());
    assert!(corrupt_message(unframe(&blob[..blob.len() - 1])).contains("truncated"));
    let mut longer = blob.clone();
    longer.push(0);
    assert!(corrupt_message(unframe(&longer)).contains("1 unexpected bytes after its end"));
    for reader in stream_readers(&longer) {
        assert!(corrupt_message(reader).contains("after its end"));
    }
}

#[test]
fn every_single_byte_flip_and_every_truncation_is_detected() {
    let blob = framed(&[b"abc".to_vec(), Vec::new(), vec![9; 70]]);
    for index in 0..blob.len() {
        for bit in [0x01, 0x80] {
            let mut damaged = blob.clone();
            damaged[index] ^= bit;
            assert!(
                matches!(unframe(&damaged), Err(Error::Corrupt(_))),
                "flip at {index} went unnoticed"
            );
            for mut reader in stream_readers(&damaged) {
                let read = reader.as_mut().map_err(|_| ()).map(|r| r.read_segments());
                assert!(
                    !matches!(read, Ok(Ok(_))),
                    "flip at {index} went unnoticed by the stream reader"
                );
            }
        }
    }
    for len in 0..blob.len() {
        assert!(
            matches!(unframe(&blob[..len]), Err(Error::Corrupt(_))),
            "truncation to {len} went unnoticed"
        );
    }
}

#[test]
fn a_newer_minor_version_with_unknown_fields_is_readable() {
    let segments = sample_segments();
    let blob = framed(&segments);
    let newer = rewrite_header(&blob, FORMAT_MAJOR, FORMAT_MINOR + 3, |body| {
        body["added_in_a_later_minor"] = serde_json::json!({"anything": [1, 2, 3]});
    });
    let (header, stored) = unframe(&newer).unwrap();
    assert_eq!(header.format_version, (FORMAT_MAJOR, FORMAT_MINOR + 3));
    assert_eq!(
        stored,
        segments.iter().map(Vec::as_slice).collect::<Vec<_>>()
    );
}

#[test]
fn a_newer_major_version_is_refused_naming_both_versions() {
    let blob = framed(&sample_segments());
    let newer = rewrite_header(&blob, IMPLIED_MAJOR + 1, 4, |_| {});
    match unframe(&newer) {
        Err(Error::UnsupportedFormat(message)) => {
            assert!(
                message.contains(&format!("{}.4", IMPLIED_MAJOR + 1)),
                "{message}"
            );
            assert!(
                message.contains(&format!(
                    "{FORMAT_MAJOR}.x, {COMPACT_MAJOR}.x and {IMPLIED_MAJOR}.x"
                )),
                "{message}"
            );
            assert!(message.contains("upgrade ferroflow"), "{message}");
        }
        other => panic!("expected UnsupportedFormat, got {other:?}"),
    }
}

#[test]
fn unknown_checksum_algorithm_or_codec_is_unsupported() {
    let blob = framed(&sample_segments());
    let other_checksum = rewrite_header(&blob, FORMAT_MAJOR, 1, |body| {
        body["checksum_algorithm"] = "crc-99".into()
    });
    assert!(
        matches!(unframe(&other_checksum), Err(Error::UnsupportedFormat(m)) if m.contains("crc-99"))
    );
    let other_codec = rewrite_header(&blob, FORMAT_MAJOR, 1, |body| {
        body["codec"] = "brotli".into()
    });
    assert!(
        matches!(unframe(&other_codec), Err(Error::UnsupportedFormat(m)) if m.contains("brotli"))
    );
}

#[test]
fn an_inconsistent_header_is_corrupt() {
    let blob = framed(&sample_segments());
    let wrong_total = rewrite_header(&blob, FORMAT_MAJOR, 0, |body| body["raw_length"] = 1.into());
    assert!(corrupt_message(unframe(&wrong_total)).contains("total lengths"));
    let odd_alignment =
        rewrite_header(&blob, FORMAT_MAJOR, 0, |body| body["alignment"] = 48.into());
    assert!(corrupt_message(unframe(&odd_alignment)).contains("alignment 48"));
    let missing_field = rewrite_header(&blob, FORMAT_MAJOR, 0, |body| {
        body.as_object_mut().unwrap().remove("segments");
    });
    assert!(corrupt_message(unframe(&missing_field)).contains("segments"));
}

#[test]
fn huge_lengths_in_a_header_are_corrupt_not_a_panic() {
    let blob = framed(&[b"x".to_vec()]);
    let huge = rewrite_header(&blob, FORMAT_MAJOR, 0, |body| {
        body["segments"] = serde_json::json!([[u64::MAX, u64::MAX]]);
        body["raw_length"] = u64::MAX.into();
        body["stored_length"] = u64::MAX.into();
    });
    assert!(matches!(unframe(&huge), Err(Error::Corrupt(_))));
    assert!(matches!(
        BlobReader::open(Cursor::new(&huge), huge.len() as u64),
        Err(Error::Corrupt(_))
    ));
}

#[test]
fn the_serializer_must_be_json() {
    let options = FrameOptions {
        serializer: "pickle",
        ..FrameOptions::default()
    };
    match frame(&[], &options) {
        Err(Error::InvalidArgument(message)) => assert!(message.contains("JSON text"), "{message}"),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

#[test]
fn the_serializer_text_is_stored_verbatim_without_outer_whitespace() {
    let options = FrameOptions {
        serializer: "  {\"type\" :  \"json\"}\n",
        ..FrameOptions::default()
    };
    let (_, blob) = frame(&[], &options).unwrap();
    assert_eq!(
        unframe(&blob).unwrap().0.serializer,
        "{\"type\" :  \"json\"}"
    );
}

#[test]
fn a_level_without_a_codec_is_refused() {
    let mut options = options();
    options.compress.level = Some(3);
    assert!(matches!(frame(&[], &options), Err(Error::InvalidArgument(m)) if m.contains("codec")));
}

fn large_segments() -> Vec<Vec<u8>> {
    let big: Vec<u8> = (0..3 * HASH_ASIDE_MIN + 5)
        .map(|i| (i % 253) as u8)
        .collect();
    vec![
        b"stream".to_vec(),
        big.clone(),
        Vec::new(),
        big[..HASH_ASIDE_MIN].to_vec(),
        vec![1; 100],
    ]
}

#[test]
fn large_segments_hashed_beside_the_write_verify_like_small_ones() {
    let segments = large_segments();
    let blob = framed(&segments);
    let (_, stored) = unframe(&blob).unwrap();
    assert_eq!(
        stored,
        segments.iter().map(Vec::as_slice).collect::<Vec<_>>()
    );
    // The same checksums as hashing in line.
    let slices: Vec<&[u8]> = segments.iter().map(Vec::as_slice).collect();
    let frame = Frame::new(&slices, &options()).unwrap();
    let in_line = merge_checksums(
        frame.write_segments(&mut io::sink(), true).unwrap(),
        Vec::new(),
    );
    let trailer = &blob[blob.len() - 8 * segments.len()..];
    let stored_checksums: Vec<u64> = trailer
        .chunks(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(stored_checksums, in_line);
}

/// Accepts `left` bytes, then fails like a full disk.
struct FailingAfter {
    left: usize,
}

impl Write for FailingAfter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::other("no space left"));
        }
        let accepted = buf.len().min(self.left);
        self.left -= accepted;
        Ok(accepted)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_write_failure_is_reported_whether_hashing_in_line_or_aside() {
    for segments in [sample_segments(), large_segments()] {
        let slices: Vec<&[u8]> = segments.iter().map(Vec::as_slice).collect();
        let frame = Frame::new(&slices, &options()).unwrap();
        for left in [0, 10, 700, frame.encoded_len() as usize - 1] {
            let error = frame
                .write_streaming(&mut FailingAfter { left })
                .unwrap_err();
            assert_eq!(error.to_string(), "no space left");
        }
    }
}

fn compressible_segments() -> Vec<Vec<u8>> {
    vec![
        b"pickle stream ".repeat(50),
        Vec::new(),
        (0..200_000u32)
            .flat_map(|i| (i / 7).to_le_bytes())
            .collect(),
    ]
}

#[test]
fn compressed_blobs_round_trip_with_every_codec() {
    let segments = compressible_segments();
    let slices: Vec<&[u8]> = segments.iter().map(Vec::as_slice).collect();
    for codec in Codec::ALL {
        let mut options = options();
        options.codec = Some(codec);
        options.compress.level = Some(codec.default_level());
        let (written, blob) = frame(&slices, &options).unwrap();
        assert_eq!(written.codec, Some(codec));
        assert_eq!(written.level, Some(codec.default_level()));
        assert!(
            written.stored_length() < written.raw_length() / 4,
            "{codec:?} compressed too little"
        );

        let (header, stored) = unframe(&blob).unwrap();
        assert_eq!(header, written);
        for (index, stored) in stored.iter().enumerate() {
            assert_eq!(
                decode_segment(&header, index, stored).unwrap(),
                segments[index],
                "{codec:?}"
            );
        }
        for reader in stream_readers(&blob) {
            let mut reader = reader.unwrap();
            assert_eq!(reader.read_segments().unwrap(), segments, "{codec:?}");
            let mut outputs: Vec<Vec<u8>> = segments.iter().map(|s| vec![0; s.len()]).collect();
            let mut targets: Vec<&mut [u8]> = outputs.iter_mut().map(Vec::as_mut_slice).collect();
            reader.read_segments_into(&mut targets).unwrap();
            assert_eq!(outputs, segments, "{codec:?}");
        }
    }
}

#[test]
fn a_compressed_segment_of_another_length_than_recorded_is_corrupt() {
    let segments = compressible_segments();
    let slices: Vec<&[u8]> = segments.iter().map(Vec::as_slice).collect();
    let options = FrameOptions {
        codec: Some(Codec::Zstd),
        ..options()
    };
    let (header, blob) = frame(&slices, &options).unwrap();
    for delta in [1i64, -1] {
        let claimed = (header.segments[0].raw as i64 + delta) as u64;
        let lying = rewrite_header(&blob, FORMAT_MAJOR, 0, |body| {
            body["segments"][0][0] = claimed.into();
            body["raw_length"] = (header.raw_length() as i64 + delta).into();
        });
        let (lying_header, stored) = unframe(&lying).unwrap();
        assert!(corrupt_message(decode_segment(&lying_header, 0, stored[0]))
            .contains("decompressed to"));
        for reader in stream_readers(&lying) {
            let mut reader = reader.unwrap();
            assert!(corrupt_message(reader.read_segments()).contains("decompressed to"));
            let mut outputs: Vec<Vec<u8>> = lying_header
                .segments
                .iter()
                .map(|s| vec![0; s.raw as usize])
                .collect();
            let mut targets: Vec<&mut [u8]> = outputs.iter_mut().map(Vec::as_mut_slice).collect();
            assert!(corrupt_message(reader.read_segments_into(&mut targets))
                .contains("decompressed to"));
        }
    }
}

#[test]
fn an_invalid_level_is_refused_even_without_segments() {
    let options = FrameOptions {
        codec: Some(Codec::Zlib),
        compress: CompressOptions {
            level: Some(99),
            ..CompressOptions::default()
        },
        ..options()
    };
    assert!(matches!(
        frame(&[], &options),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn the_stream_reader_verifies_large_segments_hashed_aside() {
    let segments = large_segments();
    let blob = framed(&segments);
    let mut reader = BlobReader::open(Cursor::new(&blob), blob.len() as u64).unwrap();
    assert_eq!(reader.read_segments().unwrap(), segments);

    let (_, ranges) = verify(&blob).unwrap();
    let mut damaged = blob.clone();
    damaged[ranges[1].start + 2 * HASH_ASIDE_MIN + 7] ^= 0x10;
    let mut reader = BlobReader::open(Cursor::new(&damaged), damaged.len() as u64).unwrap();
    assert!(corrupt_message(reader.read_segments()).contains("segment 1 "));
}

/// A stream whose bytes in `bad` cannot be read, like a disk with a bad sector.
struct BadSectors<'a> {
    inner: Cursor<&'a [u8]>,
    bad: Range<u64>,
}

impl io::Read for BadSectors<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let position = self.inner.position();
        if self.bad.contains(&position) {
            return Err(io::Error::other("bad sector"));
        }
        let readable = match self.bad.start.checked_sub(position) {
            Some(until_bad) if until_bad > 0 => buf.len().min(until_bad as usize),
            _ => buf.len(),
        };
        self.inner.read(&mut buf[..readable])
    }
}

impl io::Seek for BadSectors<'_> {
    fn seek(&mut self, to: io::SeekFrom) -> io::Result<u64> {
        self.inner.seek(to)
    }
}

#[test]
fn a_read_error_inside_a_large_segment_is_reported() {
    let blob = framed(&large_segments());
    let (_, ranges) = verify(&blob).unwrap();
    let bad_from = (ranges[1].start + HASH_ASIDE_MIN + 3) as u64;
    let source = BadSectors {
        inner: Cursor::new(&blob),
        bad: bad_from..bad_from + 512,
    };
    let mut reader = BlobReader::open(source, blob.len() as u64).unwrap();
    match reader.read_segments() {
        Err(Error::Io { source, .. }) => assert_eq!(source.to_string(), "bad sector"),
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

// --- format 1.1: keys, signatures, sizes ------------------------------------------------------

fn signing_key(material: &str) -> SigningKey {
    SigningKey::from_material(material.as_bytes()).unwrap()
}

fn signed(segments: &[Vec<u8>], key: &SigningKey, codec: Option<Codec>) -> Vec<u8> {
    let slices: Vec<&[u8]> = segments.iter().map(Vec::as_slice).collect();
    let options = FrameOptions {
        key: Some("results/abc"),
        signing_key: Some(key),
        codec,
        ..options()
    };
    frame(&slices, &options).unwrap().1
}

fn untrusted_message(result: Result<impl std::fmt::Debug>) -> String {
    match result {
        Err(Error::Untrusted(message)) => message,
        other => panic!("expected an Untrusted error, got {other:?}"),
    }
}

/// Every way of reading a blob, with `checks`: in memory, and streamed both ways.
fn read_all_ways(blob: &[u8], checks: &ReadChecks<'_>) -> Vec<Result<BlobHeader>> {
    let mut results = vec![verify_with(blob, checks).map(|(header, _)| header)];
    for first_read in [u64::MAX, 0] {
        results.push(
            BlobReader::open_reading_first(
                Cursor::new(blob),
                blob.len() as u64,
                first_read,
                checks,
            )
            .map(BlobReader::into_header),
        );
    }
    results
}

#[test]
fn a_signed_blob_verifies_with_its_key_and_records_the_key_id() {
    let key = signing_key("a long enough secret");
    for segments in [sample_segments(), large_segments(), Vec::new()] {
        for codec in [None, Some(Codec::Zstd)] {
            let blob = signed(&segments, &key, codec);
            let keys = [key.clone()];
            let checks = ReadChecks {
                verification_keys: &keys,
                require_signature: true,
                ..ReadChecks::default()
            };
            for header in read_all_ways(&blob, &checks) {
                let header = header.unwrap();
                assert_eq!(header.signature.unwrap().key_id, key.id());
                assert_eq!(header.format_version, (1, 1));
            }
            let slices: Vec<&[u8]> = segments.iter().map(Vec::as_slice).collect();
            let (_, stored) = unframe_with(&blob, &checks).unwrap();
            if codec.is_none() {
                assert_eq!(stored, slices);
            }
        }
    }
}

#[test]
fn signing_in_a_stream_and_with_a_seek_back_give_the_same_bytes() {
    let key = signing_key("a long enough secret");
    let segments = large_segments();
    let slices: Vec<&[u8]> = segments.iter().map(Vec::as_slice).collect();
    let options = FrameOptions {
        signing_key: Some(&key),
        ..options()
    };
    let frame = Frame::new(&slices, &options).unwrap();
    let (seeking_header, seeking) = frame.to_vec();
    let mut streamed = Vec::new();
    let streamed_header = frame.write_streaming(&mut streamed).unwrap();
    assert_eq!(seeking, streamed);
    assert_eq!(seeking_header, streamed_header);
    assert_ne!(seeking_header.signature.unwrap().mac, [0; 32]);
}

#[test]
fn pieces_are_the_bytes_of_the_blob_signed_or_not_small_or_large() {
    let key = signing_key("a long enough secret");
    for segments in [large_segments(), vec![b"tiny".to_vec(), Vec::new()]] {
        let slices: Vec<&[u8]> = segments.iter().map(Vec::as_slice).collect();
        for signing_key in [None, Some(&key)] {
            let options = FrameOptions {
                signing_key,
                key: Some("runs/result"),
                compact_small: true,
                ..options()
            };
            let frame = Frame::new(&slices, &options).unwrap();
            let (header, whole) = frame.to_vec();
            let pieces = frame.into_pieces();
            let mut joined = pieces.header_bytes.clone();
            for (segment, padding) in &pieces.segments {
                joined.extend_from_slice(segment);
                joined.extend_from_slice(padding);
            }
            joined.extend_from_slice(&pieces.trailer);
            // The signed header is computed before the first piece: the same bytes as a file's.
            assert_eq!(joined, whole);
            assert_eq!(pieces.header, header);
            assert_eq!(header.signature.is_some(), signing_key.is_some());
            let keys = [key.clone()];
            let checks = ReadChecks {
                expected_key: Some("runs/result"),
                verification_keys: &keys,
                require_signature: signing_key.is_some(),
                max_decompressed_length: None,
            };
            let (read, _) = verify_with(&joined, &checks).unwrap();
            assert_eq!(read, pieces.header);
        }
    }
}

#[test]
fn a_blob_signed_by_another_key_or_modified_is_untrusted() {
    let key = signing_key("a long enough secret");
    let other = signing_key("another long secret");
    let blob = signed(&sample_segments(), &key, None);
    let keys = [key.clone()];
    let require = ReadChecks {
        verification_keys: &keys,
        require_signature: true,
        ..ReadChecks::default()
    };
    // A key with the same id but another secret cannot be had; a forged MAC is what remains.
    let (_, ranges) = verify(&blob).unwrap();
    // Another payload with its checksum fixed up: integrity holds, the signature does not.
    let mut forged = blob.clone();
    forged[ranges[0].start] ^= 1;
    let trailer_start = blob.len() - 8 * ranges.len();
    let checksum = xxh3_64(&forged[ranges[0].clone()]).to_le_bytes();
    forged[trailer_start..trailer_start + 8].copy_from_slice(&checksum);
    for result in read_all_ways(&forged, &require) {
        assert!(untrusted_message(result).contains("does not match"));
    }
    // A header edited (another serializer) with its checksum recomputed.
    let edited = rewrite_header(&blob, 1, 1, |body| {
        body["serializer"] = serde_json::json!({"type": "json"});
    });
    for result in read_all_ways(&edited, &require) {
        untrusted_message(result);
    }
    // Signed by a key the reader does not hold.
    let by_other = signed(&sample_segments(), &other, None);
    for result in read_all_ways(&by_other, &require) {
        let message = untrusted_message(result);
        assert!(
            message.contains(other.id()) && message.contains(key.id()),
            "{message}"
        );
    }
    // Without require_signature, an unknown key is accepted, a wrong MAC never is.
    let lenient = ReadChecks {
        verification_keys: &keys,
        ..ReadChecks::default()
    };
    for result in read_all_ways(&by_other, &lenient) {
        result.unwrap();
    }
    for result in read_all_ways(&forged, &lenient) {
        untrusted_message(result);
    }
}

#[test]
fn an_unsigned_blob_is_refused_only_when_a_signature_is_required() {
    let blob = framed(&sample_segments());
    let keys = [signing_key("a long enough secret")];
    let require = ReadChecks {
        verification_keys: &keys,
        require_signature: true,
        ..ReadChecks::default()
    };
    for result in read_all_ways(&blob, &require) {
        assert!(untrusted_message(result).contains("not signed"));
    }
    for result in read_all_ways(&blob, &ReadChecks::default()) {
        result.unwrap();
    }
}

#[test]
fn a_1_0_reader_reads_a_signed_blob() {
    // A 1.0 reader knows none of the 1.1 fields: it ignores them, so dropping them from what it
    // parses must leave a header that verifies; the body is plain JSON with the 1.0 fields intact.
    let blob = signed(
        &sample_segments(),
        &signing_key("a long enough secret"),
        None,
    );
    let body: serde_json::Value = serde_json::from_slice(&blob[body_range(&blob)]).unwrap();
    for field in [
        "serializer",
        "codec",
        "raw_length",
        "stored_length",
        "checksum_algorithm",
        "ferroflow_version",
        "created_at_us",
        "alignment",
        "segments",
    ] {
        assert!(body.get(field).is_some(), "{field} is missing");
    }
    assert_eq!(body["signature"]["algorithm"], MAC_ALGORITHM);
    let without_new_fields = rewrite_header(&blob, 1, 0, |body| {
        let body = body.as_object_mut().unwrap();
        body.remove("signature");
        body.remove("key");
    });
    verify(&without_new_fields).unwrap();
}

#[test]
fn short_key_material_is_refused() {
    assert!(matches!(
        SigningKey::from_material(b"short"),
        Err(Error::InvalidArgument(message)) if message.contains("at least 16 bytes")
    ));
}

#[test]
fn a_blob_recorded_under_another_key_is_corrupt() {
    let blob = signed(
        &sample_segments(),
        &signing_key("a long enough secret"),
        None,
    );
    let elsewhere = ReadChecks {
        expected_key: Some("results/other"),
        ..ReadChecks::default()
    };
    for result in read_all_ways(&blob, &elsewhere) {
        let message = corrupt_message(result);
        assert!(message.contains("results/abc") && message.contains("results/other"));
    }
    let here = ReadChecks {
        expected_key: Some("results/abc"),
        ..ReadChecks::default()
    };
    for result in read_all_ways(&blob, &here) {
        assert_eq!(result.unwrap().key.as_deref(), Some("results/abc"));
    }
}

#[test]
fn a_compressed_blob_over_the_size_limit_is_refused_before_decompressing() {
    let segments = [vec![0u8; 4 << 20]];
    let slices: Vec<&[u8]> = segments.iter().map(Vec::as_slice).collect();
    let options = FrameOptions {
        codec: Some(Codec::Zstd),
        ..options()
    };
    let (_, blob) = frame(&slices, &options).unwrap();
    assert!(blob.len() < 4096);
    let limited = ReadChecks {
        max_decompressed_length: Some(1 << 20),
        ..ReadChecks::default()
    };
    for result in read_all_ways(&blob, &limited) {
        let message = corrupt_message(result);
        assert!(
            message.contains("FERROFLOW_RESULTS_MAX_DECOMPRESSED_SIZE"),
            "{message}"
        );
    }
    let roomy = ReadChecks {
        max_decompressed_length: Some(4 << 20),
        ..ReadChecks::default()
    };
    for result in read_all_ways(&blob, &roomy) {
        result.unwrap();
    }
}

#[test]
fn compression_that_would_grow_the_payload_is_skipped_and_recorded() {
    let segments = [b"tiny".to_vec()];
    let slices: Vec<&[u8]> = segments.iter().map(Vec::as_slice).collect();
    for codec in Codec::ALL {
        let options = FrameOptions {
            codec: Some(codec),
            ..options()
        };
        let (header, blob) = frame(&slices, &options).unwrap();
        assert_eq!(header.codec, None);
        assert_eq!(header.codec_skipped, Some(codec));
        assert_eq!(header.level, None);
        let (read, stored) = unframe(&blob).unwrap();
        assert_eq!(read.codec_skipped, Some(codec));
        assert_eq!(stored, slices);
    }
}

#[test]
fn a_small_blob_is_aligned_to_8_bytes_a_large_one_to_64() {
    let (small, blob) = frame(&[b"x".as_slice()], &options()).unwrap();
    assert_eq!(small.alignment, SMALL_ALIGNMENT);
    let (_, ranges) = verify(&blob).unwrap();
    assert_eq!(ranges[0].start % 8, 0);
    let large = vec![1u8; SMALL_PAYLOAD as usize];
    let (header, _) = frame(&[large.as_slice()], &options()).unwrap();
    assert_eq!(header.alignment, ALIGNMENT);
}

/// The description of ferroflow's default pickle serializer, as Python writes it.
const CLOUDPICKLE: &str =
    r#"{"picklelib":"cloudpickle","picklelib_version":"3.1.3","type":"pickle"}"#;

#[test]
fn a_small_unsigned_blob_gets_the_compact_header_and_reads_back() {
    let payload = vec![0x80u8; 43];
    let compact = FrameOptions {
        serializer: CLOUDPICKLE,
        key: Some("0123456789abcdef0123456789abcdef"),
        compact_small: true,
        ..FrameOptions::default()
    };
    let (written, blob) = frame(&[payload.as_slice()], &compact).unwrap();
    // The description shortens ("picklelib" holds its implied value): format 3.0.
    assert_eq!(written.format_version, (IMPLIED_MAJOR, 0));
    assert!(
        blob.len() - payload.len() <= 256,
        "{} bytes beyond the payload",
        blob.len() - payload.len()
    );
    let body = &blob[body_range(&blob)];
    let short = r#""s":{"picklelib_version":"3.1.3","type":"pickle"}"#;
    assert!(
        body.windows(short.len()).any(|w| w == short.as_bytes()),
        "{}",
        String::from_utf8_lossy(body)
    );
    for header in read_all_ways(&blob, &ReadChecks::default()) {
        let header = header.unwrap();
        assert_eq!(header, written);
        assert_eq!(header.serializer, CLOUDPICKLE);
    }
    let (_, stored) = unframe(&blob).unwrap();
    assert_eq!(stored, [payload.as_slice()]);
    // Signed or large blobs keep the 1.x header, which 1.0 readers read.
    let key = signing_key("a long enough secret");
    let signed = FrameOptions {
        signing_key: Some(&key),
        ..compact
    };
    assert_eq!(
        frame(&[payload.as_slice()], &signed)
            .unwrap()
            .0
            .format_version,
        (1, 1)
    );
    let large = vec![1u8; SMALL_PAYLOAD as usize];
    assert_eq!(
        frame(&[large.as_slice()], &compact)
            .unwrap()
            .0
            .format_version,
        (1, 1)
    );
}

#[test]
fn a_description_that_does_not_shorten_keeps_format_2_0_and_its_text() {
    let payload = b"tiny";
    let options = FrameOptions {
        compact_small: true,
        ..options()
    };
    let (written, blob) = frame(&[payload.as_slice()], &options).unwrap();
    assert_eq!(written.format_version, (COMPACT_MAJOR, 0));
    let (read, _) = unframe(&blob).unwrap();
    assert_eq!(read.serializer, r#"{"type": "pickle", "protocol": 5}"#);
}

#[test]
fn a_2_0_blob_with_a_whole_description_still_reads() {
    // As ferroflow 0.1.0 wrote tiny results: format 2.0, the description verbatim.
    let options = FrameOptions {
        compact_small: true,
        serializer: CLOUDPICKLE,
        ..FrameOptions::default()
    };
    let (_, blob) = frame(&[b"tiny".as_slice()], &options).unwrap();
    let (header, _) = verify(&blob).unwrap();
    let old = rewrite_header(&blob, COMPACT_MAJOR, 0, |body| {
        body["s"] = serde_json::from_str(CLOUDPICKLE).unwrap();
    });
    let (read, stored) = unframe(&old).unwrap();
    assert_eq!(read.format_version, (COMPACT_MAJOR, 0));
    assert_eq!(read.serializer, header.serializer);
    assert_eq!(stored, [b"tiny".as_slice()]);
}

#[test]
fn a_3_0_description_that_serde_json_cannot_hold_is_corrupt_not_a_panic() {
    let options = FrameOptions {
        compact_small: true,
        serializer: CLOUDPICKLE,
        ..FrameOptions::default()
    };
    let (written, blob) = frame(&[b"tiny".as_slice()], &options).unwrap();
    assert_eq!(written.format_version, (IMPLIED_MAJOR, 0));
    // Valid JSON text (so it passes as a raw value), out of range as a number.
    let body = String::from_utf8(blob[body_range(&blob)].to_vec()).unwrap();
    let edited = body.replace(r#""type":"pickle""#, r#""type":"pickle","n":1e999"#);
    assert_ne!(edited, body);
    let mut crafted = blob[..12].to_vec();
    crafted.extend_from_slice(&(edited.len() as u32).to_le_bytes());
    crafted.extend_from_slice(edited.as_bytes());
    crafted.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&crafted).to_le_bytes());
    let message = corrupt_message(BlobHeader::decode(&crafted));
    assert!(message.contains("serializer description"), "{message}");
}

#[test]
fn a_compressed_compact_blob_records_its_codec_and_level() {
    let payload = b"abc".repeat(500);
    let options = FrameOptions {
        codec: Some(Codec::Zlib),
        compress: CompressOptions {
            level: Some(9),
            ..CompressOptions::default()
        },
        compact_small: true,
        ..options()
    };
    let (written, blob) = frame(&[payload.as_slice()], &options).unwrap();
    assert_eq!(written.format_version, (COMPACT_MAJOR, 0));
    let (read, stored) = unframe(&blob).unwrap();
    assert_eq!(read, written);
    assert_eq!((read.codec, read.level), (Some(Codec::Zlib), Some(9)));
    assert_eq!(decode_segment(&read, 0, stored[0]).unwrap(), payload);
}

#[test]
fn a_blob_with_one_segment_apart_verifies_as_the_whole_one() {
    let segments = sample_segments();
    let blob = framed(&segments);
    let (header, whole_ranges) = verify(&blob).unwrap();
    for apart in 0..segments.len() {
        let gap = whole_ranges[apart].clone();
        let rest = [&blob[..gap.start], &blob[gap.end..]].concat();
        let (apart_header, ranges) =
            verify_with_segment_apart(&rest, apart, &blob[gap.clone()], &ReadChecks::default())
                .unwrap();
        assert_eq!(apart_header, header);
        for (index, range) in ranges.into_iter().enumerate() {
            if index == apart {
                assert!(range.is_empty());
            } else {
                assert_eq!(&rest[range], segments[index].as_slice());
            }
        }
        // A damaged byte in the segment apart, in another segment, or in the padding after the
        // segment apart (now in `rest`, where the segment was) is found.
        if !gap.is_empty() {
            let mut damaged = blob[gap.clone()].to_vec();
            damaged[0] ^= 1;
            let error = verify_with_segment_apart(&rest, apart, &damaged, &ReadChecks::default());
            assert!(corrupt_message(error).contains(&format!("segment {apart} ")));
        }
        let mut damaged = rest.clone();
        let other = *[0, 2, 3].iter().find(|&&index| index != apart).unwrap();
        let other_range = whole_ranges[other].clone();
        let shift = if other > apart { gap.len() } else { 0 };
        damaged[other_range.start - shift] ^= 1;
        let error =
            verify_with_segment_apart(&damaged, apart, &blob[gap.clone()], &ReadChecks::default());
        assert!(corrupt_message(error).contains(&format!("segment {other} ")));
        let padded_end = align_up(gap.end as u64, header.alignment) as usize;
        if padded_end > gap.end {
            let mut damaged = rest.clone();
            damaged[gap.start] = 1;
            let error = verify_with_segment_apart(
                &damaged,
                apart,
                &blob[gap.clone()],
                &ReadChecks::default(),
            );
            assert!(corrupt_message(error).contains(&format!("padding after segment {apart}")));
        }
        // A segment apart of another length than the header's is refused.
        assert!(verify_with_segment_apart(&rest, apart, &[0; 3], &ReadChecks::default()).is_err());
    }
}

#[test]
fn a_3_0_header_restores_codec_options_from_its_codec_applied_or_skipped() {
    let zlib_9 = r#"{"compressionlib":"zlib","level":9,"serializer":{"picklelib":"cloudpickle","picklelib_version":"3.1.3","type":"pickle"},"type":"compressed/pickle"}"#;
    let options = FrameOptions {
        serializer: zlib_9,
        codec: Some(Codec::Zlib),
        compress: CompressOptions {
            level: Some(9),
            ..CompressOptions::default()
        },
        compact_small: true,
        ..FrameOptions::default()
    };
    let compressible = b"abc".repeat(500);
    for payload in [compressible.as_slice(), b"tiny".as_slice()] {
        let (written, blob) = frame(&[payload], &options).unwrap();
        assert_eq!(written.format_version, (IMPLIED_MAJOR, 0));
        let (read, stored) = unframe(&blob).unwrap();
        assert_eq!(read.serializer, zlib_9);
        assert_eq!(read, written);
        assert_eq!(decode_segment(&read, 0, stored[0]).unwrap(), payload);
    }
}
