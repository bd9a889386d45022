//! The Slurm executor's files and Slurm's own words, with no libtorch: the job-array script (one
//! task per run, each the same binary running exactly that run into the shared results folder),
//! the dependent script that renders the tables and gate when the array ends, `sbatch --parsable`,
//! the submissions kept in `<suite>/slurm/jobs.jsonl`, and the task states `squeue --json` reports
//! (Slurm 22.05's plain numbers and 23.02+'s `{set, number}` alike).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// Where a suite's Slurm files live: `<suite>/slurm/`.
pub const DIR: &str = "slurm";
const JOBS: &str = "jobs.jsonl";

/// `sbatch` options from the command line (`None`: Slurm's or the site's default).
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub partition: Option<String>,
    pub account: Option<String>,
    pub gpus_per_task: Option<u32>,
    pub cpus_per_task: Option<u32>,
    pub mem: Option<String>,
    pub time: Option<String>,
    /// At most this many tasks at once (`--array=0-N%K`).
    pub array_limit: Option<u32>,
    /// Seconds before the time limit at which the task is told to stop and is requeued.
    pub signal_grace: u32,
    /// Any other `sbatch` option, as written (`--qos=high`, `--constraint=a100`).
    pub extra: Vec<String>,
}

/// One task of the array: one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub target: String,
    pub seed: u64,
}

/// What every task runs: `program args... --target T --seed S`.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The absolute path of the binary (it must be reachable from the compute nodes).
    pub program: PathBuf,
    /// The folder the tasks start in (relative paths in `args` are relative to it).
    pub workdir: PathBuf,
    /// The task's command line without its target and seed.
    pub args: Vec<String>,
    /// The dependent job's command line (the tables), and the gate's.
    pub tables_args: Vec<String>,
    pub gate_args: Vec<String>,
}

/// Quotes `s` for a POSIX shell (single quotes; a single quote as `'\''`).
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./_-".contains(&b)) {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn command_line(program: &Path, args: &[String]) -> String {
    std::iter::once(shell_quote(&program.display().to_string())).chain(args.iter().map(|a| shell_quote(a))).collect::<Vec<_>>().join(" ")
}

/// The `#SBATCH` lines both scripts share.
fn common_header(name: &str, opts: &Options, log: &Path) -> String {
    let mut h = format!("#!/bin/bash\n#SBATCH --job-name={}\n#SBATCH --output={}\n", shell_quote(name), shell_quote(&log.display().to_string()));
    for (flag, v) in [("partition", &opts.partition), ("account", &opts.account)] {
        if let Some(v) = v {
            h += &format!("#SBATCH --{flag}={}\n", shell_quote(v));
        }
    }
    h
}

/// The job-array script: task `i` runs `tasks[i]`. A task told its time limit is near
/// (`--signal=B:USR1@grace`) stops its run, which keeps its last checkpoint, and requeues
/// itself; a preempted one (SIGTERM) stops the same way and Slurm requeues it. Either way the
/// requeued task resumes from the checkpoint.
pub fn array_script(suite: &str, tasks: &[Task], inv: &Invocation, opts: &Options, logs: &Path) -> Result<String> {
    if tasks.is_empty() {
        bail!("no runs to submit");
    }
    let mut s = common_header(&format!("repro-{suite}"), opts, &logs.join("%A_%a.log"));
    let limit = opts.array_limit.map(|k| format!("%{k}")).unwrap_or_default();
    s += &format!("#SBATCH --array=0-{}{limit}\n#SBATCH --ntasks=1\n", tasks.len() - 1);
    if let Some(n) = opts.gpus_per_task {
        s += &format!("#SBATCH --gpus-per-task={n}\n");
    }
    if let Some(n) = opts.cpus_per_task {
        s += &format!("#SBATCH --cpus-per-task={n}\n");
    }
    for (flag, v) in [("mem", &opts.mem), ("time", &opts.time)] {
        if let Some(v) = v {
            s += &format!("#SBATCH --{flag}={}\n", shell_quote(v));
        }
    }
    s += &format!("#SBATCH --signal=B:USR1@{}\n#SBATCH --requeue\n#SBATCH --open-mode=append\n", opts.signal_grace);
    for e in &opts.extra {
        s += &format!("#SBATCH {e}\n");
    }
    s += &format!("# Written by repro for suite {suite}: one task per run (target, seed); `sbatch` this file to submit it again.\nset -u\n\nTASKS=(\n");
    for t in tasks {
        s += &format!("  {}\n", shell_quote(&format!("{} {}", t.target, t.seed)));
    }
    s += ")\nread -r TARGET SEED <<< \"${TASKS[$SLURM_ARRAY_TASK_ID]}\"\n";
    s += &format!("cd {} || exit 2\n\n", shell_quote(&inv.workdir.display().to_string()));
    s += "# The run keeps its last checkpoint when stopped: at the time limit the task requeues itself;\n\
          # when preempted (SIGTERM) Slurm requeues it. Either way it resumes from that checkpoint.\n\
          stop() {\n  echo \"repro: $1: stopping ${TARGET} seed ${SEED} at its last checkpoint\" >&2\n  kill -TERM \"$run\" 2>/dev/null\n  wait \"$run\"\n}\n\
          trap 'stop \"the time limit is near\"; scontrol requeue \"${SLURM_JOB_ID}\"; exit 0' USR1\n\
          trap 'stop \"preempted or cancelled\"; exit 143' TERM\n\n";
    s += &format!("{} --target \"$TARGET\" --seed \"$SEED\" &\nrun=$!\nwait \"$run\"\nstatus=$?\n", command_line(&inv.program, &inv.args));
    s += "# `wait` returns early (>128) when a trapped signal arrives; the trap then ends the script.\nwhile kill -0 \"$run\" 2>/dev/null; do wait \"$run\"; status=$?; done\nexit \"$status\"\n";
    Ok(s)
}

