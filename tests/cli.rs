//! End-to-end tests of the `repro` binary: the whole path on real Fashion-MNIST (train → export →
//! ONNX Runtime eval → records → table), resume and skip, and the exit-2 contract for bad suites,
//! wrong hashes and missing data (no partial files, no finished-looking records).

mod common;

use common::*;

fn debian_available() -> bool {
    let ok = std::path::Path::new(DEBIAN_DIR).join(MEMBERS[0].0).exists();
    if !ok {
        eprintln!("Debian's dataset-fashion-mnist is not installed; run scripts/setup");
    }
    ok
}

#[test]
fn malformed_suite_exits_2_with_line() {
    let sb = Sandbox::new();
    sb.lock_with_sources("datasets.lock", &format!("file://{DEBIAN_DIR}"));
    sb.write("bad.yaml", "version: 1\ntargets:\n  - id: a\n    train: {epochs: 2\n");
    let o = sb.repro(&["validate", "bad.yaml"]);
    assert_exit(&o, 2);
    let e = stderr(&o);
    assert!(e.contains("bad.yaml") && e.contains("line"), "{e}");
}

#[test]
fn unknown_key_exits_2_naming_file_line_and_path() {
    let sb = Sandbox::new();
    sb.lock_with_sources("datasets.lock", &format!("file://{DEBIAN_DIR}"));
    sb.write("s.yaml", &tiny_suite(1).replace("hflip: 0.5", "hflip: 0.5, hlfip: 1"));
    let o = sb.repro(&["run", "s.yaml"]);
    assert_exit(&o, 2);
    let e = stderr(&o);
    assert!(e.contains("s.yaml") && e.contains("line 7") && e.contains("defaults.augment") && e.contains("hlfip"), "{e}");
    assert!(!sb.path("reports").exists(), "a config error must not create records");
}

#[test]
fn invalid_values_are_all_listed() {
    let sb = Sandbox::new();
    sb.lock_with_sources("datasets.lock", &format!("file://{DEBIAN_DIR}"));
    sb.write("s.yaml", &tiny_suite(1).replace("lr: 0.1, optimizer: {name: sgd, momentum: 0.9}", "lr: -1, optimizer: {name: lars, momentum: 0.9}").replace("k: 20", "k: 0"));
    let o = sb.repro(&["validate", "s.yaml"]);
    assert_exit(&o, 2);
    let e = stderr(&o);
    assert!(e.contains("(cim).train.lr: expected a positive number, found -1"), "{e}");
    assert!(e.contains("(floor).eval.knn.k: expected at least 1, found 0"), "{e}");
    assert!(e.contains("(cim).train.optimizer: missing field `eta`"), "{e}");
}

#[test]
fn unknown_dataset_exits_2() {
    let sb = Sandbox::new();
    sb.lock_with_sources("datasets.lock", &format!("file://{DEBIAN_DIR}"));
    sb.write("s.yaml", &tiny_suite(1).replace("dataset: fashion_mnist", "dataset: fashion_mnits"));
    let o = sb.repro(&["validate", "s.yaml"]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("fashion_mnits"), "{}", stderr(&o));
}

#[test]
fn wrong_hash_exits_2_and_leaves_nothing() {
    let sb = Sandbox::new();
    let lock = fashion_lock(&format!("file://{DEBIAN_DIR}")).replace(MEMBERS[1].2, &"0".repeat(64));
    sb.write("datasets.lock", &lock);
    sb.write("s.yaml", &tiny_suite(1));
    let o = sb.repro(&["run", "s.yaml"]);
    assert_exit(&o, 2);
    let e = stderr(&o);
    assert!(e.contains("train-labels-idx1-ubyte.gz"), "{e}");
    let cached = files_under(&sb.path("cache"));
    assert!(!cached.iter().any(|f| f.contains("train-labels")), "a file that failed verification stayed in the cache: {cached:?}");
    assert!(!sb.path("reports").exists());
}

