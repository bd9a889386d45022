//! Archive datasets end to end through the real download path: archives in every real layout
//! (CIFAR-10/100 binary records, STL-10 column-major planes with the unlabeled split, Tiny-ImageNet's
//! zip with val_annotations.txt and grayscale JPEGs, Imagenette-style ImageFolder .tgz, ILSVRC-2012's
//! nested train tar and flat val tar for ImageNet-100, a user's own folders) are served from a
//! loopback HTTP server through REPRO_MIRROR (or placed by hand, for manual data), fetched, verified,
//! safely extracted, decoded and (for some) trained on with the whole pipeline; corrupted, truncated,
//! wrong-size and path-traversal archives end with exit 2 and no leftovers.

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
    tar_into(gz, files).finish().unwrap();
}

/// An uncompressed tar (ILSVRC-2012's archives are plain tars).
fn tar_bytes(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    tar_into(Vec::new(), files)
}

fn tar_into<W: std::io::Write>(w: W, files: &[(&str, Vec<u8>)]) -> W {
    let mut tar = tar::Builder::new(w);
    for (name, bytes) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, &bytes[..]).unwrap();
    }
    tar.into_inner().unwrap()
}

/// A real JPEG, w×h, whose colour says its class (and `i` varies it a little).
fn jpeg(w: u32, h: u32, class: u8, i: u8, gray: bool) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([class.wrapping_mul(25), (x as u8).wrapping_mul(3) ^ i, (y as u8).wrapping_mul(5)]));
    let img = if gray { image::DynamicImage::ImageLuma8(image::DynamicImage::ImageRgb8(img).to_luma8()) } else { image::DynamicImage::ImageRgb8(img) };
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Jpeg).unwrap();
    bytes
}

fn npy_u32(path: &std::path::Path) -> Vec<u32> {
    let a: ndarray::Array1<u32> = ndarray_npy::read_npy(path).unwrap();
    a.to_vec()
}

fn npy_u8_shape(path: &std::path::Path) -> (Vec<usize>, Vec<u8>) {
    let a: ndarray::Array4<u8> = ndarray_npy::read_npy(path).unwrap();
    (a.shape().to_vec(), a.into_raw_vec_and_offset().0)
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
    let knn = m["metrics"]["knn_top1@k20_t0.07_cosine_bankall"]["value"].as_f64().unwrap();
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
    let knn = m["metrics"]["knn_top1@k20_t0.07_cosine_bankall"]["value"].as_f64().unwrap();
    assert!(knn > 50.0, "class-striped 96x96 images: k-NN {knn}");
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(sb.path("reports/tiny/floor/config.json")).unwrap()).unwrap();
    assert_eq!(cfg["target"]["dataset"], "stl10");
}

#[test]
fn imagenette_jpeg_folders_from_a_loopback_mirror() {
    let sb = Sandbox::new();
    let served = sb.path("mirror/imagenette_160");
    std::fs::create_dir_all(&served).unwrap();
    // Real JPEGs in the imagenette2-160 layout, class-coloured, not square (shorter side → 64, crop).
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for (split, per_class) in [("train", 6), ("val", 3)] {
        for class in 0..10u8 {
            for i in 0..per_class {
                files.push((format!("imagenette2-160/{split}/n0{class}000000/img_{i}.JPEG"), jpeg(60, 45, class, i, false)));
            }
        }
    }
    let archive = served.join("imagenette2-160.tgz");
    let refs: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    tar_gz(&archive, &refs);
    archive_lock_with(&sb, "imagenette_160", "image_folder", "{train: imagenette2-160/train, test: imagenette2-160/val, shorter_side: 64}", &archive, &[]);
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
    let knn = m["metrics"]["knn_top1@k3_t0.07_cosine_bankall"]["value"].as_f64().unwrap();
    assert!(knn > 50.0, "class-coloured JPEGs: k-NN {knn}");
    // The decoded splits are cached with a manifest; a second run reads them instead of decoding.
    assert!(sb.path("cache/imagenette_160/decoded/manifest.json").exists());
    let (shape, _) = npy_u8_shape(&sb.path("cache/imagenette_160/decoded/train_images.npy"));
    assert_eq!(shape, [60, 3, 64, 64]);
    assert_eq!(npy_u32(&sb.path("cache/imagenette_160/decoded/test_labels.npy")), (0..10).flat_map(|c| [c; 3]).collect::<Vec<u32>>());
    // With the archive gone, the cache alone serves the next fetch --decode (no re-hash, no download).
    std::fs::remove_file(sb.path("cache/imagenette_160/imagenette2-160.tgz")).unwrap();
    drop(server);
    let o = sb.repro(&["run", "s.yaml", "--device", "cpu", "--target", "floor"]);
    assert_exit(&o, 0);
}

