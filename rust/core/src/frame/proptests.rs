//! Property tests: whatever bytes a reader is given (arbitrary ones, or a valid blob mutated),
//! it returns a typed error or a verified blob, and never panics or allocates what the bytes
//! claim without checking.
use super::*;
use proptest::prelude::*;
use std::io::Cursor;

fn signing_key() -> SigningKey {
    SigningKey::from_material(b"property test signing key").unwrap()
}

/// A valid blob of 0-3 segments, compressed or not, signed or not, under a key or not, with a
/// serializer description that format 3.0 shortens or one it keeps whole.
fn valid_blob() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..4),
        prop::option::of(prop::sample::select(Codec::ALL.to_vec())),
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(vec![
            r#"{"type":"pickle"}"#,
            r#"{"compressionlib":"lzma","level":null,"serializer":{"picklelib":"cloudpickle","picklelib_version":null,"type":"pickle"},"type":"compressed/pickle"}"#,
        ]),
    )
        .prop_map(|(segments, codec, sign, keyed, serializer)| {
            let key = signing_key();
            let slices: Vec<&[u8]> = segments.iter().map(Vec::as_slice).collect();
            let options = FrameOptions {
                serializer,
                codec,
                key: keyed.then_some("some/key"),
                signing_key: sign.then_some(&key),
                compact_small: true,
                ..FrameOptions::default()
            };
            frame(&slices, &options).unwrap().1
        })
}

/// One change to a blob: a byte set, a range cut out, bytes inserted, or the blob cut short.
#[derive(Debug, Clone)]
enum Mutation {
    Set(prop::sample::Index, u8),
    Remove(prop::sample::Index, usize),
    Insert(prop::sample::Index, Vec<u8>),
    Truncate(prop::sample::Index),
    /// The body length field (bytes 12..16), which decides how much a reader reads as a header.
    BodyLength(u32),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<prop::sample::Index>(), 1..64usize).prop_map(|(i, n)| Mutation::Remove(i, n)),
        (
            any::<prop::sample::Index>(),
            prop::collection::vec(any::<u8>(), 1..32)
        )
            .prop_map(|(i, bytes)| Mutation::Insert(i, bytes)),
        any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        any::<u32>().prop_map(Mutation::BodyLength),
    ]
}

fn mutate(blob: &mut Vec<u8>, mutation: &Mutation) {
    if blob.is_empty() {
        return;
    }
    match mutation {
        Mutation::Set(at, byte) => {
            let at = at.index(blob.len());
            blob[at] = *byte;
        }
        Mutation::Remove(at, len) => {
            let at = at.index(blob.len());
            let end = (at + len).min(blob.len());
            blob.drain(at..end);
        }
        Mutation::Insert(at, bytes) => {
            let at = at.index(blob.len() + 1);
            blob.splice(at..at, bytes.iter().copied());
        }
        Mutation::Truncate(at) => blob.truncate(at.index(blob.len())),
        Mutation::BodyLength(len) => {
            if blob.len() >= 16 {
                blob[12..16].copy_from_slice(&len.to_le_bytes());
            }
        }
    }
}

/// Reads `data` every way a reader can, with strict checks; panics only if a reader panics.
/// The last result, when there is one, is of reading the header alone.
fn read_every_way(data: &[u8]) -> Vec<Result<()>> {
    let keys = [signing_key()];
    let checks = ReadChecks {
        expected_key: Some("some/key"),
        verification_keys: &keys,
        require_signature: false,
        max_decompressed_length: Some(1 << 20),
    };
    let mut results = vec![
        unframe_with(data, &checks).and_then(|(header, stored)| {
            for (index, segment) in stored.iter().enumerate() {
                decode_segment(&header, index, segment)?;
            }
            Ok(())
        }),
        verify(data).map(drop),
    ];
    for first_read in [u64::MAX, 0, 20] {
        let opened = BlobReader::open_reading_first(
            Cursor::new(data),
            data.len() as u64,
            first_read,
            &checks,
        );
        results.push(opened.and_then(|mut reader| reader.read_segments().map(drop)));
    }
    if data.len() >= PRELUDE_LEN {
        let header = header_len_from_prelude(&data[..PRELUDE_LEN]).and_then(|len| {
            // `data` is the whole blob: the trailer is never fetched.
            verify_header(data, len, data.len() as u64, &checks, |_| {
                unreachable!("the trailer lies in the data")
            })
            .map(drop)
        });
        results.push(header);
    }
    results
}