/// The dependent job's script: the suite's tables, then its gate, once the array has ended.
pub fn after_script(suite: &str, inv: &Invocation, opts: &Options, logs: &Path) -> String {
    let mut s = common_header(&format!("repro-{suite}-tables"), opts, &logs.join("%j-tables.log"));
    s += "#SBATCH --ntasks=1\n";
    s += &format!(
        "# Written by repro for suite {suite}: the tables and the gate once the runs' array has ended.\nset -u\ncd {} || exit 2\n{}\n{}\n",
        shell_quote(&inv.workdir.display().to_string()),
        command_line(&inv.program, &inv.tables_args),
        command_line(&inv.program, &inv.gate_args)
    );
    s
}

/// `sbatch --parsable [extra...] script`: the job id.
pub fn sbatch(script: &Path, extra: &[String]) -> Result<String> {
    let out = Command::new("sbatch")
        .arg("--parsable")
        .args(extra)
        .arg(script)
        .output()
        .with_context(|| "cannot run sbatch: is Slurm's client installed (Debian: slurm-client) and on PATH?".to_owned())?;
    if !out.status.success() {
        bail!("sbatch {} failed ({}): {}", script.display(), out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    // `12345` or `12345;cluster`.
    let text = String::from_utf8_lossy(&out.stdout);
    let id = text.trim().split(';').next().unwrap_or_default().to_owned();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        bail!("sbatch {}: expected a job id, it printed {:?}", script.display(), text.trim());
    }
    Ok(id)
}

/// One submission, a line of `<suite>/slurm/jobs.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submission {
    /// Unix seconds.
    pub submitted: u64,
    pub array_job: String,
    pub tables_job: String,
    /// The script, relative to the suite's folder.
    pub script: String,
    /// Task `i` of the array runs `tasks[i]`.
    pub tasks: Vec<Task>,
}

/// The submissions made for the suite in `suite_dir`, oldest first.
pub fn submissions(suite_dir: &Path) -> Result<Vec<Submission>> {
    let p = suite_dir.join(DIR).join(JOBS);
    let Ok(text) = std::fs::read_to_string(&p) else { return Ok(Vec::new()) };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{} line {}: not a submission record (remove the line or the file)", p.display(), i + 1)))
        .collect()
}

/// Appends `s` to the suite's submissions (the file rewritten atomically).
pub fn record(suite_dir: &Path, s: &Submission) -> Result<()> {
    let p = suite_dir.join(DIR).join(JOBS);
    let mut text = std::fs::read_to_string(&p).unwrap_or_default();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text += &serde_json::to_string(s)?;
    text.push('\n');
    crate::util::write_atomic(&p, text.as_bytes())
}

/// A task's state as Slurm reports it (`PENDING`, `RUNNING`, `COMPLETING`, ...).
pub type States = BTreeMap<(String, u32), String>;