/// CIFAR-100 records: coarse label byte first, then fine; one archive serves both label sets, and the
/// second dataset copies the first one's verified archive instead of downloading it again.
#[test]
fn cifar100_fine_and_coarse_share_one_download() {
    let sb = Sandbox::new();
    let served = sb.path("mirror/cifar100");
    std::fs::create_dir_all(&served).unwrap();
    let record = |coarse: u8, fine: u8| -> Vec<u8> {
        let mut r = vec![coarse, fine];
        r.extend((0..3072).map(|p| (p % 251) as u8 ^ fine));
        r
    };
    let train: Vec<u8> = (0..200u32).flat_map(|i| record((i % 20) as u8, (i % 100) as u8)).collect();
    let test: Vec<u8> = (0..50u32).flat_map(|i| record((i % 20) as u8, (99 - i % 100) as u8)).collect();
    let archive = served.join("cifar-100-binary.tar.gz");
    tar_gz(&archive, &[("cifar-100-binary/train.bin", train), ("cifar-100-binary/test.bin", test), ("cifar-100-binary/fine_label_names.txt", b"apple\n".to_vec())]);
    let lock = format!(
        "version: 2\ndatasets:\n{}{}",
        entry_text("cifar100", "cifar100_bin", 100, 32, "{labels: fine}", &[(&archive, &["https://invalid.invalid/x"])]),
        entry_text("cifar100_coarse", "cifar100_bin", 20, 32, "{labels: coarse}", &[(&archive, &["https://invalid.invalid/x"])])
    );
    sb.write("datasets.lock", &lock);
    let server = FileServer::start(&sb.path("mirror"));
    let env = [("REPRO_MIRROR", server.url.as_str())];
    let o = sb.repro_env(&["fetch", "--decode", "cifar100"], &env);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("cifar100: decoded train 200x3x32x32, test 50x3x32x32 (100 classes)"), "{}", stdout(&o));
    drop(server); // the coarse dataset must not need the network
    let o = sb.repro(&["fetch", "--decode", "cifar100_coarse"]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("(20 classes)"), "{}", stdout(&o));
    let fine = npy_u32(&sb.path("cache/cifar100/decoded/train_labels.npy"));
    let coarse = npy_u32(&sb.path("cache/cifar100_coarse/decoded/train_labels.npy"));
    assert_eq!(&fine[..3], &[0, 1, 2]);
    assert_eq!(fine[150], 50);
    assert_eq!(coarse[150], 10);
    assert_eq!(npy_u32(&sb.path("cache/cifar100/decoded/test_labels.npy"))[0], 99);
}

