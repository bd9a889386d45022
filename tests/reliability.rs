//! Failure isolation and durability of `repro run`, on the real binary and real Fashion-MNIST: a run
//! that segfaults, aborts, panics, diverges or exhausts memory fails alone with a clear record while
//! the others finish; the results folder's lock; panics outside a run; and `repro run` killed with
//! SIGKILL at 20 random moments, each rerun finishing with the uninterrupted run's metrics.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

fn need_data() {
    if !Path::new(DEBIAN_DIR).join("train-images-idx3-ubyte.gz").exists() {
        panic!("this test needs Debian's dataset-fashion-mnist (scripts/setup installs it)");
    }
}

/// A short suite: ResNet-18 width 2 on 1024 images, a small evaluation; `extra` appends targets.
fn suite(epochs: usize, extra: &str) -> String {
    format!(
        "suite: rel\nversion: 1\ndefaults:\n  dataset: fashion_mnist\n  backbone: {{arch: resnet18, width: 2, zero_init_residual: false, stem: cifar}}\n  data: {{train_subset: 1024, monitor_holdout: 200, monitor_bank: 1000}}\n  augment: {{crop_scale: [0.3, 1.0], crop_ratio: [0.75, 1.3333], hflip: 0.5, interpolation: bilinear}}\n  train: {{epochs: {epochs}, batch_size: 128, seeds: [0], lr: 0.1, optimizer: {{name: sgd, momentum: 0.9}}, schedule: {{name: warmup_cosine}}, weight_decay: 1.0e-4, warmup_epochs: 0.5, min_lr: 0.0}}\n  eval:\n    batch_size: 1000\n    knn: {{k: 20, temperature: 0.07, distance: cosine, bank_subset: 10000}}\n    linear: {{epochs: 2, batch_size: 256, lr: 0.5, schedule: cosine_per_step, min_lr: 0.0, momentum: 0.9, weight_decay: 0.0, standardize: true, train_subset: 2000}}\n  export: {{parity_tolerance: 1.0e-4, parity_images: 16}}\ntargets:\n  - id: cim\n    method: corinfomax\n    method_params: {{projector: [32, 16], alpha: 250, la_r: 0.01, la_mu: 0.01, r_ini: 1.0, eps: 1.0e-8, normalize: true}}\n  - id: floor\n    method: random_init\n{extra}"
    )
}

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

const SIMCLR: &str = "{projector: [32, 16], temperature: 0.5}";