/// The states of the array tasks `squeue --json` knows (finished ones stay for `MinJobAge`):
/// `(array job id, task index) → state`. `None` when Slurm is not here or does not answer.
pub fn task_states() -> Option<States> {
    let out = Command::new("squeue").args(["--json", "--states=all"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    parse_squeue(&String::from_utf8_lossy(&out.stdout)).ok()
}

/// A number as 22.05 writes it (`7`) or as 23.02+ does (`{"set": true, "number": 7}`).
fn number(v: &serde_json::Value) -> Option<u64> {
    v.as_u64().or_else(|| v.get("set").and_then(|s| s.as_bool()).filter(|s| *s).and_then(|_| v.get("number")).and_then(|n| n.as_u64()))
}

/// Parses `squeue --json`. A pending array's untouched tasks come as one entry whose
/// `array_task_string` lists them (`0-3`, `1,3-5%2`).
pub fn parse_squeue(json: &str) -> Result<States> {
    let v: serde_json::Value = serde_json::from_str(json).context("squeue --json printed no JSON")?;
    let mut out = States::new();
    for j in v["jobs"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let Some(array) = number(&j["array_job_id"]).filter(|a| *a != 0) else { continue };
        let state = match &j["job_state"] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(a) => a.iter().filter_map(|s| s.as_str()).collect::<Vec<_>>().join(","),
            _ => continue,
        };
        let mut indices = Vec::new();
        if let Some(list) = j["array_task_string"].as_str().filter(|s| !s.is_empty()) {
            indices = array_task_string(list);
        } else if let Some(i) = number(&j["array_task_id"]) {
            indices.push(i as u32);
        }
        for i in indices {
            out.insert((array.to_string(), i), state.clone());
        }
    }
    Ok(out)
}

/// The task indices of `0-3,7,9-11%2` (the limit after `%` is not an index).
pub fn array_task_string(s: &str) -> Vec<u32> {
    let s = s.split('%').next().unwrap_or_default();
    let mut out = Vec::new();
    for part in s.split(',') {
        // `0-15:4` steps too.
        let (range, step) = part.split_once(':').map_or((part, 1), |(r, st)| (r, st.parse().unwrap_or(1).max(1)));
        match range.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.trim().parse::<u32>(), b.trim().parse::<u32>()) {
                    out.extend((a..=b.min(a.saturating_add(1_000_000))).step_by(step));
                }
            }
            None => out.extend(range.trim().parse::<u32>().ok()),
        }
    }
    out
}

/// Whether a state means the task will still run or is running.
pub fn alive(state: &str) -> bool {
    ["PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED", "REQUEUE_HOLD", "REQUEUE_FED", "SIGNALING", "STAGE_OUT"]
        .iter()
        .any(|s| state.split(',').any(|x| x == *s))
}

