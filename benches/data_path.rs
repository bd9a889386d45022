//! Data-path benchmarks on CPU, in images per second: decoding (parallel JPEG decode + resize of an
//! Imagenette-like folder; CIFAR binary records) and the batched two-view augmentation of the
//! CorInfoMax CIFAR views at 32, 64 and 96 px, then both together (decode a batch of JPEGs, then
//! make its two views). Inputs are generated at start-up (real JPEG files in a temp folder).
//! Run: `cargo bench --bench data_path`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use repro::data::augment::{random_view, Normalize};
use repro::data::folder::{decode_image_folder, decode_memory, Resize};
use repro::plan::{Augment, Blur, Grayscale, Interpolation, Jitter, Solarize};
use tch::{Device, Kind, Tensor};

/// The asymmetric views of corinfomax-ssl's cifars-tiny/transform_utils.py (`PretrainTransform("cifar10")`).
fn views() -> Augment {
    Augment {
        crop_scale: [0.08, 1.0],
        crop_ratio: [0.75, 4.0 / 3.0],
        hflip: 0.5,
        interpolation: Interpolation::Bicubic,
        translate: None,
        jitter: Some(Jitter { p: 0.8, brightness: 0.4, contrast: 0.4, saturation: 0.2, hue: 0.1 }),
        grayscale: Some(Grayscale { p: [0.2, 0.2] }),
        blur: Some(Blur { p: [1.0, 0.1], sigma: [0.1, 2.0] }),
        solarize: Some(Solarize { p: [0.0, 0.2], threshold: 0.5 }),
    }
}

/// A photo-like 200×150 JPEG (gradients plus texture), as Imagenette-160's are about 213×160.
fn jpeg(i: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(200, 150, |x, y| {
        image::Rgb([(x + i) as u8, (y * 2) as u8, ((x * y + i * 7) % 251) as u8])
    });
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(img).write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Jpeg).expect("encode");
    bytes
}

fn two_views(x: &Tensor, a: &Augment, norm: &Normalize) -> (Tensor, Tensor) {
    (norm.apply(&random_view(x, a, 0).expect("view")), norm.apply(&random_view(x, a, 1).expect("view")))
}

fn bench(c: &mut Criterion) {
    repro::machine::tune_allocator(); // as the binary does at start-up
    tch::manual_seed(0);
    let a = views();
    let norm = Normalize::new(&[0.5, 0.5, 0.5], &[0.25, 0.25, 0.25], Device::Cpu);

    let mut g = c.benchmark_group("decode");
    g.sample_size(10);
    let dir = tempfile::tempdir().expect("temp dir");
    let n = 512u32;
    for i in 0..n {
        let p = dir.path().join(format!("c{}/img_{i}.JPEG", i % 10));
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, jpeg(i)).expect("write");
    }
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("jpeg_folder_200x150_to_64", |b| b.iter(|| decode_image_folder(dir.path(), None, 64, Resize::ShorterSide(64)).expect("decode")));
    g.bench_function("jpeg_folder_200x150_to_160", |b| b.iter(|| decode_image_folder(dir.path(), None, 160, Resize::ShorterSide(160)).expect("decode")));
    let records = 10_000usize;
    let bin = dir.path().join("batch.bin");
    std::fs::write(&bin, (0..records * 3073).map(|i| if i % 3073 == 0 { (i / 3073 % 10) as u8 } else { (i % 251) as u8 }).collect::<Vec<u8>>()).expect("write");
    g.throughput(Throughput::Elements(records as u64));
    g.bench_function("cifar10_binary_records", |b| b.iter(|| repro::data::cifar::decode(&[&bin], repro::data::cifar::Labels::Only).expect("decode")));
    g.finish();

    let mut g = c.benchmark_group("two_view_augment_batch256");
    g.sample_size(10);
    g.throughput(Throughput::Elements(256));
    for side in [32i64, 64, 96] {
        let x = Tensor::rand([256, 3, side, side], (Kind::Float, Device::Cpu));
        g.bench_with_input(BenchmarkId::from_parameter(format!("{side}px")), &x, |b, x| b.iter(|| two_views(x, &a, &norm)));
    }
    g.finish();
    // One core, as `../shared/bench/official_aug_bench.py` times the official (PIL) views.
    // libtorch's threads, which the CPU jitter kernel follows too.
    let threads = tch::get_num_threads();
    tch::set_num_threads(1);
    let mut g = c.benchmark_group("two_view_augment_batch256_1thread");
    g.sample_size(10);
    g.throughput(Throughput::Elements(256));
    let x = Tensor::rand([256, 3, 32, 32], (Kind::Float, Device::Cpu));
    g.bench_function("32px", |b| b.iter(|| two_views(&x, &a, &norm)));
    g.finish();
    tch::set_num_threads(threads);

    let mut g = c.benchmark_group("decode_plus_two_views_batch256");
    g.sample_size(10);
    g.throughput(Throughput::Elements(256));
    let items: Vec<(String, Vec<u8>)> = (0..256).map(|i| (format!("img_{i}.JPEG"), jpeg(i))).collect();
    g.bench_function("jpeg_200x150_to_64px", |b| {
        b.iter(|| {
            let set = decode_memory(&items, vec![0; items.len()], 64, Resize::ShorterSide(64)).expect("decode");
            let x = Tensor::from_slice(&set.pixels).reshape([set.n as i64, 3, 64, 64]).to_kind(Kind::Float) / 255.0;
            two_views(&x, &a, &norm)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
