//! Archive datasets end to end through the real download path: archives in the real layouts
//! (CIFAR-10 `cifar-10-batches-bin/data_batch_{1..5}.bin` with 3073-byte records; STL-10
//! `stl10_binary/{train,test}_{X,y}.bin` with column-major planes) are served from a loopback HTTP
//! server through REPRO_MIRROR, fetched, verified, safely extracted, decoded and trained on with the
//! whole pipeline; unsafe archives and tampered caches end with exit 2 and no leftovers.

mod common;

use common::*;

/// Records whose pixels depend on the class (plus noise), so the pipeline has something to learn.
fn batch(n: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as u8
    };
    let mut out = Vec::with_capacity(n * 3073);
    for i in 0..n {
        let label = (i % 10) as u8;
        out.push(label);
        for c in 0..3 {
            for p in 0..1024 {
                let stripe = ((p / 32 + c * 7 + label as usize * 3) % 10) as u8;
                out.push(stripe.saturating_mul(20).wrapping_add(next() / 8));
            }
        }
    }
    out
}

fn tar_gz(path: &std::path::Path, files: &[(&str, Vec<u8>)]) {
    let gz = flate2::write::GzEncoder::new(std::fs::File::create(path).unwrap(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (name, bytes) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, &bytes[..]).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
}

#[test]
fn cifar10_from_a_loopback_mirror_through_training() {
    let sb = Sandbox::new();
    let served = sb.path("mirror/cifar10");
    std::fs::create_dir_all(&served).unwrap();
    let archive = served.join("cifar-10-binary.tar.gz");
    let mut files: Vec<(String, Vec<u8>)> = (1..=5).map(|i| (format!("cifar-10-batches-bin/data_batch_{i}.bin"), batch(300, i))).collect();
    files.push(("cifar-10-batches-bin/test_batch.bin".into(), batch(300, 99)));
    files.push(("cifar-10-batches-bin/batches.meta.txt".into(), b"airplane\nautomobile\n".to_vec()));
    let refs: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    tar_gz(&archive, &refs);
    archive_lock(&sb, "cifar10", "cifar10_bin", &archive, &["https://invalid.invalid/cifar-10-binary.tar.gz"]);
    let server = FileServer::start(&sb.path("mirror"));
    let env = [("REPRO_MIRROR", server.url.as_str())];

    let o = sb.repro_env(&["fetch", "cifar10"], &env);
    assert_exit(&o, 0);
    let o = sb.repro_env(&["verify", "cifar10"], &env);
    assert_exit(&o, 0);

    let suite = tiny_suite(1)
        .replace("dataset: fashion_mnist", "dataset: cifar10")
        .replace("train_subset: 1024, monitor_holdout: 200, monitor_bank: 1000", "train_subset: 512, monitor_holdout: 100, monitor_bank: 500")
        .replace("train_subset: 10000}", "train_subset: 1500}");
    sb.write("c.yaml", &suite);
    let o = sb.repro_env(&["run", "c.yaml", "--device", "cpu"], &env);
    assert_exit(&o, 0);
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(sb.path("reports/tiny/cim/metrics.json")).unwrap()).unwrap();
    let knn = m["metrics"]["knn_top1@k20_t0.07_cosine"]["value"].as_f64().unwrap();
    assert!(knn > 50.0, "class-striped images are easy: k-NN {knn}");
    assert!(sb.path("cache/cifar10/cifar-10-binary.tar.gz.extracted/.repro-extracted").exists());
}

