//! `repro run --executor slurm` against a real Slurm: a single-node cluster on loopback (munged,
//! slurmctld, slurmd from Debian's packages), started and stopped by `scripts/slurm-cluster` by
//! process id. A suite of three targets, two of them at two seeds, runs as a job array; its records
//! and table equal a local run's; `repro status` shows each state; a task told its time limit is
//! near requeues itself and resumes from its checkpoint; a task whose run is killed resumes when
//! the same command submits it again.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// The cluster, stopped when the test ends however it ends.
struct Cluster {
    dir: PathBuf,
    conf: PathBuf,
}

impl Cluster {
    fn start(dir: PathBuf) -> Self {
        let o = Command::new("bash").arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/slurm-cluster")).arg("start").arg(&dir).output().expect("run scripts/slurm-cluster");
        assert!(o.status.success(), "scripts/slurm-cluster start failed:\n{}\n{}", stdout(&o), stderr(&o));
        Self { conf: dir.join("slurm.conf"), dir }
    }

    /// A Slurm client command against this cluster.
    fn cmd(&self, program: &str, args: &[&str]) -> String {
        let o = Command::new(program).args(args).env("SLURM_CONF", &self.conf).output().unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(o.status.success(), "{program} {args:?}: {}", stderr(&o));
        stdout(&o)
    }

    /// Like `cmd`, retried for a few seconds while Slurm says the job is between states.
    fn cmd_retried(&self, program: &str, args: &[&str]) -> String {
        for _ in 0..40 {
            let o = Command::new(program).args(args).env("SLURM_CONF", &self.conf).output().unwrap_or_else(|e| panic!("{program}: {e}"));
            if o.status.success() {
                return stdout(&o);
            }
            if !stderr(&o).contains("try again later") {
                panic!("{program} {args:?}: {}", stderr(&o));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("{program} {args:?}: Slurm kept saying to try again later");
    }

    /// `(job id, state)` of every job in the queue (`1234_0 RUNNING`).
    fn queue(&self) -> Vec<(String, String)> {
        self.cmd("squeue", &["-h", "-r", "-o", "%i %T"]).lines().filter_map(|l| l.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned()))).collect()
    }

    /// The job id Slurm gave array task `task` (`1234_0`).
    fn raw_id(&self, task: &str) -> String {
        self.cmd("squeue", &["-h", "-r", "-o", "%i %A"])
            .lines()
            .find_map(|l| l.split_once(' ').filter(|(t, _)| *t == task).map(|(_, id)| id.to_owned()))
            .unwrap_or_else(|| panic!("{task} is not in the queue"))
    }

    /// Sends `signal` to the batch shell of job `raw_id`, as `--signal=B:USR1@grace` does at the
    /// time limit (Slurm checks time limits about once a minute, too coarse for a test; `scancel
    /// --signal --batch` on an array task signals its siblings' steps too in 22.05).
    fn signal_batch_shell(&self, raw_id: &str, signal: i32) {
        let want = format!("SLURM_JOB_ID={raw_id}");
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let (Ok(cmd), Ok(env)) = (std::fs::read(e.path().join("cmdline")), std::fs::read(e.path().join("environ"))) else { continue };
            let is_shell = String::from_utf8_lossy(&cmd).contains("slurm_script");
            if is_shell && env.split(|b| *b == 0).any(|v| v == want.as_bytes()) {
                let pid: i32 = e.file_name().to_string_lossy().parse().unwrap();
                assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill {pid}");
                return;
            }
        }
        panic!("no batch shell of job {raw_id}");
    }

    fn wait_until_empty(&self, what: &str) {
        let started = Instant::now();
        while !self.queue().is_empty() {
            assert!(started.elapsed() < Duration::from_secs(900), "{what}: Slurm's queue is still {:?} after 15 minutes", self.queue());
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/slurm-cluster")).arg("stop").arg(&self.dir).status();
    }
}