fn is_typed(result: &Result<()>) -> bool {
    matches!(
        result,
        Ok(()) | Err(Error::Corrupt(_) | Error::UnsupportedFormat(_) | Error::Untrusted(_))
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_give_a_typed_error(data in prop::collection::vec(any::<u8>(), 0..512)) {
        for result in read_every_way(&data) {
            prop_assert!(is_typed(&result), "{result:?}");
        }
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_prelude_give_a_typed_error(
        body_len in 0u32..600,
        rest in prop::collection::vec(any::<u8>(), 0..700),
    ) {
        let mut data = MAGIC.to_vec();
        data.extend_from_slice(&FORMAT_MAJOR.to_le_bytes());
        data.extend_from_slice(&FORMAT_MINOR.to_le_bytes());
        data.extend_from_slice(&body_len.to_le_bytes());
        data.extend_from_slice(&rest);
        for result in read_every_way(&data) {
            prop_assert!(is_typed(&result), "{result:?}");
            prop_assert!(result.is_err());
        }
    }

    #[test]
    fn mutated_blobs_give_a_typed_error_or_verify(
        blob in valid_blob(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let mut data = blob.clone();
        for change in &mutations {
            mutate(&mut data, change);
        }
        let results = read_every_way(&data);
        for result in &results {
            prop_assert!(is_typed(result), "{result:?}");
        }
        if data != blob {
            // Every full read detects the change (the header-only read cannot see the payload).
            for result in &results[..5] {
                prop_assert!(result.is_err(), "a changed blob was accepted");
            }
        }
    }

    #[test]
    fn mutated_header_bodies_with_a_valid_checksum_give_a_typed_error(
        blob in valid_blob(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        // Mutates the JSON body and writes a matching checksum, as a careful forger would: the
        // header parser and its consistency checks, not the checksum, must then stop it.
        let body_len = u32::from_le_bytes(blob[12..16].try_into().unwrap()) as usize;
        let mut body = blob[PRELUDE_LEN..PRELUDE_LEN + body_len].to_vec();
        for change in &mutations {
            if !matches!(change, Mutation::BodyLength(_)) {
                mutate(&mut body, change);
            }
        }
        let mut data = blob[..12].to_vec();
        data.extend_from_slice(&(body.len() as u32).to_le_bytes());
        data.extend_from_slice(&body);
        data.extend_from_slice(&xxh3_64(&data).to_le_bytes());
        let rest_start = PRELUDE_LEN + body_len + CHECKSUM_LEN;
        data.extend_from_slice(&blob[rest_start..]);
        for result in read_every_way(&data) {
            prop_assert!(is_typed(&result), "{result:?}");
        }
    }

    #[test]
    fn a_header_body_of_any_json_with_a_valid_checksum_gives_a_typed_error(
        body in prop::collection::vec(any::<u8>(), 0..300),
        json in any::<bool>(),
    ) {
        // The checksum is right, so the body parser itself is exercised.
        let body = if json {
            serde_json::to_vec(&String::from_utf8_lossy(&body)).unwrap()
        } else {
            body
        };
        let mut data = MAGIC.to_vec();
        data.extend_from_slice(&FORMAT_MAJOR.to_le_bytes());
        data.extend_from_slice(&FORMAT_MINOR.to_le_bytes());
        data.extend_from_slice(&(body.len() as u32).to_le_bytes());
        data.extend_from_slice(&body);
        data.extend_from_slice(&xxh3_64(&data).to_le_bytes());
        for result in read_every_way(&data) {
            prop_assert!(is_typed(&result), "{result:?}");
        }
    }
}