#[test]
fn unsafe_archive_and_corrupt_cache_exit_2_without_leftovers() {
    let sb = Sandbox::new();
    let served = sb.path("mirror/cifar10");
    std::fs::create_dir_all(&served).unwrap();
    let archive = served.join("cifar-10-binary.tar.gz");
    // A path-traversal entry written into the raw header (tar's builder refuses such names).
    let gz = flate2::write::GzEncoder::new(std::fs::File::create(&archive).unwrap(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let body = b"owned".to_vec();
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..9].copy_from_slice(b"../escape");
    h.set_size(body.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append(&h, &body[..]).unwrap();
    tar.into_inner().unwrap().finish().unwrap();
    archive_lock(&sb, "cifar10", "cifar10_bin", &archive, &[]);
    let server = FileServer::start(&sb.path("mirror"));
    let env = [("REPRO_MIRROR", server.url.as_str())];
    sb.write("c.yaml", &tiny_suite(1).replace("dataset: fashion_mnist", "dataset: cifar10"));
    let o = sb.repro_env(&["run", "c.yaml"], &env);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("../escape"), "{}", stderr(&o));
    let cache = files_under(&sb.path("cache"));
    assert_eq!(cache, vec!["cifar10/cifar-10-binary.tar.gz".to_owned()], "only the verified archive may remain");
    assert!(!sb.path("cache/escape").exists() && !sb.path("reports").exists());

    // A cached file that no longer matches the lock: verify names it, exit 2.
    std::fs::write(sb.path("cache/cifar10/cifar-10-binary.tar.gz"), b"tampered").unwrap();
    let o = sb.repro_env(&["verify", "cifar10"], &env);
    assert_exit(&o, 2);
    assert!(stdout(&o).contains("cifar-10-binary.tar.gz"), "{}", stdout(&o));
}

#[test]
fn stl10_from_a_loopback_mirror_through_training() {
    let sb = Sandbox::new();
    let served = sb.path("mirror/stl10");
    std::fs::create_dir_all(&served).unwrap();
    let archive = served.join("stl10_binary.tar.gz");
    // Class-dependent brightness and stripes, written column-major per plane as the real files are.
    let split = |n: usize| -> (Vec<u8>, Vec<u8>) {
        let mut x = Vec::with_capacity(n * 27648);
        let mut y = Vec::with_capacity(n);
        for i in 0..n {
            let label = (i % 10) as u8;
            y.push(label + 1);
            for c in 0..3usize {
                for col in 0..96usize {
                    for row in 0..96usize {
                        x.push((label as usize * 23 + (row / 8) * 5 + c * 3) as u8 ^ (col as u8 & 3));
                    }
                }
            }
        }
        (x, y)
    };
    let (trx, tr_y) = split(200);
    let (tex, te_y) = split(100);
    tar_gz(&archive, &[("stl10_binary/train_X.bin", trx), ("stl10_binary/train_y.bin", tr_y), ("stl10_binary/test_X.bin", tex), ("stl10_binary/test_y.bin", te_y)]);
    archive_lock(&sb, "stl10", "stl10_bin", &archive, &[]);
    let server = FileServer::start(&sb.path("mirror"));
    let env = [("REPRO_MIRROR", server.url.as_str())];
    let suite = tiny_suite(1)
        .replace("dataset: fashion_mnist", "dataset: stl10")
        .replace("train_subset: 1024, monitor_holdout: 200, monitor_bank: 1000", "train_subset: 64, monitor_holdout: 20, monitor_bank: 100")
        .replace("batch_size: 128, seed", "batch_size: 32, seed")
        .replace("train_subset: 10000}", "train_subset: 200}");
    sb.write("s.yaml", &suite);
    let o = sb.repro_env(&["run", "s.yaml", "--device", "cpu", "--target", "floor"], &env);
    assert_exit(&o, 0);
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(sb.path("reports/tiny/floor/metrics.json")).unwrap()).unwrap();
    let knn = m["metrics"]["knn_top1@k20_t0.07_cosine"]["value"].as_f64().unwrap();
    assert!(knn > 50.0, "class-striped 96x96 images: k-NN {knn}");
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(sb.path("reports/tiny/floor/config.json")).unwrap()).unwrap();
    assert_eq!(cfg["target"]["dataset"], "stl10");
}

#[test]
fn imagenette_jpeg_folders_from_a_loopback_mirror() {
    let sb = Sandbox::new();
    let served = sb.path("mirror/imagenette_160");
    std::fs::create_dir_all(&served).unwrap();
    // Real JPEGs in the imagenette2-160 layout, class-coloured, not square (resized to 160×160).
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for (split, per_class) in [("train", 6), ("val", 3)] {
        for class in 0..10u8 {
            for i in 0..per_class {
                let img = image::RgbImage::from_fn(60, 45, |x, y| image::Rgb([class * 25, (x as u8).wrapping_mul(3) ^ i, (y as u8) * 5]));
                let mut bytes = Vec::new();
                image::DynamicImage::ImageRgb8(img).write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Jpeg).unwrap();
                files.push((format!("imagenette2-160/{split}/n0{class}000000/img_{i}.JPEG"), bytes));
            }
        }
    }
    let archive = served.join("imagenette2-160.tgz");
    let refs: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    tar_gz(&archive, &refs);
    archive_lock(&sb, "imagenette_160", "image_folder_tgz", &archive, &[]);
    let server = FileServer::start(&sb.path("mirror"));
    let env = [("REPRO_MIRROR", server.url.as_str())];
    let suite = tiny_suite(1)
        .replace("dataset: fashion_mnist", "dataset: imagenette_160")
        .replace("train_subset: 1024, monitor_holdout: 200, monitor_bank: 1000", "train_subset: 16, monitor_holdout: 10, monitor_bank: 30")
        .replace("batch_size: 128, seed", "batch_size: 8, seed")
        .replace("train_subset: 10000}", "train_subset: 60}")
        .replace("knn: {k: 20", "knn: {k: 3");
    sb.write("s.yaml", &suite);
    let o = sb.repro_env(&["run", "s.yaml", "--device", "cpu", "--target", "floor"], &env);
    assert_exit(&o, 0);
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(sb.path("reports/tiny/floor/metrics.json")).unwrap()).unwrap();
    let knn = m["metrics"]["knn_top1@k3_t0.07_cosine"]["value"].as_f64().unwrap();
    assert!(knn > 50.0, "class-coloured JPEGs: k-NN {knn}");
    // The decoded splits are cached with a manifest; a second run reads them instead of decoding.
    assert!(sb.path("cache/imagenette_160/decoded/manifest.json").exists());
    assert!(sb.path("cache/imagenette_160/decoded/train_images.npy").exists());
}
