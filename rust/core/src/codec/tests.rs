use super::*;

/// Structured, compressible bytes (records of text and numbers), like a pickled result.
fn sample(len: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(len + 64);
    let mut i: u64 = 0;
    while data.len() < len {
        data.extend_from_slice(
            format!(
                "{{'id': {i}, 'name': 'item-{}', 'score': {}}}\n",
                i % 97,
                i * 7919 % 1000
            )
            .as_bytes(),
        );
        i += 1;
    }
    data.truncate(len);
    data
}

fn options(level: Option<i32>, threads: u32) -> CompressOptions {
    CompressOptions {
        level,
        threads,
        extreme: false,
    }
}

fn corrupt_message(result: Result<Vec<u8>>) -> String {
    match result {
        Err(Error::Corrupt(message)) => message,
        other => panic!("expected a Corrupt error, got {other:?}"),
    }
}

#[test]
fn every_codec_round_trips_at_every_level() {
    let data = sample(50_000);
    for codec in Codec::ALL {
        for level in codec
            .levels()
            .filter(|l| codec != Codec::Zstd || (-5..=19).contains(l))
        {
            let packed = compress(codec, &data, &options(Some(level), 1)).unwrap();
            // zlib's level 0 stores the data without compressing it.
            if level > 0 {
                assert!(
                    packed.len() < data.len(),
                    "{} level {level} did not compress",
                    codec.name()
                );
            }
            assert_eq!(
                decompress(codec, &packed, None).unwrap(),
                data,
                "{} level {level}",
                codec.name()
            );
        }
    }
}

#[test]
fn empty_input_round_trips() {
    for codec in Codec::ALL {
        let packed = compress(codec, b"", &CompressOptions::default()).unwrap();
        assert!(!packed.is_empty());
        assert_eq!(decompress(codec, &packed, None).unwrap(), b"");
        assert_eq!(decompress(codec, &packed, Some(0)).unwrap(), b"");
    }
}

#[test]
fn multithreaded_encoders_write_standard_streams() {
    // Large enough for the xz encoder to cut several blocks at 1 MiB each.
    let data = sample(3 << 20);
    for codec in [Codec::Lzma, Codec::Zstd] {
        for threads in [0, 2, 3] {
            let packed = compress(codec, &data, &options(Some(1), threads)).unwrap();
            assert_eq!(
                decompress(codec, &packed, None).unwrap(),
                data,
                "{} threads={threads}",
                codec.name()
            );
        }
    }
}

#[test]
fn lzma_blocks_spread_over_threads_within_limits() {
    assert_eq!(encode::lzma_block_size(32 << 20, 6, 2), 16 << 20);
    // Never above three dictionaries (preset 6: 8 MiB), never below 1 MiB.
    assert_eq!(encode::lzma_block_size(1 << 30, 6, 2), 24 << 20);
    assert_eq!(encode::lzma_block_size(100, 0, 4), 1 << 20);
}

#[test]
fn extreme_lzma_round_trips_and_other_codecs_refuse_it() {
    let data = sample(20_000);
    let extreme = CompressOptions {
        level: Some(3),
        threads: 1,
        extreme: true,
    };
    let packed = compress(Codec::Lzma, &data, &extreme).unwrap();
    assert_eq!(decompress(Codec::Lzma, &packed, None).unwrap(), data);
    let refused = compress(Codec::Zlib, &data, &extreme)
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("extreme") && refused.contains("zlib"),
        "{refused}"
    );
}

#[test]
fn concatenated_streams_decode_as_one() {
    let (a, b) = (sample(10_000), b"second part".to_vec());
    for codec in [Codec::Lzma, Codec::Bz2, Codec::Zstd] {
        let mut joined = compress(codec, &a, &CompressOptions::default()).unwrap();
        joined.extend(compress(codec, &b, &CompressOptions::default()).unwrap());
        assert_eq!(
            decompress(codec, &joined, None).unwrap(),
            [a.as_slice(), &b].concat(),
            "{}",
            codec.name()
        );
    }
}