#[test]
fn crashes_divergence_and_out_of_memory_fail_alone() {
    need_data();
    let sb = Sandbox::new();
    sb.lock_with_sources("datasets.lock", &format!("file://{DEBIAN_DIR}"));
    let extra = format!(
        "  - id: segv\n    method: random_init\n  - id: segv_late\n    method: random_init\n  - id: abrt\n    method: random_init\n  - id: pan\n    method: random_init\n\
         \x20 - id: nan\n    method: simclr\n    method_params: {SIMCLR}\n    train: {{lr: 1.0e+12, warmup_epochs: 0.0}}\n\
         \x20 - id: nan_restart\n    method: simclr\n    method_params: {SIMCLR}\n    train: {{lr: 1.0e+12, warmup_epochs: 0.0, on_divergence: {{action: restart, lr_factor: 1.0e-13, max_restarts: 1}}}}\n\
         \x20 - id: oom\n    method: corinfomax\n    method_params: {{projector: [32, 16], alpha: 250, la_r: 0.01, la_mu: 0.01, r_ini: 1.0, eps: 1.0e-8, normalize: true}}\n    backbone: {{width: 16}}\n    data: {{train_subset: 8192}}\n    train: {{batch_size: 8192}}\n"
    );
    sb.write("s.yaml", &suite(1, &extra));
    // A real out-of-memory: the whole command gets 6 GB of address space, which the small runs fit
    // in and a batch of 8192 at width 16 does not.
    let cmd = format!("ulimit -v 6000000 && exec {} run s.yaml --device cpu --out out", env!("CARGO_BIN_EXE_repro"));
    let o = std::process::Command::new("bash")
        .args(["-c", &cmd])
        .current_dir(sb.dir.path())
        .env("REPRO_DATA_DIR", sb.path("cache"))
        .env_remove("REPRO_MIRROR")
        .env("REPRO_TEST_FAULT", "segv:segfault,segv_late:segfault_at_exit,abrt:abort,pan:panic,nan:segfault_at_exit")
        .output()
        .unwrap();
    assert_exit(&o, 1);
    let err = stderr(&o);
    let run = |id: &str| sb.path(&format!("out/rel/{id}"));
    // segv_late's process dies after recording its metrics: its run stands.
    for id in ["cim", "floor", "nan_restart", "segv_late"] {
        assert!(run(id).join("metrics.json").exists(), "{id} must finish beside the failing runs:\n{err}");
        assert!(!run(id).join("failure.json").exists());
    }
    assert!(err.contains("segv_late: its process ended (killed by signal 11 (SIGSEGV)) after recording its metrics; the run stands"), "{err}");
    let failure = |id: &str| {
        assert!(!run(id).join("metrics.json").exists(), "{id} must not look finished");
        read_json(&run(id).join("failure.json"))
    };
    let f = failure("segv");
    assert_eq!(f["kind"], "crashed", "{f}");
    assert_eq!(f["exit"], "killed by signal 11 (SIGSEGV)", "{f}");
    assert!(f["log_tail"].as_array().is_some_and(|t| t.iter().any(|l| l.as_str().is_some_and(|l| l.contains("segfault in segv")))), "{f}");
    let f = failure("abrt");
    assert_eq!((f["kind"].as_str(), f["exit"].as_str()), (Some("crashed"), Some("killed by signal 6 (SIGABRT)")), "{f}");
    let f = failure("pan");
    assert_eq!(f["kind"], "error", "{f}");
    assert!(f["error"].as_str().is_some_and(|e| e.contains("REPRO_TEST_FAULT asked for a panic in pan") && e.contains("src/failure.rs:")), "message and location: {f}");
    // nan's process recorded its verdict, then died: the verdict stands, with how it died.
    let f = failure("nan");
    assert_eq!((f["kind"].as_str(), f["exit"].as_str()), (Some("diverged"), Some("killed by signal 11 (SIGSEGV)")), "{f}");
    let d = &f["divergence"];
    assert_eq!((d["epoch"].as_u64(), d["what"].as_str(), d["loss"].as_str()), (Some(1), Some("loss"), Some("NaN")), "{f}");
    assert!(d["step_in_epoch"].as_u64().is_some_and(|s| (1..=8).contains(&s)) && d["terms"].is_object(), "{f}");
    assert!(f["error"].as_str().is_some_and(|e| e.contains("lower train.lr") && e.contains("on_divergence")), "{f}");
    let f = failure("oom");
    assert_eq!(f["kind"], "out_of_memory", "{f}");
    let e = f["error"].as_str().unwrap_or_default();
    assert!(e.contains("train.batch_size 8192") && e.contains("--set targets.oom.train.batch_size=4096") && !e.contains("frame #"), "{e}");
    // The restarted run records its restart; it finished at a lower rate than configured.
    let env = read_json(&run("nan_restart").join("env.json"));
    let r = &env["divergence_restarts"];
    assert_eq!((r.as_array().map(Vec::len), r[0]["from_epoch"].as_u64(), r[0]["lr_scale"].as_f64()), (Some(1), Some(0), Some(1.0e-13)), "{env}");
    // The table shows each state.
    let table = stdout(&o);
    for word in ["crashed (seed 0)", "diverged (seed 0)", "out of memory (seed 0)", "failed (seed 0)"] {
        assert!(table.contains(word), "{word}:\n{table}");
    }
    // The gate never passes a diverged run.
    let g = sb.repro(&["gate", "out/rel"]);
    assert_exit(&g, 1);
    assert!(stdout(&g).contains("nan: diverged:"), "{}", stdout(&g));

    // Rerun: the divergence is a verdict (not trained again), the crashed runs run again.
    let o = sb.repro(&["run", "s.yaml", "--device", "cpu", "--out", "out", "--target", "nan", "--target", "segv"]);
    assert_exit(&o, 1);
    let err = stderr(&o);
    assert!(err.contains("nan: diverged at epoch 1") && err.contains("recorded earlier"), "{err}");
    assert!(!err.contains("nan: simclr on"), "a diverged run must not train again:\n{err}");
    assert!(run("segv").join("metrics.json").exists(), "without the fault the crashed run finishes:\n{err}");
}