fn need_data() {
    if !Path::new(DEBIAN_DIR).join("train-images-idx3-ubyte.gz").exists() {
        panic!("this test needs Debian's dataset-fashion-mnist (scripts/setup installs it)");
    }
}

/// ResNet-18 width 2 on 1024 images; CorInfoMax (3 epochs) and the floor at seeds 0 and 1, and a
/// target that panics (`REPRO_TEST_FAULT`) for the failed state.
const SUITE: &str = "suite: sl\nversion: 1\ndefaults:\n  dataset: fashion_mnist\n  backbone: {arch: resnet18, width: 2, zero_init_residual: false, stem: cifar}\n  data: {train_subset: 1024, monitor_holdout: 200, monitor_bank: 1000}\n  augment: {crop_scale: [0.3, 1.0], crop_ratio: [0.75, 1.3333], hflip: 0.5, interpolation: bilinear}\n  train: {epochs: 3, batch_size: 128, seeds: [0, 1], lr: 0.1, optimizer: {name: sgd, momentum: 0.9}, schedule: {name: warmup_cosine}, weight_decay: 1.0e-4, warmup_epochs: 0.5, min_lr: 0.0}\n  eval:\n    batch_size: 1000\n    knn: {k: 20, temperature: 0.07, distance: cosine, bank_subset: 10000}\n    linear: {epochs: 2, batch_size: 256, lr: 0.5, schedule: cosine_per_step, min_lr: 0.0, momentum: 0.9, weight_decay: 0.0, standardize: true, train_subset: 2000}\n  export: {parity_tolerance: 1.0e-4, parity_images: 16}\ntargets:\n  - id: cim\n    method: corinfomax\n    method_params: {projector: [32, 16], alpha: 250, la_r: 0.01, la_mu: 0.01, r_ini: 1.0, eps: 1.0e-8, normalize: true}\n  - id: floor\n    method: random_init\n  - id: pan\n    method: random_init\n    train: {seeds: [0]}\n";

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Metrics that must equal between a local and a Slurm run: all but speed.
fn comparable(metrics: &serde_json::Value) -> Vec<(String, f64)> {
    let m = metrics["metrics"].as_object().cloned().unwrap_or_default();
    m.into_iter().filter(|(_, v)| v["kind"] != "speed").map(|(k, v)| (k, v["value"].as_f64().unwrap_or(f64::NAN))).collect()
}

/// results.csv (a row per run and metric) without the rows that measure speed.
fn table_without_speed(path: &Path) -> Vec<Vec<String>> {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_owned).collect();
    let kind = header.iter().position(|h| h == "kind").expect("a kind column");
    let mut rows = vec![header];
    rows.extend(r.records().map(|rec| rec.unwrap().iter().map(str::to_owned).collect::<Vec<_>>()).filter(|row| row[kind] != "speed"));
    rows
}

/// The status table's line for `target` at `seed`.
fn status_line(status: &str, target: &str, seed: u64) -> String {
    status
        .lines()
        .find(|l| l.split('|').map(str::trim).collect::<Vec<_>>()[..].starts_with(&["", target, &seed.to_string()]))
        .unwrap_or_else(|| panic!("no line for {target} seed {seed}:\n{status}"))
        .to_owned()
}

/// SIGKILLs the process of the array task running `target` at `seed` (its run's child dies with it).
fn kill_task_run(target: &str, seed: u64) {
    let want = format!("--array-task\0--target\0{target}\0--seed\0{seed}\0");
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
        if cmd.windows(want.len()).any(|w| w == want.as_bytes()) {
            let pid: i32 = e.file_name().to_string_lossy().parse().unwrap();
            assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill {pid}");
            return;
        }
    }
    panic!("no task process runs {target} seed {seed}");
}

