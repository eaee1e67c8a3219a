//! Throughput of each hash on a large buffer (BLAKE3 goes multi-threaded from 1 MiB) and a small one.
//! `cargo bench -p ferroflow-core --bench hashing` (or `make bench-rust`).
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferroflow_core::hash::{hash_buffers, HashAlgorithm};

fn hashing(c: &mut Criterion) {
    let mut group = c.benchmark_group("hashing");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(2));
    for len in [4 << 10, 64 << 20] {
        // Hash speed does not depend on the content.
        let data: Vec<u8> = (0..len).map(|i| (i * 131 % 251) as u8).collect();
        group.throughput(Throughput::Bytes(len as u64));
        for algorithm in HashAlgorithm::ALL {
            group.bench_function(BenchmarkId::new(algorithm.name(), len), |b| {
                b.iter(|| hash_buffers(algorithm, [black_box(data.as_slice())]))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, hashing);
criterion_main!(benches);