#[test]
fn a_results_folder_has_one_runner_and_panics_exit_with_their_place() {
    need_data();
    let sb = Sandbox::new();
    sb.lock_with_sources("datasets.lock", &format!("file://{DEBIAN_DIR}"));
    sb.write("s.yaml", &suite(1, ""));
    // Another process holds the lock (this one, through its own open file description).
    std::fs::create_dir_all(sb.path("out/rel")).unwrap();
    let lock = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(sb.path("out/rel/.lock")).unwrap();
    lock.try_lock().unwrap();
    std::fs::write(sb.path("out/rel/.lock"), "repro run other.yaml (pid 4242 on node7, since unix:0)\n").unwrap();
    let o = sb.repro(&["run", "s.yaml", "--device", "cpu", "--out", "out", "--target", "floor"]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("out/rel is in use by repro run other.yaml (pid 4242 on node7"), "{}", stderr(&o));
    assert!(!sb.path("out/rel/floor").exists(), "nothing may run without the lock");
    // The holder is killed: the kernel drops its lock, its name stays in the file; the next run takes over.
    drop(lock);
    let o = sb.repro(&["run", "s.yaml", "--device", "cpu", "--out", "out", "--target", "floor"]);
    assert_exit(&o, 0);
    assert!(stderr(&o).contains("took over the lock of repro run other.yaml (pid 4242"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(sb.path("out/rel/.lock")).unwrap(), "", "a holder that ends normally leaves no name");

    // A panic outside any run: message and location, exit 2 (not 101).
    let o = sb.repro_env(&["validate", "s.yaml"], &[("REPRO_TEST_FAULT", "@main:panic"), ("RUST_BACKTRACE", "0")]);
    assert_exit(&o, 2);
    let err = stderr(&o);
    assert!(err.contains("panic at src/failure.rs:") && err.contains("asked for a panic in @main") && err.contains("internal error"), "{err}");
}

/// Metrics that must equal between an uninterrupted and a killed-and-resumed run: all but speed.
fn comparable(metrics: &serde_json::Value) -> Vec<(String, f64)> {
    let m = metrics["metrics"].as_object().cloned().unwrap_or_default();
    m.into_iter().filter(|(_, v)| v["kind"] != "speed").map(|(k, v)| (k, v["value"].as_f64().unwrap_or(f64::NAN))).collect()
}

/// What a killed run may leave: never a record that looks finished without being complete, never
/// an unreadable record.
fn assert_no_partial_record(dir: &Path, when: &str) {
    for id in ["cim", "floor"] {
        let d = dir.join(id);
        if !d.exists() {
            continue;
        }
        for f in files_under(&d) {
            let p = d.join(&f);
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            if name.starts_with('.') {
                continue; // a temp file: never read as a record
            }
            if name.ends_with(".json") {
                let _ = read_json(&p);
            }
            if name == "train_log.jsonl" {
                for l in std::fs::read_to_string(&p).unwrap().lines() {
                    serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{when}: {}: {e}: {l:?}", p.display()));
                }
            }
        }
        if d.join("metrics.json").exists() {
            for f in ["config.json", "env.json", "encoder.onnx"] {
                assert!(d.join(f).exists(), "{when}: {id} has metrics.json without {f}");
            }
        }
        if d.join("checkpoint.json").exists() {
            assert!(d.join("checkpoint.safetensors").exists(), "{when}: {id}'s checkpoint.json names no tensors");
        }
    }
}

/// The children of a killed `repro run` whose command line names `out` (they must die with it).
fn children_writing_to(out: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains("--child") && cmd.contains(&*out.to_string_lossy()) {
            pids.push(pid);
        }
    }
    pids
}

#[test]
fn killed_at_twenty_random_moments_each_rerun_matches_the_uninterrupted_run() {
    need_data();
    let sb = Sandbox::new();
    sb.lock_with_sources("datasets.lock", &format!("file://{DEBIAN_DIR}"));
    sb.write("s.yaml", &suite(2, ""));
    let args = |out: &Path| vec!["run".to_owned(), "s.yaml".into(), "--device".into(), "cpu".into(), "--out".into(), out.display().to_string()];
    let straight = sb.path("straight");
    let started = Instant::now();
    let o = sb.repro(&args(&straight).iter().map(String::as_str).collect::<Vec<_>>());
    assert_exit(&o, 0);
    let total = started.elapsed();
    let want: Vec<_> = ["cim", "floor"].iter().map(|id| comparable(&read_json(&straight.join(format!("rel/{id}/metrics.json"))))).collect();

    // Stratified moments over the uninterrupted run's length: one in each twentieth, at a random
    // place within it (the seed is printed so that a failure can be replayed).
    let seed = std::env::var("REPRO_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64));
    eprintln!("kill test: uninterrupted run {:.1}s; REPRO_KILL_SEED={seed}", total.as_secs_f64());
    let mut state = seed | 1;
    let mut uniform = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    for i in 0..20 {
        let at = total.mul_f64((i as f64 + uniform()) / 20.0);
        let out = sb.path(&format!("killed{i}"));
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_repro"))
            .current_dir(sb.dir.path())
            .env("REPRO_DATA_DIR", sb.path("cache"))
            .args(args(&out))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(at);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let when = format!("killed at {:.2}s (point {i})", at.as_secs_f64());
        let waited = Instant::now();
        while !children_writing_to(&out).is_empty() && waited.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(children_writing_to(&out).is_empty(), "{when}: the run's child process outlived its parent");
        assert_no_partial_record(&out.join("rel"), &when);

        let o = sb.repro(&args(&out).iter().map(String::as_str).collect::<Vec<_>>());
        assert_exit(&o, 0);
        for (id, want) in ["cim", "floor"].iter().zip(&want) {
            let dir = out.join(format!("rel/{id}"));
            assert_eq!(&comparable(&read_json(&dir.join("metrics.json"))), want, "{when}: {id} after the rerun:\n{}", stderr(&o));
        }
        // No temp file anywhere: the runs' folders, the tables, the plots.
        let suite_dir = out.join("rel");
        assert!(!files_under(&suite_dir).iter().any(|f| f.contains(".tmp")), "{when}: temp files left in {}: {:?}", suite_dir.display(), files_under(&suite_dir));
        assert!(suite_dir.join("results.md").exists());
    }
}