#[test]
fn missing_dataset_exits_2_and_says_what_to_do() {
    let sb = Sandbox::new();
    sb.lock_with_sources("datasets.lock", &format!("file://{}", sb.path("nowhere").display()));
    sb.write("s.yaml", &tiny_suite(1));
    let o = sb.repro(&["run", "s.yaml"]);
    assert_exit(&o, 2);
    let e = stderr(&o);
    assert!(e.contains("dataset-fashion-mnist") || e.contains("REPRO_MIRROR"), "{e}");
    assert!(!sb.path("reports").exists());
}

#[test]
fn whole_path_on_real_data_then_skip_and_report() {
    if !debian_available() {
        panic!("this test needs Debian's dataset-fashion-mnist (scripts/setup installs it)");
    }
    let sb = Sandbox::new();
    sb.lock_with_sources("datasets.lock", &format!("file://{DEBIAN_DIR}"));
    sb.write("s.yaml", &tiny_suite(1));
    let o = sb.repro(&["run", "s.yaml", "--device", "cpu"]);
    assert_exit(&o, 0);
    let out = stdout(&o);
    assert!(out.contains("cim") && out.contains("floor") && out.contains("k-NN top-1"), "{out}");
    let dir = sb.path("reports/tiny/cim");
    for f in ["config.json", "metrics.json", "env.json", "train_log.jsonl", "encoder.onnx", "checkpoint.safetensors"] {
        assert!(dir.join(f).exists(), "missing {f}");
    }
    let metrics: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap();
    let knn = metrics["metrics"]["knn_top1@k20_t0.07_cosine"]["value"].as_f64().unwrap();
    let lin = metrics["metrics"]["linear_top1@e5_lr0.5"]["value"].as_f64().unwrap();
    // Real features on real data: far above the 10% of chance even after one tiny epoch.
    assert!(knn > 40.0 && knn <= 100.0, "k-NN {knn}");
    assert!(lin > 40.0 && lin <= 100.0, "linear {lin}");
    assert!(metrics["metrics"]["onnx_parity_rel_diff"]["value"].as_f64().unwrap() <= 1e-4);
    let log = std::fs::read_to_string(dir.join("train_log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 1);
    assert!(log.contains("monitor_knn_top1") && log.contains("images_per_s"), "{log}");
    assert!(sb.path("reports/tiny/results.md").exists() && sb.path("reports/tiny/results.csv").exists());

    // Rerunning the same command skips finished targets.
    let o = sb.repro(&["run", "s.yaml", "--device", "cpu"]);
    assert_exit(&o, 0);
    assert!(stderr(&o).contains("skipping"), "{}", stderr(&o));

    // report and gate work from the stored JSON alone.
    let o = sb.repro(&["report", "reports/tiny", "--format", "csv"]);
    assert_exit(&o, 0);
    assert_eq!(stdout(&o).lines().filter(|l| !l.is_empty()).count(), 3, "{}", stdout(&o));
    let o = sb.repro(&["gate", "reports/tiny"]);
    assert_exit(&o, 0);

    // `repro eval` on the exported file, with embeddings saved as .npy.
    let o = sb.repro(&["eval", "reports/tiny/cim/encoder.onnx", "--dataset", "fashion_mnist", "--save-embeddings", "emb", "--json", "--linear-epochs", "1"]);
    assert_exit(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let again = v["metrics"]["knn_top1@k20_t0.07_cosine"].as_f64().unwrap();
    assert!((again - knn).abs() < 1e-9, "eval of the same file and protocol must agree: {again} vs {knn}");
    for f in ["train_embeddings.npy", "train_labels.npy", "test_embeddings.npy", "test_labels.npy"] {
        assert!(sb.path("emb").join(f).exists(), "missing {f}");
    }

    // `repro export` rebuilds the encoder from the checkpoint; same bytes as the run wrote.
    let o = sb.repro(&["export", "reports/tiny/cim/checkpoint.safetensors", "--out", "again.onnx"]);
    assert_exit(&o, 0);
    assert_eq!(std::fs::read(sb.path("again.onnx")).unwrap(), std::fs::read(dir.join("encoder.onnx")).unwrap());
}

#[test]
fn killed_run_resumes_from_its_checkpoint() {
    if !debian_available() {
        panic!("this test needs Debian's dataset-fashion-mnist (scripts/setup installs it)");
    }
    let sb = Sandbox::new();
    sb.lock_with_sources("datasets.lock", &format!("file://{DEBIAN_DIR}"));
    sb.write("s.yaml", &tiny_suite(4));
    let args = |out: &str| vec!["run", "s.yaml", "--device", "cpu", "--target", "cim", "--out", out].into_iter().map(String::from).collect::<Vec<_>>();
    let o = sb.repro(&args("straight").iter().map(String::as_str).collect::<Vec<_>>());
    assert_exit(&o, 0);

    // Kill -9 the same run as soon as its first checkpoint exists.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_repro"))
        .current_dir(sb.dir.path())
        .env("REPRO_DATA_DIR", sb.path("cache"))
        .args(args("killed"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let progress = sb.path("killed/tiny/cim/checkpoint.json");
    let started = std::time::Instant::now();
    while !progress.exists() && started.elapsed().as_secs() < 300 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let dir = sb.path("killed/tiny/cim");
    assert!(!dir.join("metrics.json").exists(), "killed mid-training, the record must not look finished");
    assert!(!files_under(&dir).iter().any(|f| f.contains(".tmp")), "no temp files may remain visible as results");

    let o = sb.repro(&args("killed").iter().map(String::as_str).collect::<Vec<_>>());
    assert_exit(&o, 0);
    assert!(stderr(&o).contains("resuming cim from epoch"), "{}", stderr(&o));
    let log = std::fs::read_to_string(dir.join("train_log.jsonl")).unwrap();
    let epochs: Vec<u64> = log.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["epoch"].as_u64().unwrap()).collect();
    assert_eq!(epochs, vec![1, 2, 3, 4]);
    let read = |p: &str| -> serde_json::Value { serde_json::from_str(&std::fs::read_to_string(sb.path(p)).unwrap()).unwrap() };
    let a = read("straight/tiny/cim/metrics.json");
    let b = read("killed/tiny/cim/metrics.json");
    let name = "knn_top1@k20_t0.07_cosine";
    assert_eq!(a["metrics"][name], b["metrics"][name], "a resumed run must reproduce the uninterrupted one");
}

#[test]
fn loss_command_prints_json_terms() {
    let sb = Sandbox::new();
    // float64 .npy files written by hand: header + little-endian data.
    let npy_n = |name: &str, cols: usize, values: &[f64]| {
        let header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': ({}, {cols}), }}", values.len() / cols);
        let mut h = header.into_bytes();
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(b' ');
        }
        h.push(b'\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend((h.len() as u16).to_le_bytes());
        bytes.extend(h);
        for v in values {
            bytes.extend(v.to_le_bytes());
        }
        std::fs::write(sb.path(name), bytes).unwrap();
    };
    let npy = |name: &str, rows: &[[f64; 3]]| npy_n(name, 3, &rows.concat());
    npy("a.npy", &[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.6, 0.8, 0.0]]);
    npy("b.npy", &[[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.8, 0.6, 0.0]]);
    let o = sb.repro(&["loss", "corinfomax", "--z1", "a.npy", "--z2", "b.npy", "--set", "alpha=10", "--json"]);
    assert_exit(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let inv = v["terms"]["invariance"].as_f64().unwrap();
    // mean squared difference over 4×3 elements: (1+1+0+1+1+0+0+0+0+0.04+0.04+0)/12
    assert!((inv - 4.08 / 12.0).abs() < 1e-6, "{v}");
    let total = v["loss"].as_f64().unwrap();
    assert!((total - (10.0 * inv + v["terms"]["covariance"].as_f64().unwrap())).abs() < 1e-5, "{v}");

    let o = sb.repro(&["loss", "corinfomax", "--z1", "a.npy", "--z2", "a.npy", "--set", "alpah=1", "--json"]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("alpah"), "{}", stderr(&o));

    // Every method: a finite loss and its named terms; the parameters used are printed.
    for (method, terms) in [
        ("simclr", &["infonce"][..]),
        ("barlow_twins", &["on_diagonal", "off_diagonal"][..]),
        ("vicreg", &["invariance", "variance", "covariance"][..]),
        ("byol", &["regression"][..]),
        ("emi", &["mutual_information", "logdet_z1", "logdet_z2", "logdet_joint"][..]),
        ("er", &["reconstruction", "entropy"][..]),
    ] {
        let o = sb.repro(&["loss", method, "--z1", "a.npy", "--z2", "b.npy", "--json"]);
        assert_exit(&o, 0);
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert!(v["loss"].as_f64().unwrap().is_finite(), "{method}: {v}");
        for t in terms {
            assert!(v["terms"][t].as_f64().is_some(), "{method} lacks term {t}: {v}");
        }
    }
    let o = sb.repro(&["loss", "simclr", "--z1", "a.npy", "--z2", "b.npy", "--set", "temperature=0.1", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["params"]["temperature"], 0.1);
    // A batch of one, mismatched shapes and unknown methods: exit 2, saying what and where.
    npy("one.npy", &[[1.0, 0.0, 0.0]]);
    let o = sb.repro(&["loss", "vicreg", "--z1", "one.npy", "--z2", "one.npy", "--json"]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("vicreg: batch size must be at least 2; got N = 1") && stderr(&o).contains("one.npy"), "{}", stderr(&o));
    let o = sb.repro(&["loss", "barlow_twins", "--z1", "a.npy", "--z2", "one.npy", "--json"]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("same shape"), "{}", stderr(&o));
    let o = sb.repro(&["loss", "simclrr", "--z1", "a.npy", "--z2", "b.npy", "--json"]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("available: amdim, barlow_twins, byol, corinfomax, emi, er, simclr, vicreg"), "{}", stderr(&o));
    // ER on probabilities (discrete support) and its refusal of rows that are not.
    npy("p1.npy", &[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.2, 0.3, 0.5], [0.6, 0.4, 0.0]]);
    npy("p2.npy", &[[0.5, 0.5, 0.0], [0.0, 0.9, 0.1], [0.2, 0.3, 0.5], [0.3, 0.3, 0.4]]);
    let o = sb.repro(&["loss", "er", "--z1", "p1.npy", "--z2", "p2.npy", "--set", "support=discrete", "--set", "reduction=average", "--json"]);
    assert_exit(&o, 0);
    let o = sb.repro(&["loss", "er", "--z1", "a.npy", "--z2", "b.npy", "--set", "support=discrete", "--json"]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("probability rows") && stderr(&o).contains("a.npy"), "{}", stderr(&o));
    // AMDIM: rows are [r1 | r5 | r7] of one image (75·D columns); the seed fixes the 5x5 sources.
    let d = 2;
    let values: Vec<f64> = (0..4 * 75 * d).map(|i| (i as f64 * 0.37).sin()).collect();
    npy_n("m1.npy", 75 * d, &values);
    npy_n("m2.npy", 75 * d, &values.iter().map(|v| v * 0.5 + 0.1).collect::<Vec<_>>());
    let run = |seed: &str| {
        let o = sb.repro(&["loss", "amdim", "--z1", "m1.npy", "--z2", "m2.npy", "--set", seed, "--json"]);
        assert_exit(&o, 0);
        serde_json::from_str::<serde_json::Value>(&stdout(&o)).unwrap()
    };
    let (a, b) = (run("seed=0"), run("seed=0"));
    assert_eq!(a["loss"], b["loss"]);
    for t in ["nce_1t5", "nce_1t7", "nce_5t5", "score_reg"] {
        assert!(a["terms"][t].as_f64().unwrap().is_finite(), "{a}");
    }
    let o = sb.repro(&["loss", "amdim", "--z1", "a.npy", "--z2", "b.npy", "--json"]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("75·D columns"), "{}", stderr(&o));
}

#[test]
fn every_shipped_suite_validates_against_the_shipped_lock() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut suites: Vec<String> = std::fs::read_dir(root.join("suites"))
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.ends_with(".yaml"))
        .collect();
    suites.sort();
    assert!(!suites.is_empty());
    let lock = root.join("datasets.lock").display().to_string();
    let mut args = vec!["--lock", lock.as_str(), "validate"];
    args.extend(suites.iter().map(String::as_str));
    let sb = Sandbox::new();
    let o = sb.repro(&args);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("quickstart.yaml: ok (2 targets: corinfomax, random_init)"), "{}", stdout(&o));
}

/// `repro verify` lists every entry of the shipped lock (nothing fetched: every file missing, exit 0);
/// `repro fetch` of manual data (ImageNet-100) exits 2 saying where to put the files and how to get them.
#[test]
fn fetch_and_verify_handle_every_shipped_entry() {
    let sb = Sandbox::new();
    let lock = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets.lock");
    let lock = lock.to_str().unwrap();
    let o = sb.repro(&["verify", "--lock", lock]);
    assert_exit(&o, 0);
    let out = stdout(&o);
    for ds in ["fashion_mnist", "cifar10", "cifar100", "cifar100_coarse", "stl10", "tiny_imagenet", "imagenette_160", "imagenette_320", "imagenette", "imagewoof_160", "imagewoof_320", "imagewoof", "imagenet100"] {
        assert!(out.contains(&format!("{ds}: ")), "verify does not list {ds}:\n{out}");
    }
    let o = sb.repro(&["fetch", "--lock", lock, "imagenet100"]);
    assert_exit(&o, 2);
    let e = stderr(&o);
    assert!(e.contains("ILSVRC2012_img_train.tar cannot be downloaded") && e.contains("image-net.org") && e.contains("cache/imagenet100/"), "{e}");
}

/// The shipped smoke suite: every method trains one short epoch from the suite, is exported (parity
/// checked) and evaluated through ONNX Runtime, on real Fashion-MNIST.
#[test]
fn every_method_trains_from_a_suite() {
    if !debian_available() {
        panic!("this test needs Debian's dataset-fashion-mnist (scripts/setup installs it)");
    }
    let sb = Sandbox::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let lock = root.join("datasets.lock").display().to_string();
    let suite = root.join("suites/smoke.yaml").display().to_string();
    let o = sb.repro(&["--lock", &lock, "run", &suite, "--device", "cpu"]);
    assert_exit(&o, 0);
    for id in ["corinfomax", "simclr", "barlow_twins", "vicreg", "byol", "emi", "amdim", "er_simclr", "er_byol", "er_dino", "random_init"] {
        let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(sb.path(&format!("reports/smoke/{id}/metrics.json"))).unwrap()).unwrap();
        let knn = m["metrics"]["knn_top1@k20_t0.07_cosine"]["value"].as_f64().unwrap();
        assert!(knn > 30.0 && knn <= 100.0, "{id}: k-NN {knn}");
        if id != "random_init" {
            let log = std::fs::read_to_string(sb.path(&format!("reports/smoke/{id}/train_log.jsonl"))).unwrap();
            assert!(log.contains("\"loss\""), "{id}: {log}");
        }
    }
    // BYOL's EMA target is checkpointed with the online model (safetensors' header names the tensors).
    let ckpt = std::fs::read(sb.path("reports/smoke/byol/checkpoint.safetensors")).unwrap();
    let has = |key: &str| ckpt.windows(key.len()).any(|w| w == key.as_bytes());
    assert!(has("byol.target.conv1.weight") && has("byol.target.method.projector.0.weight") && has("model.method.predictor.0.weight"));
    // AMDIM logs its three NCE terms; ER its two terms.
    let log = std::fs::read_to_string(sb.path("reports/smoke/amdim/train_log.jsonl")).unwrap();
    assert!(["nce_1t5", "nce_1t7", "nce_5t5", "score_reg"].iter().all(|t| log.contains(t)), "{log}");
    let log = std::fs::read_to_string(sb.path("reports/smoke/er_dino/train_log.jsonl")).unwrap();
    assert!(log.contains("\"reconstruction\"") && log.contains("\"entropy\""), "{log}");
}