#[test]
fn xz_streams_may_be_separated_by_null_padding_in_fours() {
    let stream = compress(Codec::Lzma, b"abc", &CompressOptions::default()).unwrap();
    let padded = [stream.as_slice(), &[0; 8], &stream, &[0; 4]].concat();
    assert_eq!(decompress(Codec::Lzma, &padded, None).unwrap(), b"abcabc");
    let misaligned = [stream.as_slice(), &[0; 3], &stream].concat();
    let message = corrupt_message(decompress(Codec::Lzma, &misaligned, None));
    assert!(message.contains("multiple of 4"), "{message}");
}

#[test]
fn multithreaded_xz_output_decodes_on_several_threads_to_the_same_data() {
    let data = sample(5 << 20);
    let packed = compress(Codec::Lzma, &data, &options(Some(0), 4)).unwrap();
    assert_eq!(decompress(Codec::Lzma, &packed, None).unwrap(), data);
    let mut exact = vec![0; data.len()];
    assert_eq!(
        decompress_into(Codec::Lzma, &packed, &mut exact).unwrap(),
        Some(data.len())
    );
    assert_eq!(exact, data);
}

#[test]
fn zlib_refuses_bytes_after_its_stream() {
    let mut packed = compress(Codec::Zlib, b"hello", &CompressOptions::default()).unwrap();
    packed.extend_from_slice(b"junk");
    let message = corrupt_message(decompress(Codec::Zlib, &packed, None));
    assert!(
        message.contains("4 byte(s) of unexpected data"),
        "{message}"
    );
}

#[test]
fn truncated_and_empty_data_are_reported_as_corrupt() {
    let data = sample(100_000);
    for codec in Codec::ALL {
        let packed = compress(codec, &data, &CompressOptions::default()).unwrap();
        for cut in [1, packed.len() / 2, packed.len() - 1] {
            let message = corrupt_message(decompress(codec, &packed[..cut], None));
            assert!(message.starts_with(codec.name()), "{message}");
        }
        let message = corrupt_message(decompress(codec, b"", None));
        assert!(message.contains("is empty"), "{message}");
    }
}

#[test]
fn flipped_bytes_are_reported_as_corrupt() {
    let data = sample(100_000);
    for codec in Codec::ALL {
        let mut packed = compress(codec, &data, &CompressOptions::default()).unwrap();
        let middle = packed.len() / 2;
        packed[middle] ^= 0x55;
        corrupt_message(decompress(codec, &packed, None));
    }
}

#[test]
fn garbage_is_reported_as_corrupt_naming_the_codec() {
    for codec in Codec::ALL {
        let message = corrupt_message(decompress(codec, b"this is not compressed at all", None));
        assert!(
            message.starts_with(&format!("{}:", codec.name())),
            "{message}"
        );
    }
}

#[test]
fn decompress_into_fills_an_exact_buffer_and_detects_a_small_one() {
    let data = sample(200_000);
    for codec in Codec::ALL {
        let packed = compress(codec, &data, &CompressOptions::default()).unwrap();
        let mut exact = vec![0; data.len()];
        assert_eq!(
            decompress_into(codec, &packed, &mut exact).unwrap(),
            Some(data.len())
        );
        assert_eq!(exact, data);
        let mut roomy = vec![0; data.len() + 10];
        assert_eq!(
            decompress_into(codec, &packed, &mut roomy).unwrap(),
            Some(data.len())
        );
        let mut small = vec![0; data.len() - 1];
        assert_eq!(
            decompress_into(codec, &packed, &mut small).unwrap(),
            None,
            "{}",
            codec.name()
        );
    }
}

#[test]
fn a_wrong_size_hint_costs_nothing_but_speed() {
    let data = sample(100_000);
    for codec in Codec::ALL {
        let packed = compress(codec, &data, &CompressOptions::default()).unwrap();
        for hint in [0, 10, data.len() * 3, usize::MAX] {
            assert_eq!(decompress(codec, &packed, Some(hint)).unwrap(), data);
        }
    }
}