/// Whether `dir`'s checkpoint holds one or two epochs of three (the run is mid-training).
fn mid_training(dir: &Path) -> bool {
    let epochs = std::fs::read_to_string(dir.join("checkpoint.json")).ok().and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok()).and_then(|v| v["epochs_done"].as_u64());
    epochs.is_some_and(|e| (1..3).contains(&e)) && !dir.join("metrics.json").exists()
}

#[test]
fn a_suite_runs_as_a_job_array_equal_to_a_local_run_and_resumes_its_stopped_tasks() {
    need_data();
    let sb = Sandbox::new();
    sb.lock_with_sources("datasets.lock", &format!("file://{DEBIAN_DIR}"));
    sb.write("s.yaml", SUITE);
    let cluster = Cluster::start(sb.path("cluster"));
    let conf = cluster.conf.display().to_string();
    let env = [("SLURM_CONF", conf.as_str()), ("REPRO_TEST_FAULT", "pan:panic")];

    // The local executor: the reference.
    let o = sb.repro_env(&["run", "s.yaml", "--device", "cpu", "--out", "local"], &env);
    assert_exit(&o, 1); // pan fails
    let submit = ["run", "s.yaml", "--device", "cpu", "--out", "sl", "--executor", "slurm", "--cpus-per-task", "1", "--array-limit", "2"];

    // --dry-run writes the scripts and submits nothing.
    let o = sb.repro_env(&[&submit[..], &["--dry-run"]].concat(), &env);
    assert_exit(&o, 0);
    let script = std::fs::read_to_string(sb.path("sl/sl/slurm/array-1.sbatch")).unwrap();
    for line in ["#SBATCH --array=0-4%2", "#SBATCH --cpus-per-task=1", "#SBATCH --signal=B:USR1@120", "  'cim 0'", "  'pan 0'"] {
        assert!(script.lines().any(|l| l == line), "{line:?} missing:\n{script}");
    }
    assert!(cluster.queue().is_empty(), "--dry-run submitted: {:?}", cluster.queue());
    std::fs::remove_dir_all(sb.path("sl")).unwrap();

    // Submit: five runs as an array, two at a time, and the tables after them.
    let o = sb.repro_env(&submit, &env);
    assert_exit(&o, 0);
    let array = stdout(&o).trim().to_owned();
    assert!(!array.is_empty() && array.bytes().all(|b| b.is_ascii_digit()), "the array's job id: {}", stdout(&o));
    let status = stdout(&sb.repro_env(&["status", "sl/sl"], &env));
    assert!(status.contains("pending"), "two at a time: the others wait:\n{status}");

    // Mid-training, task 0 (cim seed 0) is told its time limit is near: it stops at its
    // checkpoint and requeues itself, and released at once, resumes. Task 1's run (cim seed 1) is
    // killed (SIGKILL, as the OOM killer or a lost node would): it stays interrupted until the
    // same command submits it again.
    let (cim0, cim1) = (sb.path("sl/sl/cim/seed-0"), sb.path("sl/sl/cim/seed-1"));
    let task0 = format!("{array}_0");
    let (mut stopped0, mut stopped1) = (false, false);
    let started = Instant::now();
    while !(stopped0 && stopped1) {
        if !stopped1 && mid_training(&cim1) {
            kill_task_run("cim", 1);
            stopped1 = true;
        }
        if !stopped0 && mid_training(&cim0) {
            cluster.signal_batch_shell(&cluster.raw_id(&task0), libc::SIGUSR1);
            stopped0 = true;
        }
        for (d, stopped) in [(&cim0, stopped0), (&cim1, stopped1)] {
            assert!(stopped || !d.join("metrics.json").exists(), "{} finished before it could be stopped", d.display());
        }
        assert!(started.elapsed() < Duration::from_secs(600), "cim did not reach its first checkpoint in 10 minutes");
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    while !cluster.queue().iter().any(|(j, s)| *j == task0 && s == "PENDING") {
        assert!(started.elapsed() < Duration::from_secs(120), "task 0 was not requeued: {:?}", cluster.queue());
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = stdout(&sb.repro_env(&["status", "sl/sl"], &env));
    assert!(status_line(&status, "cim", 0).contains("pending"), "requeued:\n{status}");
    cluster.cmd_retried("scontrol", &["update", &format!("JobId={task0}"), "StartTime=now"]);
    let started = Instant::now();
    while repro::util::FolderLock::holder(&sb.path("sl/sl/.locks/cim.seed-0.lock")).is_none() && !cim0.join("metrics.json").exists() {
        assert!(started.elapsed() < Duration::from_secs(120), "task 0 did not start again: {:?}", cluster.queue());
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = stdout(&sb.repro_env(&["status", "sl/sl"], &env));
    assert!(status_line(&status, "cim", 0).contains("running") || status_line(&status, "cim", 0).contains("done"), "{status}");
    cluster.wait_until_empty("the first array");

    let status = stdout(&sb.repro_env(&["status", "sl/sl"], &env));
    for (id, seed, word) in [("cim", 0, "done"), ("cim", 1, "interrupted"), ("floor", 0, "done"), ("floor", 1, "done"), ("pan", 0, "failed")] {
        let logs: Vec<String> = std::fs::read_dir(sb.path("sl/sl/slurm/logs"))
            .unwrap()
            .flatten()
            .map(|e| format!("{}:\n{}", e.path().display(), std::fs::read_to_string(e.path()).unwrap_or_default()))
            .collect();
        assert!(status_line(&status, id, seed).contains(word), "{id} seed {seed} must be {word}:\n{status}\n{}", logs.join("\n"));
    }
    assert!(status_line(&status, "pan", 0).contains("panic"), "the failure's reason:\n{status}");
    let log0 = std::fs::read_to_string(sb.path(&format!("sl/sl/slurm/logs/{array}_0.log"))).unwrap();
    assert!(log0.contains("the time limit is near") && log0.contains("resuming cim (seed 0) from epoch"), "task 0's log:\n{log0}");

    // The same command again submits only what is not done: cim seed 1 resumes; pan fails again.
    let o = sb.repro_env(&submit, &env);
    assert_exit(&o, 0);
    let err = stderr(&o);
    assert!(err.contains("cim (seed 0): finished earlier; not submitted") && err.contains("submitted 2 runs (cim seed 1, pan seed 0)"), "{err}");
    let second = stdout(&o).trim().to_owned();
    cluster.wait_until_empty("the second array");
    let log1 = std::fs::read_to_string(sb.path(&format!("sl/sl/slurm/logs/{second}_0.log"))).unwrap();
    assert!(log1.contains("resuming cim (seed 1) from epoch"), "cim seed 1 resumed:\n{log1}");

    // The records and the table equal the local run's.
    for (id, seed) in [("cim", 0), ("cim", 1), ("floor", 0), ("floor", 1)] {
        let m = |root: &str| comparable(&read_json(&sb.path(&format!("{root}/sl/{id}/seed-{seed}/metrics.json"))));
        assert_eq!(m("sl"), m("local"), "{id} seed {seed}");
    }
    assert_eq!(read_json(&sb.path("sl/sl/pan/failure.json"))["kind"], "error");
    let (slurm_rows, local_rows) = (table_without_speed(&sb.path("sl/sl/results.csv")), table_without_speed(&sb.path("local/sl/results.csv")));
    assert_eq!(slurm_rows.len(), local_rows.len(), "{slurm_rows:?}\n{local_rows:?}");
    for (a, b) in slurm_rows.iter().zip(&local_rows) {
        assert_eq!(a, b, "the Slurm table's row, then the local one's");
    }
    let tables_log = std::fs::read_dir(sb.path("sl/sl/slurm/logs")).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().ends_with("-tables.log")).count();
    assert_eq!(tables_log, 2, "a tables job after each array");
    let status = stdout(&sb.repro_env(&["status", "sl/sl"], &env));
    assert!(status.contains("5 runs: 4 done, 1 failed"), "{status}");
}
