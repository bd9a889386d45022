//! `repro status DIR`: each run of a suite's results folder as done, running, failed, interrupted
//! or pending, from its records, its run lock (`<suite>/.locks/`), the Slurm submissions kept in
//! `<suite>/slurm/jobs.jsonl` and, where Slurm is present, `squeue --json`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Result};
use tabled::settings::Style;
use tabled::{Table, Tabled};

use crate::results::{self, StoredRun};
use crate::slurm;
use crate::util::FolderLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    Done,
    Running,
    Failed,
    Interrupted,
    Pending,
}

impl State {
    pub fn word(&self) -> &'static str {
        match self {
            State::Done => "done",
            State::Running => "running",
            State::Failed => "failed",
            State::Interrupted => "interrupted",
            State::Pending => "pending",
        }
    }
}

/// One run's line.
#[derive(Debug, Clone, Tabled)]
pub struct Line {
    pub target: String,
    pub seed: u64,
    #[tabled(display = "State::word")]
    pub state: State,
    pub detail: String,
}

/// The epochs a run's checkpoint holds, of its target's.
fn epochs(run: &StoredRun) -> String {
    let done = std::fs::read_to_string(run.dir.join("checkpoint.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["epochs_done"].as_u64())
        .unwrap_or(0);
    format!("epoch {done}/{}", run.config.target.train.epochs)
}

/// The state of every run in the suite folder `dir`; `squeue` is Slurm's view (`None` without Slurm).
pub fn lines(dir: &Path, squeue: Option<&slurm::States>) -> Result<Vec<Line>> {
    let subs = slurm::submissions(dir)?;
    let records = match results::load_suite_dir(dir) {
        Ok(r) => r,
        Err(_) if !subs.is_empty() => results::SuiteRecords::default(),
        Err(e) => bail!("{e:#}; nor has anything been submitted to Slurm from it ({}/{}/jobs.jsonl)", dir.display(), slurm::DIR),
    };
    for p in &records.problems {
        eprintln!("warning: {p}");
    }
    let tasks = slurm::latest_tasks(&subs, squeue);
    let mut keys: Vec<(String, u64)> = records.runs.iter().map(|r| (r.config.target.id.clone(), r.config.seed)).collect();
    for s in &subs {
        for t in &s.tasks {
            let k = (t.target.clone(), t.seed);
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    let by_key: BTreeMap<(String, u64), &StoredRun> = records.runs.iter().map(|r| ((r.config.target.id.clone(), r.config.seed), r)).collect();
    let mut out = Vec::new();
    for (target, seed) in keys {
        let run = by_key.get(&(target.clone(), seed)).copied();
        let holder = FolderLock::holder(&results::run_lock(dir, &target, seed));
        let task = tasks.get(&(target.clone(), seed));
        let (job, slurm_state) = task.map_or((None, None), |(j, s)| (Some(j.as_str()), s.as_deref()));
        let epoch = run.map(epochs);
        let (state, detail) = if run.is_some_and(|r| r.finished()) {
            (State::Done, job.map(|j| format!("Slurm job {j}")).unwrap_or_default())
        } else if let Some(h) = holder {
            (State::Running, [epoch, Some(format!("by {h}"))].into_iter().flatten().collect::<Vec<_>>().join(", "))
        } else if let Some(s) = slurm_state.filter(|s| slurm::alive(s)) {
            let job = job.unwrap_or_default();
            if s.split(',').any(|x| x == "RUNNING" || x == "COMPLETING") {
                (State::Running, [Some(format!("Slurm job {job}")), epoch].into_iter().flatten().collect::<Vec<_>>().join(", "))
            } else {
                (State::Pending, format!("Slurm job {job} ({})", s.to_lowercase()))
            }
        } else if let Some(f) = run.and_then(|r| r.failure.as_ref()) {
            (State::Failed, f.summary())
        } else if run.is_some() {
            (State::Interrupted, format!("{} in its checkpoint; the same `repro run` resumes it", epoch.unwrap_or_default()))
        } else if let (Some(j), Some(s)) = (job, slurm_state) {
            (State::Failed, format!("Slurm job {j} ended ({}) without a record: its log is {}/{}/logs/{j}.log", s.to_lowercase(), dir.display(), slurm::DIR))
        } else {
            (State::Pending, job.map(|j| format!("submitted as Slurm job {j}")).unwrap_or_default())
        };
        out.push(Line { target, seed, state, detail });
    }
    Ok(out)
}

/// `repro status DIR`.
pub fn command(dir: &Path) -> Result<crate::Outcome> {
    let squeue = slurm::task_states();
    let lines = lines(dir, squeue.as_ref())?;
    let mut counts: BTreeMap<State, usize> = BTreeMap::new();
    for l in &lines {
        *counts.entry(l.state).or_default() += 1;
    }
    println!("{}", Table::new(&lines).with(Style::markdown()));
    let said: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {}", s.word())).collect();
    let submitted = dir.join(slurm::DIR).join("jobs.jsonl").exists();
    let slurm = if squeue.is_none() && submitted { " (Slurm's queue not consulted: squeue is not here or did not answer)" } else { "" };
    println!("\n{} runs: {}{slurm}", lines.len(), said.join(", "));
    Ok(crate::Outcome::Success)
}