/// Tiny-ImageNet-200 as the cs231n zip: unsorted wnids.txt, train/<wnid>/images/*.JPEG, val images
/// labelled by val_annotations.txt, some grayscale.
#[test]
fn tiny_imagenet_zip_from_a_loopback_mirror() {
    use std::io::Write;
    let sb = Sandbox::new();
    let served = sb.path("mirror/tiny_imagenet");
    std::fs::create_dir_all(&served).unwrap();
    let archive = served.join("tiny-imagenet-200.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&archive).unwrap());
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let wnids = ["n02000002", "n01000001", "n03000003"];
    zip.start_file("tiny-imagenet-200/wnids.txt", opts).unwrap();
    zip.write_all(wnids.join("\n").as_bytes()).unwrap();
    for (k, w) in wnids.iter().enumerate() {
        for i in 0..4u8 {
            zip.start_file(format!("tiny-imagenet-200/train/{w}/images/{w}_{i}.JPEG"), opts).unwrap();
            zip.write_all(&jpeg(64, 64, k as u8 * 3, i, i == 0)).unwrap();
        }
        zip.start_file(format!("tiny-imagenet-200/train/{w}/{w}_boxes.txt"), opts).unwrap();
        zip.write_all(b"x").unwrap();
    }
    let mut ann = String::new();
    for i in 0..6u8 {
        let w = wnids[(i % 3) as usize];
        zip.start_file(format!("tiny-imagenet-200/val/images/val_{i}.JPEG"), opts).unwrap();
        zip.write_all(&jpeg(64, 64, (i % 3) * 3, i, i == 5)).unwrap();
        ann.push_str(&format!("val_{i}.JPEG\t{w}\t0\t0\t10\t10\n"));
    }
    zip.start_file("tiny-imagenet-200/val/val_annotations.txt", opts).unwrap();
    zip.write_all(ann.as_bytes()).unwrap();
    zip.finish().unwrap();
    let lock = format!("version: 2\ndatasets:\n{}", entry_text("tiny_imagenet", "tiny_imagenet_zip", 3, 64, "", &[(&archive, &[])]));
    sb.write("datasets.lock", &lock);
    let server = FileServer::start(&sb.path("mirror"));
    let o = sb.repro_env(&["fetch", "--decode", "tiny_imagenet"], &[("REPRO_MIRROR", server.url.as_str())]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("decoded train 12x3x64x64, test 6x3x64x64"), "{}", stdout(&o));
    // Class index = sorted wnid: n01000001 → 0, n02000002 → 1, n03000003 → 2.
    assert_eq!(npy_u32(&sb.path("cache/tiny_imagenet/decoded/train_labels.npy")), [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]);
    assert_eq!(npy_u32(&sb.path("cache/tiny_imagenet/decoded/test_labels.npy")), [1, 0, 2, 1, 0, 2]);
}

/// STL-10 with its unlabeled split, pre-trained on with data.unlabeled.
#[test]
fn stl10_unlabeled_split_feeds_pretraining() {
    let sb = Sandbox::new();
    let served = sb.path("mirror/stl10");
    std::fs::create_dir_all(&served).unwrap();
    let planes = |n: usize, salt: u8| -> Vec<u8> { (0..n * 27648).map(|p| (p % 97) as u8 ^ salt).collect() };
    let labels = |n: usize| -> Vec<u8> { (0..n).map(|i| (i % 10) as u8 + 1).collect() };
    let archive = served.join("stl10_binary.tar.gz");
    tar_gz(
        &archive,
        &[
            ("stl10_binary/train_X.bin", planes(40, 1)),
            ("stl10_binary/train_y.bin", labels(40)),
            ("stl10_binary/test_X.bin", planes(20, 2)),
            ("stl10_binary/test_y.bin", labels(20)),
            ("stl10_binary/unlabeled_X.bin", planes(30, 3)),
        ],
    );
    archive_lock(&sb, "stl10", "stl10_bin", &archive, &[]);
    let server = FileServer::start(&sb.path("mirror"));
    let env = [("REPRO_MIRROR", server.url.as_str())];
    let o = sb.repro_env(&["fetch", "--decode", "stl10"], &env);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("unlabeled 30x3x96x96"), "{}", stdout(&o));
    let suite = tiny_suite(1)
        .replace("dataset: fashion_mnist", "dataset: stl10")
        .replace("data: {train_subset: 1024, monitor_holdout: 200, monitor_bank: 1000}", "data: {monitor_holdout: 10, monitor_bank: 20, unlabeled: true}")
        .replace("batch_size: 128, seed", "batch_size: 20, seed")
        .replace("train_subset: 10000}", "train_subset: 40}")
        .replace("knn: {k: 20", "knn: {k: 3")
        .replace("parity_images: 16", "parity_images: 4");
    sb.write("s.yaml", &suite);
    let o = sb.repro_env(&["run", "s.yaml", "--device", "cpu", "--target", "cim"], &env);
    assert_exit(&o, 0);
    let env_json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(sb.path("reports/tiny/cim/env.json")).unwrap()).unwrap();
    assert_eq!(env_json["train_images"], 30 + 30, "40 labelled − 10 held out + 30 unlabeled");
    // A dataset without an unlabeled split refuses the key before anything runs.
    sb.lock_with_sources("datasets.lock", "file:///nowhere");
    sb.write("f.yaml", &tiny_suite(1).replace("monitor_bank: 1000}", "monitor_bank: 1000, unlabeled: true}"));
    let o = sb.repro(&["validate", "f.yaml"]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("data.unlabeled: dataset fashion_mnist (format idx) has no unlabeled split"), "{}", stderr(&o));
}

