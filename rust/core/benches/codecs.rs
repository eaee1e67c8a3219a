//! Throughput of each codec's compression and decompression on structured, compressible data.
//! `cargo bench -p ferroflow-core --bench codecs` (or `make bench-rust`).
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferroflow_core::codec::{compress, decompress, Codec, CompressOptions};

/// Large enough for the 2-thread xz encoder to cut two 1 MiB blocks, small enough for lzma level 6.
const PAYLOAD_LEN: usize = 2 << 20;

/// CSV-like event rows: repeated vocabulary with varying numbers, compressing about 4x.
fn event_rows(len: usize) -> Vec<u8> {
    const EVENTS: [&str; 5] = ["click", "view", "purchase", "signup", "logout"];
    let mut rows = String::with_capacity(len + 64);
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut row = 0u64;
    while rows.len() < len {
        // xorshift: cheap, deterministic variety.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let event = EVENTS[(state % 5) as usize];
        rows.push_str(&format!(
            "{row},user-{},{event},{}.{:02}\n",
            state % 50_000,
            state % 1000,
            state % 100
        ));
        row += 1;
    }
    rows.truncate(len);
    rows.into_bytes()
}

fn cases() -> [(Codec, i32, u32); 6] {
    [
        (Codec::Zlib, 6, 1),
        (Codec::Bz2, 9, 1),
        (Codec::Lzma, 3, 1),
        (Codec::Lzma, 3, 2),
        (Codec::Zstd, 3, 1),
        (Codec::Zstd, -5, 1),
    ]
}

fn codecs(c: &mut Criterion) {
    let data = event_rows(PAYLOAD_LEN);
    let mut group = c.benchmark_group("codecs");
    group.throughput(Throughput::Bytes(data.len() as u64));
    // lzma takes a good part of a second per run: the fewest samples criterion accepts.
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    for (codec, level, threads) in cases() {
        let options = CompressOptions {
            level: Some(level),
            threads,
            extreme: false,
        };
        let label = format!("{}-{level}-t{threads}", codec.name());
        group.bench_function(BenchmarkId::new("compress", &label), |b| {
            b.iter(|| compress(codec, black_box(&data), &options).unwrap())
        });
        let packed = compress(codec, &data, &options).unwrap();
        group.bench_function(BenchmarkId::new("decompress", &label), |b| {
            b.iter(|| decompress(codec, black_box(&packed), Some(data.len())).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, codecs);
criterion_main!(benches);