#[test]
fn zstd_frames_record_their_content_size() {
    let packed = compress(Codec::Zstd, &sample(1234), &CompressOptions::default()).unwrap();
    assert_eq!(decompressed_size(Codec::Zstd, &packed), Some(1234));
    let two_frames = [packed.as_slice(), &packed].concat();
    assert_eq!(decompressed_size(Codec::Zstd, &two_frames), Some(2468));
    assert_eq!(
        decompressed_size(Codec::Zstd, &packed[..packed.len() - 1]),
        None
    );
    assert_eq!(decompressed_size(Codec::Zstd, b"junk"), None);
}

#[test]
fn bad_levels_list_the_valid_range() {
    for (codec, level) in [
        (Codec::Lzma, 10),
        (Codec::Bz2, 0),
        (Codec::Zlib, -1),
        (Codec::Zstd, 23),
    ] {
        let message = compress(codec, b"x", &options(Some(level), 1))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains(&format!("level {level}")) && message.contains("choose a level from"),
            "{message}"
        );
    }
}

#[test]
fn unknown_codec_and_too_many_threads_are_invalid_arguments() {
    assert!(
        matches!(Codec::from_name("gzip"), Err(Error::InvalidArgument(m)) if m.contains("lzma, bz2, zlib, zstd"))
    );
    let refused = compress(Codec::Lzma, b"x", &options(None, MAX_THREADS + 1)).unwrap_err();
    assert!(matches!(refused, Error::InvalidArgument(m) if m.contains("threads")));
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn assert_ok_or_corrupt(codec: Codec, data: &[u8]) {
    match decompress(codec, data, None) {
        Ok(_) | Err(Error::Corrupt(_)) => {}
        Err(other) => panic!("{}: unexpected error {other:?}", codec.name()),
    }
    let mut out = [0u8; 100];
    match decompress_into(codec, data, &mut out) {
        Ok(_) | Err(Error::Corrupt(_)) => {}
        Err(other) => panic!("{}: unexpected error {other:?}", codec.name()),
    }
}

#[test]
fn random_bytes_never_panic_and_only_ever_fail_as_corrupt() {
    let mut noise = Noise(0x2545_F491_4F6C_DD1D);
    for codec in Codec::ALL {
        for _ in 0..300 {
            let len = (noise.next() % 600) as usize;
            assert_ok_or_corrupt(codec, &noise.bytes(len));
        }
    }
}

#[test]
fn damaged_streams_never_panic_and_never_decode_to_wrong_data() {
    let data = sample(5_000);
    let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
    for codec in Codec::ALL {
        let packed = compress(codec, &data, &CompressOptions::default()).unwrap();
        for _ in 0..200 {
            let mut damaged = packed.clone();
            let at = (noise.next() as usize) % damaged.len();
            damaged[at] ^= (noise.next() % 255 + 1) as u8;
            match decompress(codec, &damaged, None) {
                Ok(restored) => assert_eq!(
                    restored,
                    data,
                    "{}: damage at {at} went unnoticed",
                    codec.name()
                ),
                Err(Error::Corrupt(_)) => {}
                Err(other) => panic!("{}: unexpected error {other:?}", codec.name()),
            }
        }
    }
}

#[test]
fn max_output_stops_a_decompression_bomb() {
    let zeros = vec![0u8; 8 << 20];
    for codec in Codec::ALL {
        let bomb = compress(codec, &zeros, &CompressOptions::default()).unwrap();
        match decompress_at_most(codec, &bomb, None, 1 << 20) {
            Err(Error::OutputLimit(message)) => {
                assert!(message.contains("max_output=1048576"), "{message}")
            }
            other => panic!(
                "{}: expected OutputLimit, got {:?}",
                codec.name(),
                other.map(|v| v.len())
            ),
        }
        // Exactly at the limit is allowed.
        assert_eq!(
            decompress_at_most(codec, &bomb, None, zeros.len())
                .unwrap()
                .len(),
            zeros.len()
        );
    }
}
