//! Evaluation benchmarks on CPU: the weighted k-NN at solo-learn's CIFAR size (50k bank × 10k
//! queries × 512 dims, k 20, T 0.07, cosine; `../shared/bench/official_knn_bench.py` times solo-learn
//! on the same shapes) beside the one fp32 matrix product it contains (10k × 512 · 512 × 50k, the
//! same library, chunks and threads, without the neighbour selection).
//! Run: `cargo bench --bench eval`.

use criterion::{criterion_group, criterion_main, Criterion};
use ndarray::{linalg::general_mat_mul, s, Array2, Axis};
use repro::eval::knn::{knn_predict, Distance, KnnParams};

fn data(rows: usize, dim: usize, seed: u64) -> Array2<f32> {
    // A cheap deterministic pseudo-random fill (xorshift), centred.
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    Array2::from_shape_simple_fn((rows, dim), || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    })
}

fn bench(c: &mut Criterion) {
    repro::machine::tune_allocator(); // as the binary does at start-up
    let (n_train, n_test, dim) = (50_000, 10_000, 512);
    let (train, test) = (data(n_train, dim, 1), data(n_test, dim, 2));
    let labels: Vec<u32> = (0..n_train as u32).map(|i| i % 10).collect();
    let p = KnnParams { k: 20, temperature: 0.07, distance: Distance::Cosine };
    let mut g = c.benchmark_group("knn_50k_10k_512");
    g.sample_size(10);
    g.bench_function("weighted_knn_cosine_k20", |b| b.iter(|| knn_predict(train.view(), &labels, test.view(), 10, &p).expect("k-NN")));
    g.bench_function("its_gemm_alone", |b| {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = ((1usize << 24) / n_train).clamp(1, 256);
        b.iter(|| {
            std::thread::scope(|scope| {
                for part in test.axis_chunks_iter(Axis(0), n_test.div_ceil(threads)) {
                    let train = &train;
                    scope.spawn(move || {
                        let mut buf = Array2::<f32>::zeros((chunk, n_train));
                        for block in part.axis_chunks_iter(Axis(0), chunk) {
                            let mut out = buf.slice_mut(s![..block.nrows(), ..]);
                            general_mat_mul(1.0, &block, &train.t(), 0.0, &mut out);
                        }
                        buf[[0, 0]]
                    });
                }
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