/// ImageNet-100 from ILSVRC-2012 as distributed (manual data): the train tar of inner per-class
/// tars and the flat val tar labelled by the pinned table; then the same from extracted class
/// folders, which must give the very same arrays.
#[test]
fn imagenet_subset_from_archives_and_from_folders() {
    let sb = Sandbox::new();
    let subset = ["n01000003", "n01000001", "n01000002"]; // list order is not class order
    let all = ["n01000001", "n01000002", "n01000003", "n09999999"]; // the archive has an extra class
    let mut inner = Vec::new();
    for (k, w) in all.iter().enumerate() {
        let files: Vec<(String, Vec<u8>)> = (0..3u8).map(|i| (format!("{w}_{i}.JPEG"), jpeg(50 + 3 * i as u32, 40, k as u8 * 2, i, i == 1))).collect();
        let refs: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
        inner.push((format!("{w}.tar"), tar_bytes(&refs)));
    }
    let refs: Vec<(&str, Vec<u8>)> = inner.iter().rev().map(|(n, b)| (n.as_str(), b.clone())).collect();
    std::fs::create_dir_all(sb.path("dl")).unwrap();
    std::fs::write(sb.path("dl/ILSVRC2012_img_train.tar"), tar_bytes(&refs)).unwrap();
    // 8 val images; the table labels them (the extra class's images are not kept).
    let val_wnids = ["n01000002", "n09999999", "n01000001", "n01000003", "n01000001", "n01000002", "n01000003", "n09999999"];
    let val: Vec<(String, Vec<u8>)> = (1..=8u8).map(|i| (format!("ILSVRC2012_val_{i:08}.JPEG"), jpeg(41, 60, i, i, false))).collect();
    let refs: Vec<(&str, Vec<u8>)> = val.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    std::fs::write(sb.path("dl/ILSVRC2012_img_val.tar"), tar_bytes(&refs)).unwrap();
    std::fs::create_dir_all(sb.path("lists")).unwrap();
    let classes = subset.join("\n") + "\n";
    let table = val_wnids.join("\n") + "\n";
    sb.write("lists/subset.txt", &classes);
    sb.write("lists/val.txt", &table);
    let layout = format!(
        "{{train: train, test: val, shorter_side: 40, class_list: {{file: lists/subset.txt, sha256: {}}}, val_labels: {{file: lists/val.txt, sha256: {}}}}}",
        sha256_file(&sb.path("lists/subset.txt")),
        sha256_file(&sb.path("lists/val.txt"))
    );
    let (train_tar, val_tar) = (sb.path("dl/ILSVRC2012_img_train.tar"), sb.path("dl/ILSVRC2012_img_val.tar"));
    let lock = format!("version: 2\ndatasets:\n{}", entry_text("in_subset", "imagenet_subset", 3, 32, &layout, &[(&train_tar, &[]), (&val_tar, &[])]));
    sb.write("datasets.lock", &lock);

    // Manual data not in place: exit 2, the lock's instructions and the folder to put it in.
    let o = sb.repro(&["fetch", "in_subset"]);
    assert_exit(&o, 2);
    let e = stderr(&o);
    assert!(e.contains("cannot be downloaded") && e.contains("put the test files in place") && e.contains("cache/in_subset/"), "{e}");

    // Placed by hand (symlinks are fine): verified by hash, read without extraction.
    std::fs::create_dir_all(sb.path("cache/in_subset")).unwrap();
    std::os::unix::fs::symlink(&train_tar, sb.path("cache/in_subset/ILSVRC2012_img_train.tar")).unwrap();
    std::os::unix::fs::symlink(&val_tar, sb.path("cache/in_subset/ILSVRC2012_img_val.tar")).unwrap();
    let o = sb.repro(&["fetch", "--decode", "in_subset"]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("decoded train 9x3x32x32, test 6x3x32x32 (3 classes)"), "{}", stdout(&o));
    let d = sb.path("cache/in_subset/decoded");
    assert_eq!(npy_u32(&d.join("train_labels.npy")), [0, 0, 0, 1, 1, 1, 2, 2, 2]);
    assert_eq!(npy_u32(&d.join("test_labels.npy")), [0, 0, 1, 1, 2, 2]);
    let from_archives = (npy_u8_shape(&d.join("train_images.npy")), npy_u8_shape(&d.join("test_images.npy")));
    assert!(files_under(&sb.path("cache/in_subset")).iter().all(|f| !f.ends_with(".JPEG")), "nothing is extracted");

    // The same subset from extracted class folders (a full tree; only the subset is read).
    let tree = sb.path("imagenet");
    for (w, (_, bytes)) in all.iter().zip(&inner) {
        let dir = tree.join("train").join(w);
        std::fs::create_dir_all(&dir).unwrap();
        let mut t = tar::Archive::new(&bytes[..]);
        t.unpack(&dir).unwrap();
    }
    for ((name, bytes), w) in val.iter().zip(val_wnids) {
        let dir = tree.join("val").join(w);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    std::fs::remove_dir_all(sb.path("cache/in_subset")).unwrap();
    std::fs::create_dir_all(sb.path("cache/in_subset")).unwrap();
    std::os::unix::fs::symlink(tree.join("train"), sb.path("cache/in_subset/train")).unwrap();
    std::os::unix::fs::symlink(tree.join("val"), sb.path("cache/in_subset/val")).unwrap();
    let o = sb.repro(&["fetch", "--decode", "in_subset"]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("reads the class folders"), "{}", stdout(&o));
    let from_folders = (npy_u8_shape(&d.join("train_images.npy")), npy_u8_shape(&d.join("test_images.npy")));
    assert!(from_archives == from_folders, "archives and folders must decode to identical arrays");
    let o = sb.repro(&["verify", "in_subset"]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("class folders, 12 files"), "{}", stdout(&o));
}

/// A user's own ImageFolder data, pointed at by their own lock: no archive, absolute folders.
#[test]
fn own_image_folder_without_an_archive() {
    let sb = Sandbox::new();
    for (split, n) in [("train", 4u8), ("test", 2)] {
        for class in ["cats", "dogs"] {
            let dir = sb.path(&format!("mydata/{split}/{class}"));
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..n {
                std::fs::write(dir.join(format!("{i}.jpg")), jpeg(64, 64, class.len() as u8 * 9, i, false)).unwrap();
            }
        }
    }
    let layout = format!("{{train: {}, test: {}}}", sb.path("mydata/train").display(), sb.path("mydata/test").display());
    let lock = format!("version: 2\ndatasets:\n{}", entry_text("mine", "image_folder", 2, 64, &layout, &[]));
    sb.write("datasets.lock", &lock);
    let o = sb.repro(&["fetch", "--decode", "mine"]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("decoded train 8x3x64x64, test 4x3x64x64 (2 classes)"), "{}", stdout(&o));
    // The cache follows the folders: a new image is decoded on the next use.
    std::fs::write(sb.path("mydata/train/cats/9.jpg"), jpeg(64, 64, 1, 9, false)).unwrap();
    let o = sb.repro(&["fetch", "--decode", "mine"]);
    assert!(stdout(&o).contains("decoded train 9x3x64x64"), "{}", stdout(&o));
    // A missing folder is a clear error.
    std::fs::rename(sb.path("mydata/test"), sb.path("mydata/elsewhere")).unwrap();
    let o = sb.repro(&["fetch", "mine"]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("mydata/test") && stderr(&o).contains("layout.train/layout.test"), "{}", stderr(&o));
}

/// Corrupted, wrong-size and truncated archives, and a zip with a path-traversal entry: exit 2,
/// nothing half-done left in the cache, no records.
#[test]
fn bad_archives_exit_2_without_leftovers() {
    use std::io::Write;
    let sb = Sandbox::new();
    let served = sb.path("mirror/cifar10");
    std::fs::create_dir_all(&served).unwrap();
    let good = served.join("cifar-10-binary.tar.gz");
    let files: Vec<(String, Vec<u8>)> = (1..=5).map(|i| (format!("cifar-10-batches-bin/data_batch_{i}.bin"), batch(50, i))).chain([("cifar-10-batches-bin/test_batch.bin".to_owned(), batch(50, 9))]).collect();
    let refs: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    tar_gz(&good, &refs);
    let bytes = std::fs::read(&good).unwrap();
    archive_lock(&sb, "cifar10", "cifar10_bin", &good, &[]);
    let server = FileServer::start(&sb.path("mirror"));
    let env = [("REPRO_MIRROR", server.url.as_str())];

    // Corrupted: same size, one byte flipped.
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0xff;
    std::fs::write(&good, &flipped).unwrap();
    let o = sb.repro_env(&["fetch", "--decode", "cifar10"], &env);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("does not match the lock"), "{}", stderr(&o));
    assert!(files_under(&sb.path("cache")).is_empty(), "{:?}", files_under(&sb.path("cache")));

    // Wrong size: the server sends more bytes than the lock allows.
    let mut longer = bytes.clone();
    longer.extend_from_slice(b"trailing garbage");
    std::fs::write(&good, &longer).unwrap();
    let o = sb.repro_env(&["fetch", "cifar10"], &env);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains(&bytes.len().to_string()) && stderr(&o).contains("more than any copy the lock accepts"), "{}", stderr(&o));
    assert!(files_under(&sb.path("cache")).is_empty(), "{:?}", files_under(&sb.path("cache")));

    // Truncated: an archive cut short, pinned by its own hash, fails at extraction.
    std::fs::write(&good, &bytes[..bytes.len() * 2 / 3]).unwrap();
    archive_lock(&sb, "cifar10", "cifar10_bin", &good, &[]);
    let o = sb.repro_env(&["fetch", "--decode", "cifar10"], &env);
    assert_exit(&o, 2);
    assert_eq!(files_under(&sb.path("cache")), ["cifar10/cifar-10-binary.tar.gz"], "only the verified archive may remain");

    // Tiny-ImageNet zip with an entry climbing out of the destination.
    let served = sb.path("mirror/tiny_imagenet");
    std::fs::create_dir_all(&served).unwrap();
    let zpath = served.join("tiny-imagenet-200.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&zpath).unwrap());
    zip.start_file("tiny-imagenet-200/wnids.txt", zip::write::SimpleFileOptions::default()).unwrap();
    zip.write_all(b"n01000001\n").unwrap();
    zip.start_file("../../evil.txt", zip::write::SimpleFileOptions::default()).unwrap();
    zip.write_all(b"owned").unwrap();
    zip.finish().unwrap();
    let lock = format!("version: 2\ndatasets:\n{}", entry_text("tiny_imagenet", "tiny_imagenet_zip", 200, 64, "", &[(&zpath, &[])]));
    sb.write("datasets.lock", &lock);
    let o = sb.repro_env(&["fetch", "--decode", "tiny_imagenet"], &env);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("../../evil.txt") && stderr(&o).contains("outside"), "{}", stderr(&o));
    assert!(!sb.path("evil.txt").exists() && !sb.path("cache/evil.txt").exists());
    let left: Vec<String> = files_under(&sb.path("cache/tiny_imagenet"));
    assert_eq!(left, ["tiny-imagenet-200.zip"], "no partial extraction");
    assert!(!sb.path("reports").exists());
}
