//! Training-step benchmarks on CPU: the batched two-view augmentation alone, and one full CorInfoMax
//! step (two views → ResNet-18 → projector → loss → backward → SGD) at the quick-start size
//! (batch 256, 1×28×28, width 8, the quick-start views) and at the paper's CIFAR size (batch 128 and
//! 512, 3×32×32, width 64, projector 2048-2048-64, the CIFAR views), the latter also without the
//! views (fixed inputs, as `../shared/bench/official_step_bench.py` times the official code), and
//! the quick-start step with the divergence watch that training keeps.
//! Run: `cargo bench --bench train_step` (one group: `cargo bench --bench train_step -- paper_batch128`).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use repro::data::augment::Normalize;
use repro::methods::Model;
use repro::plan::{self, Target};
use repro::train::optim::Optimizer;
use repro::train::{step, two_views, Precision};
use tch::{Device, Kind, Tensor};

fn target(width: i64, projector: &str) -> Target {
    let yaml = format!(
        "id: bench\nmethod: corinfomax\nmethod_params: {{projector: {projector}, alpha: 250, la_r: 0.01, la_mu: 0.01, r_ini: 1.0, eps: 1.0e-8, normalize: true}}\ndataset: fashion_mnist\nbackbone: {{arch: resnet18, width: {width}, zero_init_residual: true, stem: cifar}}\ndata: {{monitor_holdout: 1, monitor_bank: 1}}\naugment: {{crop_scale: [0.2, 1.0], crop_ratio: [0.75, 1.3333], hflip: 0.5, interpolation: bicubic, jitter: {{p: 0.8, brightness: 0.4, contrast: 0.4, saturation: 0.2, hue: 0.1}}, grayscale: {{p: [0.2, 0.2]}}, blur: {{p: [1.0, 0.1], sigma: [0.1, 1.0]}}, solarize: {{p: [0.0, 0.2], threshold: 0.5}}}}\ntrain: {{epochs: 1, batch_size: 256, seeds: [0], lr: 0.3, optimizer: {{name: sgd, momentum: 0.9}}, schedule: {{name: warmup_cosine}}, weight_decay: 1.0e-4, warmup_epochs: 0, min_lr: 0}}\neval: {{batch_size: 256, knn: {{k: 20, temperature: 0.07, distance: cosine}}, linear: {{epochs: 1, batch_size: 256, lr: 0.1, schedule: cosine_per_step, min_lr: 0.0, momentum: 0.9, weight_decay: 0, standardize: true}}}}\nexport: {{parity_tolerance: 1.0e-4, parity_images: 1}}\n"
    );
    let spec: repro::suite::TargetSpec = serde_yaml::from_str(&yaml).expect("bench target");
    let suite = repro::suite::LoadedSuite { path: "bench.yaml".into(), name: "bench".into(), version: 1, description: None, targets: vec![spec] };
    plan::build(&suite).expect("valid bench target").targets.remove(0)
}

fn bench(c: &mut Criterion) {
    repro::machine::tune_allocator(); // as the binary does at start-up
    tch::manual_seed(0);
    let t = target(8, "[512, 512, 64]");
    let norm = Normalize::new(&[0.286], &[0.353], Device::Cpu);
    let x = Tensor::rand([256, 1, 28, 28], (Kind::Float, Device::Cpu));
    let mut g = c.benchmark_group("quickstart_batch256");
    g.throughput(Throughput::Elements(256));
    g.sample_size(10);
    let mut model = Model::new(&t, 1, 28, Device::Cpu).expect("model");
    g.bench_function("two_view_augment", |b| b.iter(|| two_views(&model, &x, &t, &norm).expect("views")));
    let mut opt = Optimizer::new(&model.vs, &t.train.optimizer, 1e-4).expect("optimizer");
    g.bench_function("corinfomax_step_w8", |b| {
        b.iter(|| {
            let (v1, v2) = two_views(&model, &x, &t, &norm).expect("views");
            step(&mut model, &mut opt, Precision::Fp32, &v1, &v2, 0.1, 0, 1).expect("step")
        })
    });
    // The same step with the divergence watch `train` keeps (its cost is the difference).
    let mut watch = repro::train::DivergenceWatch::new(Device::Cpu);
    g.bench_function("corinfomax_step_w8_watched", |b| {
        b.iter(|| {
            let (v1, v2) = two_views(&model, &x, &t, &norm).expect("views");
            let out = step(&mut model, &mut opt, Precision::Fp32, &v1, &v2, 0.1, 0, 1).expect("step");
            watch.note(0, &out);
            out
        })
    });
    // The watch alone, on one step's output: its absolute cost per step.
    let (v1, v2) = two_views(&model, &x, &t, &norm).expect("views");
    let out = step(&mut model, &mut opt, Precision::Fp32, &v1, &v2, 0.1, 0, 1).expect("step");
    g.bench_function("divergence_watch_note", |b| b.iter(|| watch.note(0, &out)));
    g.finish();
    for batch in [128i64, 512] {
        paper(c, batch);
    }
}

/// CorInfoMax at the paper's CIFAR-10 size (README "Commands for original runs": ResNet-18 width 64,
/// projector 2048-2048-64, lr 0.5), one step of `batch` images.
fn paper(c: &mut Criterion, batch: i64) {
    tch::manual_seed(0);
    let t = target(64, "[2048, 2048, 64]");
    let norm = Normalize::new(&[0.4914, 0.4822, 0.4465], &[0.247, 0.243, 0.261], Device::Cpu);
    let x = Tensor::rand([batch, 3, 32, 32], (Kind::Float, Device::Cpu));
    let (f1, f2) = (Tensor::randn([batch, 3, 32, 32], tch::kind::FLOAT_CPU), Tensor::randn([batch, 3, 32, 32], tch::kind::FLOAT_CPU));
    let mut model = Model::new(&t, 3, 32, Device::Cpu).expect("model");
    let (f1, f2) = (model.layout(&f1), model.layout(&f2));
    let mut opt = Optimizer::new(&model.vs, &t.train.optimizer, 1e-4).expect("optimizer");
    let mut g = c.benchmark_group(format!("paper_batch{batch}"));
    g.throughput(Throughput::Elements(batch as u64));
    g.sample_size(10);
    g.bench_function("corinfomax_step_w64_fixed_inputs", |b| b.iter(|| step(&mut model, &mut opt, Precision::Fp32, &f1, &f2, 0.5, 0, 1).expect("step")));
    g.bench_function("corinfomax_step_w64_with_views", |b| {
        b.iter(|| {
            let (v1, v2) = two_views(&model, &x, &t, &norm).expect("views");
            step(&mut model, &mut opt, Precision::Fp32, &v1, &v2, 0.5, 0, 1).expect("step")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