/// The latest submission's task for each run, with its job id (`array_index`) and Slurm's state
/// when Slurm knows it.
pub fn latest_tasks(subs: &[Submission], states: Option<&States>) -> BTreeMap<(String, u64), (String, Option<String>)> {
    let mut out = BTreeMap::new();
    for s in subs {
        for (i, t) in s.tasks.iter().enumerate() {
            let state = states.and_then(|st| st.get(&(s.array_job.clone(), i as u32))).cloned();
            out.insert((t.target.clone(), t.seed), (format!("{}_{i}", s.array_job), state));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv() -> Invocation {
        Invocation {
            program: "/opt/repro bin/repro".into(),
            workdir: "/home/me/exp".into(),
            args: vec!["run".into(), "suites/a.yaml".into(), "--set".into(), "train.lr=0.1 it's".into()],
            tables_args: vec!["run".into(), "suites/a.yaml".into(), "--tables-only".into()],
            gate_args: vec!["gate".into(), "reports/a".into()],
        }
    }

    #[test]
    fn words_are_quoted_for_the_shell() {
        assert_eq!(shell_quote("train.epochs=2"), "train.epochs=2");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
    }

    #[test]
    fn the_array_script_has_a_task_per_run_and_requeues_at_its_time_limit() {
        let tasks = [Task { target: "cim".into(), seed: 0 }, Task { target: "cim".into(), seed: 1 }, Task { target: "floor".into(), seed: 0 }];
        let opts = Options {
            partition: Some("gpu".into()),
            gpus_per_task: Some(1),
            mem: Some("32G".into()),
            array_limit: Some(2),
            signal_grace: 120,
            extra: vec!["--qos=high".into()],
            ..Options::default()
        };
        let s = array_script("a", &tasks, &inv(), &opts, Path::new("/r/a/slurm/logs")).unwrap();
        for line in [
            "#SBATCH --array=0-2%2",
            "#SBATCH --partition=gpu",
            "#SBATCH --gpus-per-task=1",
            "#SBATCH --mem=32G",
            "#SBATCH --signal=B:USR1@120",
            "#SBATCH --requeue",
            "#SBATCH --qos=high",
            "#SBATCH --output=/r/a/slurm/logs/%A_%a.log",
            "  'cim 1'",
            "'/opt/repro bin/repro' run suites/a.yaml --set 'train.lr=0.1 it'\\''s' --target \"$TARGET\" --seed \"$SEED\" &",
            "cd /home/me/exp || exit 2",
        ] {
            assert!(s.lines().any(|l| l == line), "{line:?} missing from:\n{s}");
        }
        assert!(!s.contains("--time") && !s.contains("--account"), "unset options stay unset:\n{s}");
        assert!(array_script("a", &[], &inv(), &opts, Path::new("/l")).is_err());
        let after = after_script("a", &inv(), &opts, Path::new("/r/a/slurm/logs"));
        assert!(after.contains("'/opt/repro bin/repro' run suites/a.yaml --tables-only\n'/opt/repro bin/repro' gate reports/a\n"), "{after}");
    }

    #[test]
    fn squeue_json_of_22_05_and_23_02_is_read() {
        // Shapes from `squeue --json` of Slurm 22.05 (plain numbers) and 23.02 (`{set, number}`, state lists).
        let old = r#"{"jobs": [
            {"job_id": 12, "array_job_id": 10, "array_task_id": 2, "array_task_string": "", "job_state": "RUNNING"},
            {"job_id": 10, "array_job_id": 10, "array_task_id": 0, "array_task_string": "3-4,6%2", "job_state": "PENDING"},
            {"job_id": 20, "array_job_id": 0, "array_task_id": 0, "job_state": "PENDING"}]}"#;
        let s = parse_squeue(old).unwrap();
        assert_eq!(s.get(&("10".into(), 2)).map(String::as_str), Some("RUNNING"));
        assert_eq!([3, 4, 6].map(|i| s.get(&("10".into(), i)).cloned()), [Some("PENDING".into()), Some("PENDING".into()), Some("PENDING".into())]);
        assert_eq!(s.len(), 4, "{s:?}");
        let new = r#"{"jobs": [{"job_id": 31, "array_job_id": {"set": true, "infinite": false, "number": 30}, "array_task_id": {"set": true, "number": 1},
            "array_task_string": "", "job_state": ["COMPLETED"]}]}"#;
        assert_eq!(parse_squeue(new).unwrap().get(&("30".into(), 1)).map(String::as_str), Some("COMPLETED"));
        assert!(parse_squeue("squeue: error").is_err());
        assert_eq!(array_task_string("0-6:3,9"), vec![0, 3, 6, 9]);
        assert!(alive("PENDING") && !alive("COMPLETED") && !alive("FAILED"));
    }

    #[test]
    fn submissions_are_kept_one_per_line() {
        let d = tempfile::tempdir().unwrap();
        assert!(submissions(d.path()).unwrap().is_empty());
        let s =
            Submission { submitted: 1, array_job: "7".into(), tables_job: "8".into(), script: "slurm/array-1.sbatch".into(), tasks: vec![Task { target: "cim".into(), seed: 0 }] };
        record(d.path(), &s).unwrap();
        record(d.path(), &Submission { array_job: "9".into(), ..s.clone() }).unwrap();
        let all = submissions(d.path()).unwrap();
        assert_eq!((all.len(), all[0].clone()), (2, s));
        let tasks = latest_tasks(&all, Some(&States::from([(("9".into(), 0), "RUNNING".into())])));
        assert_eq!(tasks.get(&("cim".into(), 0)), Some(&("9_0".into(), Some("RUNNING".into()))));
        std::fs::write(d.path().join("slurm/jobs.jsonl"), "{oops\n").unwrap();
        assert!(format!("{:#}", submissions(d.path()).unwrap_err()).contains("jobs.jsonl line 1"));
    }
}
