//! The one orchestrator: suite → plan → per run {data, train, export, eval} → results → report,
//! plus the other subcommands. `repro run` holds the results folder's lock and runs each run (a
//! target at a seed) in a child process of its own (`executor`; `--isolation none` keeps them in
//! this one): a run's failure (an error, a divergence, running out of memory, a crash) is recorded
//! in its `failure.json` (`failure`) and the suite carries on; the exit status then says 1.
//! Configuration, data and infrastructure errors end the command with exit 2 before any run starts.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use tch::Device;

use crate::cli::{BenchArgs, Cli, Command, DistanceArg, EvalArgs, Executor, Isolation, LossArgs, PlanArgs, RunArgs, ScheduleArg};
use crate::data::{self, augment::Normalize, fetch::FetchOptions, Splits};
use crate::plan::{self, Plan, Target};
use crate::results::{self, BuildInfo, ConfigRecord, EnvRecord, FailureKind, Keys, Metric, MetricKind, MetricsRecord, RunDir};
use crate::{eval, executor, export, failure, gate, machine, methods, report, slurm, train, util, validate, Outcome};

pub fn main(cli: Cli) -> Result<Outcome> {
    failure::inject("@main", false)?;
    match cli.command {
        Command::Run(args) => run(&cli.lock, &args),
        Command::Validate(a) => validate::command(&cli.lock, &a),
        Command::Fetch { names, force, decode } => fetch(&cli.lock, &names, force, decode),
        Command::Verify { names } => verify(&cli.lock, &names),
        Command::Export { checkpoint, out } => export_checkpoint(&cli.lock, &checkpoint, &out),
        Command::Eval(args) => eval_file(&cli.lock, &args),
        Command::Report(a) => report::command(&a),
        Command::Gate(a) => gate::command(&a),
        Command::Status(a) => crate::status::command(&a.dir),
        Command::Loss(args) => loss(&args),
        Command::Env { json } => env_command(json),
        Command::Methods => {
            print!("{}", plan::methods::markdown_table());
            Ok(Outcome::Success)
        }
        Command::Bench(args) => bench(&cli.lock, &args),
        Command::Plan(args) => plan_estimate(&cli.lock, &args),
    }
}

/// `repro bench`: one target's stages timed on this machine (`bench`).
fn bench(lock: &Path, a: &BenchArgs) -> Result<Outcome> {
    let (plan, lockfile) = validate::load_plan(lock, &a.suite, &a.set)?;
    let t = match &a.target {
        Some(id) => select_targets(&plan, &a.suite, std::slice::from_ref(id))?[0],
        None if plan.targets.len() == 1 => &plan.targets[0],
        None => bail!("{} has {} targets; name one with --target (targets: {})", a.suite.display(), plan.targets.len(), plan.target_ids()),
    };
    let (device, note) = machine::select_device(a.device)?;
    if let Some(why) = &note {
        eprintln!("benchmarking on the CPU ({why})");
    }
    let info = lockfile.info(&t.dataset)?;
    let opts = crate::bench::BenchOptions {
        steps: a.steps,
        embed_images: a.embed_images,
        knn_bank: a.knn_bank,
        knn_queries: a.knn_queries,
        peak_tflops: a.peak_tflops,
        trace_steps: a.trace_steps,
    };
    let r = crate::bench::bench_target(t, &info, device, &opts)?;
    if let Some(path) = &a.save {
        util::write_json(path, &r)?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!("{}", crate::bench::render(&r));
    }
    Ok(Outcome::Success)
}

/// `repro plan`: the suite's compute, time and memory, estimated (`estimate`).
fn plan_estimate(lock: &Path, a: &PlanArgs) -> Result<Outcome> {
    let (plan, lockfile) = validate::load_plan(lock, &a.suite, &a.set)?;
    let targets = select_targets(&plan, &a.suite, &a.targets)?;
    let (device, note) = machine::select_device(a.device)?;
    if let Some(why) = &note {
        eprintln!("calibrating on the CPU ({why})");
    }
    let o = crate::estimate::EstimateOptions { gpu: a.gpu.clone(), mfu: a.mfu, calibrate_steps: a.calibrate_steps };
    let e = crate::estimate::estimate(&plan, &targets, &lockfile, device, &o)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&e)?);
    } else {
        print!("{}", crate::estimate::render(&e));
    }
    Ok(Outcome::Success)
}

/// `repro env`: the build, libtorch and CUDA (or why not), ONNX Runtime and its providers, threads
/// and CPU, as every env.json records them.
fn env_command(json: bool) -> Result<Outcome> {
    let m = machine::record();
    if json {
        println!("{}", serde_json::to_string_pretty(&m)?);
        return Ok(Outcome::Success);
    }
    println!("repro        {} ({})", m.repro_version, m.build().label());
    println!("libtorch     {} from {}", m.libtorch_version.as_deref().unwrap_or("?"), m.libtorch_dir.as_deref().unwrap_or("?"));
    match &m.cuda_absent {
        None => println!("CUDA         available: {} device(s) ({}), cuDNN {}", m.cuda_devices, m.gpu.as_deref().unwrap_or("name unknown"), if m.cudnn { "yes" } else { "no" }),
        Some(why) => println!("CUDA         absent: {why}"),
    }
    println!("ONNX Runtime {} at {}", m.onnxruntime_version.as_deref().unwrap_or("not loaded"), eval::session::library_path().unwrap_or_default());
    println!("providers    {}", m.onnxruntime_providers.join(", "));
    println!("threads      {} (libtorch intra-op)", m.threads);
    println!("CPU          {}", m.cpu);
    Ok(Outcome::Success)
}

/// The targets named by `--target` (all when none is), in suite order: a target's id, a sweep
/// point's id, or a sweep's id for all its points. An unknown id is an error that lists the
/// suite's targets.
fn select_targets<'a>(plan: &'a Plan, suite: &Path, ids: &[String]) -> Result<Vec<&'a Target>> {
    let named = |t: &Target, id: &String| &t.id == id || t.sweep.as_ref().is_some_and(|s| &s.of == id);
    if let Some(id) = ids.iter().find(|id| !plan.targets.iter().any(|t| named(t, id))) {
        bail!("--target {id:?}: no such target in {} (targets: {})", suite.display(), plan.target_ids());
    }
    Ok(plan.targets.iter().filter(|t| ids.is_empty() || ids.iter().any(|id| named(t, id))).collect())
}

fn run(lock: &Path, args: &RunArgs) -> Result<Outcome> {
    let (plan, lockfile) = validate::load_plan(lock, &args.suite, &args.set)?;
    let targets = select_targets(&plan, &args.suite, &args.targets)?;
    if let Some(s) = args.seeds.iter().find(|s| !targets.iter().any(|t| t.train.seeds.contains(s))) {
        bail!("--seed {s}: no selected target has it in train.seeds (they have {:?})", targets.iter().map(|t| &t.train.seeds).collect::<Vec<_>>());
    }
    let isolated = args.isolation == Isolation::Process && !args.child;
    if args.child {
        failure::set_in_run_process();
    }
    let build = BuildInfo::current();
    let suite_dir = args.out.join(&plan.suite);
    let planned = planned_runs(&plan, &lockfile, &targets, &args.seeds)?;
    if args.tables_only {
        let _lock = util::FolderLock::acquire(&suite_dir, &format!("repro run {} (tables)", args.suite.display()))?;
        let unfinished = write_tables(&plan.suite, &suite_dir, &planned, &build)?;
        return Ok(if unfinished > 0 { Outcome::Failed } else { Outcome::Success });
    }
    if args.executor == Executor::Local {
        if let Some(flag) = args.slurm.first_given() {
            bail!("{flag} is a Slurm option: add --executor slurm to submit the runs to Slurm, or leave it out to run them here");
        }
    }
    if args.executor == Executor::Slurm && (args.child || args.array_task) {
        bail!("--executor slurm submits runs; a run's own process runs with --executor local");
    }
    let slurm = args.executor == Executor::Slurm;
    // The submitting machine need not have the runs' GPUs.
    let (device, device_note) = if slurm { (Device::Cpu, None) } else { machine::select_device(args.device)? };
    if !args.child && !slurm {
        let n_runs = planned.len();
        let on = match &device_note {
            Some(why) => format!("the CPU ({why})"),
            None => format!("{device:?}"),
        };
        let each = if isolated { ", each run in its own process" } else { "" };
        eprintln!("repro {} ({}): suite {} ({} targets, {n_runs} runs), training on {on}{each}", build.version, build.label(), plan.suite, targets.len());
    }

    // Data problems are infrastructure errors (exit 2): resolve every dataset before training. A
    // parent of isolated runs only makes sure each is fetched and decoded; its children map it.
    let mut datasets: BTreeMap<String, Splits> = BTreeMap::new();
    for t in &targets {
        if !datasets.contains_key(&t.dataset) {
            let unlabeled = targets.iter().any(|u| u.dataset == t.dataset && u.data.unlabeled);
            let splits = data::load(lock, &t.dataset, &FetchOptions::from_env(), unlabeled)?;
            datasets.insert(t.dataset.clone(), splits);
        }
    }
    if isolated || slurm {
        datasets.clear();
    }
    if slurm {
        return submit_to_slurm(lock, args, &plan, &planned, &suite_dir);
    }
    // The results folder's lock, from before its first write to the end (the parent holds it for
    // its children). An array task shares the folder with the other tasks: it locks its run only.
    let _lock = if args.child || args.array_task { None } else { Some(util::FolderLock::acquire(&suite_dir, &format!("repro run {}", args.suite.display()))?) };
    if let Some(h) = _lock.as_ref().and_then(|l| l.took_over.as_ref()) {
        eprintln!("{}: took over the lock of {h}, which no longer holds it", suite_dir.display());
    }
    if _lock.is_some() {
        // Tables and plots a killed run was writing (each run's folder is cleaned when it starts).
        util::remove_stale_temp_files(&suite_dir);
        util::remove_stale_temp_files(&suite_dir.join("plots"));
    }
    // `data.image_size`: one resized copy per (dataset, side), made once (in each child when isolated).
    let mut resized: BTreeMap<(String, usize), Splits> = BTreeMap::new();
    for t in targets.iter().filter(|_| !isolated) {
        if let Some(size) = t.data.image_size {
            let key = (t.dataset.clone(), size);
            if !resized.contains_key(&key) && datasets[&t.dataset].info.image_size != size {
                let r = data::resize::resize_splits(&datasets[&t.dataset], size).with_context(|| format!("{}: data.image_size {size}", t.id))?;
                resized.insert(key, r);
            }
        }
    }

    let mut failed = 0;
    let mut elsewhere = 0;
    for (t, config) in &planned {
        let (t, seed) = (*t, config.seed);
        let config = config.clone();
        let dir = RunDir::new(&args.out, &plan.suite, t, seed);
        let label = t.run_label(seed);
        let device_word = format!("{device:?}");
        // The run's lock, held while it runs (by the parent for its child): a run another
        // process (a Slurm task, another suite's runner) is running is left to it.
        let _run_lock = if args.child {
            None
        } else {
            match util::FolderLock::acquire_file(&results::run_lock(&suite_dir, &t.id, seed), &format!("repro run {} --target {} --seed {seed}", args.suite.display(), t.id)) {
                Ok(l) => Some(l),
                Err(e) => {
                    elsewhere += 1;
                    eprintln!("  {label}: left alone, it is running elsewhere: {e:#}");
                    continue;
                }
            }
        };
        let record = if isolated {
            match prepare(&config, &label, &dir, &suite_dir, args, &build) {
                Ok(true) => {}
                Ok(false) => continue,
                // Records in the run's way: this run is refused, the others go on.
                Err(e) => {
                    failed += 1;
                    eprintln!("  {label} FAILED: {e:#}");
                    continue;
                }
            }
            let (end, tail) = match executor::run_child(&child_args(lock, args, t, seed)) {
                Ok(ended) => ended,
                // Its process could not start: this run fails, the others may still start.
                Err(e) => {
                    record_failure(&dir, &config, &label, &failure::from_error(&config, &e, &device_word))?;
                    failed += 1;
                    continue;
                }
            };
            if end.interrupted() {
                bail!("{label}: its process was {}; nothing was lost: the same command resumes it from its last checkpoint", end.describe());
            }
            let stored = dir.read().ok().flatten().filter(|r| r.config.keys.run == config.keys.run);
            match (&end, stored) {
                (executor::End::Finished, _) => None,
                // Metrics are written last: a process that dies after them (a crash in a
                // library's exit handlers) has finished its run.
                (_, Some(r)) if r.finished() => {
                    eprintln!("  {label}: its process ended ({}) after recording its metrics; the run stands", end.describe());
                    None
                }
                (executor::End::Exited(1), Some(r)) if r.failure.is_some() => {
                    failed += 1; // the child printed and recorded why
                    None
                }
                // It recorded its verdict (diverged, say), then died: the verdict stands, with how it died.
                (_, Some(r)) if r.failure.is_some() => r.failure.map(|mut f| {
                    f.exit = Some(end.describe());
                    f.log_tail = tail;
                    f
                }),
                _ => Some(failure::from_crash(&config, &end, tail, &device_word)),
            }
        } else {
            let splits = t.data.image_size.and_then(|s| resized.get(&(t.dataset.clone(), s))).unwrap_or(&datasets[&t.dataset]);
            let at = Placement { device, note: device_note.clone() };
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| run_one(&config, &label, splits, &dir, &suite_dir, &at, args, &build)))
                .unwrap_or_else(|panic| Err(anyhow!("panicked: {}", failure::take_panic(&*panic))));
            result.err().map(|e| failure::from_error(&config, &e, &device_word))
        };
        if let Some(f) = record {
            failed += 1;
            record_failure(&dir, &config, &label, &f)?;
        }
    }
    if args.child || args.array_task {
        if args.child {
            for t in &targets {
                failure::inject(&t.id, true)?;
            }
        }
        return Ok(if failed + elsewhere > 0 { Outcome::Failed } else { Outcome::Success });
    }
    let unfinished = write_tables(&plan.suite, &suite_dir, &planned, &build)?;
    if elsewhere > 0 {
        eprintln!("{elsewhere} run(s) were running elsewhere; `repro status {}` follows them", suite_dir.display());
    }
    Ok(if failed > 0 || unfinished > 0 { Outcome::Failed } else { Outcome::Success })
}

/// Each selected run (a target at a seed) with the record of its configuration.
fn planned_runs<'a>(plan: &Plan, lockfile: &repro_lite::lock::Lock, targets: &[&'a Target], seeds: &[u64]) -> Result<Vec<(&'a Target, ConfigRecord)>> {
    let mut out = Vec::new();
    for t in targets {
        let position = plan.targets.iter().position(|p| p.id == t.id).unwrap_or(0);
        let dataset_hash = lockfile.get(&t.dataset)?.content_hash();
        for seed in t.train.seeds.iter().copied().filter(|s| seeds.is_empty() || seeds.contains(s)) {
            let config = ConfigRecord {
                schema_version: results::SCHEMA_VERSION,
                suite: plan.suite.clone(),
                suite_version: plan.suite_version,
                position,
                seed,
                keys: Keys::new(t, seed, &dataset_hash)?,
                target: (*t).clone(),
            };
            out.push((*t, config));
        }
    }
    Ok(out)
}

/// Writes the suite's tables (results.{md,csv,tex}, plots) from the records of the `planned`
/// runs and prints the terminal table; returns how many of them have no metrics.
fn write_tables(suite: &str, suite_dir: &Path, planned: &[(&Target, ConfigRecord)], build: &BuildInfo) -> Result<usize> {
    let records = results::load_suite_dir(suite_dir)?;
    for p in &records.problems {
        eprintln!("warning: {p}");
    }
    let is = |r: &results::StoredRun, c: &ConfigRecord| r.config.target.id == c.target.id && r.config.seed == c.seed && r.config.keys.run == c.keys.run;
    let runs: Vec<_> = records.runs.into_iter().filter(|r| planned.iter().any(|(_, c)| is(r, c))).collect();
    // Any run without metrics (failed now, diverged earlier, its folder refused) fails the command.
    let unfinished = planned.iter().filter(|(_, c)| !runs.iter().any(|r| is(r, c) && r.finished())).count();
    // The plots first, so that results.md never links a file that is not there.
    let suites = [(suite.to_owned(), runs)];
    let plots = report::plot::write_all(&suites, build, &suite_dir.join("plots"))?;
    let runs = &suites[0].1;
    let mut md = report::render(runs, &[], build, report::Format::Md)?;
    md += &report::plot::links(&plots, "plots/");
    util::write_atomic(&suite_dir.join("results.md"), md.as_bytes())?;
    util::write_atomic(&suite_dir.join("results.csv"), report::render(runs, &[], build, report::Format::Csv)?.as_bytes())?;
    util::write_atomic(&suite_dir.join("results.tex"), report::render(runs, &[], build, report::Format::Latex)?.as_bytes())?;
    println!("{}", report::render(runs, &[], build, report::Format::Terminal)?);
    eprintln!("tables written to {}/results.{{md,csv,tex}} and {} plot(s) to plots/ (SVG and PNG)", suite_dir.display(), plots.len());
    Ok(unfinished)
}

/// Prints a run's failure and writes its `failure.json`, only into a folder that holds this run.
fn record_failure(dir: &RunDir, config: &ConfigRecord, label: &str, f: &results::FailureRecord) -> Result<()> {
    eprintln!("  {label} FAILED ({}): {}", f.kind.word(), f.error);
    if dir.read().ok().flatten().is_some_and(|r| r.config.keys.run == config.keys.run) {
        util::write_json(&dir.path("failure.json"), f)?;
    }
    Ok(())
}

/// This command's flags for a process that runs some of its runs (a child, a Slurm task): the
/// lock, suite, device, results root, `--set`s and record policies.
fn run_flags(lock: &Path, suite: &Path, out: &Path, args: &RunArgs) -> Vec<std::ffi::OsString> {
    let mut a: Vec<std::ffi::OsString> = vec!["--lock".into(), lock.into(), "run".into(), suite.into(), "--device".into(), args.device.word().into(), "--out".into(), out.into()];
    for s in &args.set {
        a.push("--set".into());
        a.push(s.into());
    }
    for (on, flag) in [(args.rerun_stale, "--rerun-stale"), (args.move_aside, "--move-aside")] {
        if on {
            a.push(flag.into());
        }
    }
    a
}

/// The command line of the child process that runs `t` at `seed` alone: this command's flags,
/// narrowed to that run.
fn child_args(lock: &Path, args: &RunArgs, t: &Target, seed: u64) -> Vec<std::ffi::OsString> {
    let mut a = run_flags(lock, &args.suite, &args.out, args);
    for w in ["--target", &t.id, "--seed", &seed.to_string(), "--child"] {
        a.push(w.into());
    }
    a
}

/// Submits the `planned` runs that are not finished, running or queued as a Slurm job array,
/// and the job that renders the tables and the gate after it (`--dry-run`: writes the scripts only).
fn submit_to_slurm(lock: &Path, args: &RunArgs, plan: &Plan, planned: &[(&Target, ConfigRecord)], suite_dir: &Path) -> Result<Outcome> {
    let _lock = util::FolderLock::acquire(suite_dir, &format!("repro run {} --executor slurm", args.suite.display()))?;
    let build = BuildInfo::current();
    let subs = slurm::submissions(suite_dir)?;
    let squeue = slurm::task_states();
    let queued = slurm::latest_tasks(&subs, squeue.as_ref());
    let mut tasks = Vec::new();
    for (t, config) in planned {
        let label = t.run_label(config.seed);
        let stored = RunDir::new(&args.out, &plan.suite, t, config.seed).read().ok().flatten().filter(|r| r.config.keys.run == config.keys.run);
        let stale = stored.as_ref().and_then(|r| r.env.as_ref()).is_some_and(|e| e.is_stale(&build));
        let why_not = if stored.as_ref().is_some_and(|r| r.finished()) && !(stale && args.rerun_stale) {
            Some("finished earlier".to_owned())
        } else if stored.as_ref().and_then(|r| r.failure.as_ref()).is_some_and(|f| f.kind == FailureKind::Diverged) {
            Some("diverged earlier (a verdict; another train.lr or train.on_divergence is another run)".to_owned())
        } else if let Some(h) = util::FolderLock::holder(&results::run_lock(suite_dir, &t.id, config.seed)) {
            Some(format!("running now ({h})"))
        } else if let Some((job, Some(state))) = queued.get(&(t.id.clone(), config.seed)).filter(|(_, s)| s.as_deref().is_some_and(slurm::alive)) {
            Some(format!("already in Slurm's queue as job {job} ({})", state.to_lowercase()))
        } else {
            None
        };
        match why_not {
            Some(why) => eprintln!("  {label}: {why}; not submitted"),
            None => tasks.push(slurm::Task { target: t.id.clone(), seed: config.seed }),
        }
    }
    if tasks.is_empty() {
        eprintln!("nothing to submit: every selected run is finished, running or queued (`repro status {}`)", suite_dir.display());
        return Ok(Outcome::Success);
    }
    let text = |p: std::ffi::OsString| p.into_string().map_err(|p| anyhow!("{}: a path that is not UTF-8 cannot be written into an sbatch script", p.to_string_lossy()));
    let absolute = |p: &Path| std::path::absolute(p).with_context(|| format!("cannot make {} absolute", p.display()));
    let words = |v: Vec<std::ffi::OsString>| v.into_iter().map(text).collect::<Result<Vec<String>>>();
    let (lock_abs, suite_abs, out_abs) = (absolute(lock)?, absolute(&args.suite)?, absolute(&args.out)?);
    let mut task_args = words(run_flags(&lock_abs, &suite_abs, &out_abs, args))?;
    task_args.extend(["--isolation".into(), if args.isolation == Isolation::Process { "process" } else { "none" }.into(), "--array-task".into()]);
    let mut tables_args = words(run_flags(&lock_abs, &suite_abs, &out_abs, args))?;
    for id in &args.targets {
        tables_args.extend(["--target".into(), id.clone()]);
    }
    for s in &args.seeds {
        tables_args.extend(["--seed".into(), s.to_string()]);
    }
    tables_args.push("--tables-only".into());
    let inv = slurm::Invocation {
        // The binary the tasks run: this one, by its path (it must be reachable from the nodes).
        program: std::env::current_exe().context("cannot find the repro binary to name in the sbatch script")?,
        workdir: std::env::current_dir().context("cannot read the current folder")?,
        args: task_args,
        tables_args,
        gate_args: vec!["gate".into(), text(absolute(suite_dir)?.into_os_string())?],
    };
    let a = &args.slurm;
    let opts = slurm::Options {
        partition: a.partition.clone(),
        account: a.account.clone(),
        gpus_per_task: a.gpus_per_task,
        cpus_per_task: a.cpus_per_task,
        mem: a.mem.clone(),
        time: a.time.clone(),
        array_limit: a.array_limit,
        signal_grace: a.signal_grace,
        extra: a.sbatch_args.clone(),
    };
    let dir = suite_dir.join(slurm::DIR);
    let logs = absolute(&dir.join("logs"))?;
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let n = subs.len() + 1;
    let (script, after) = (dir.join(format!("array-{n}.sbatch")), dir.join(format!("tables-{n}.sbatch")));
    util::write_atomic(&script, slurm::array_script(&plan.suite, &tasks, &inv, &opts, &logs)?.as_bytes())?;
    util::write_atomic(&after, slurm::after_script(&plan.suite, &inv, &opts, &logs).as_bytes())?;
    let listed = tasks.iter().map(|t| format!("{} seed {}", t.target, t.seed)).collect::<Vec<_>>().join(", ");
    if a.dry_run {
        println!("{}", script.display());
        eprintln!(
            "wrote {} ({} runs: {listed}) and {}; not submitted (--dry-run). Submit them with
  id=$(sbatch --parsable {}) && sbatch --dependency=afterany:$id {}",
            script.display(),
            tasks.len(),
            after.display(),
            script.display(),
            after.display()
        );
        return Ok(Outcome::Success);
    }
    let array_job = slurm::sbatch(&script, &[])?;
    let mut sub =
        slurm::Submission { submitted: util::unix_now(), array_job: array_job.clone(), tables_job: String::new(), script: format!("{}/array-{n}.sbatch", slurm::DIR), tasks };
    let tables = slurm::sbatch(&after, &[format!("--dependency=afterany:{array_job}")]);
    if let Ok(id) = &tables {
        sub.tables_job = id.clone();
    }
    slurm::record(suite_dir, &sub)?;
    let tables_job = tables.with_context(|| format!("the runs were submitted as job array {array_job}, but the job for the tables after them was not: run `repro run {} --out {}` with the same flags once they end, or `repro report`", args.suite.display(), args.out.display()))?;
    println!("{array_job}");
    eprintln!(
        "submitted {} runs ({listed}) as Slurm job array {array_job}, and job {tables_job} for the tables and the gate after it; scripts in {}. `repro status {}` shows each run; the same command submits again only what is not done",
        sub.tasks.len(),
        dir.display(),
        suite_dir.display()
    );
    Ok(Outcome::Success)
}

/// The files a run keeps when only its evaluation protocol changed.
const TRAINING_FILES: [&str; 3] = ["checkpoint.json", train::checkpoint::TENSORS, "train_log.jsonl"];

/// Decides what to do with what `dir` already holds: skip a finished run of the same key (its
/// wording refreshed), resume one of the same training, move anything else aside (never delete).
/// Returns whether there is work to do.
fn prepare(config: &ConfigRecord, label: &str, dir: &RunDir, suite_dir: &Path, args: &RunArgs, build: &BuildInfo) -> Result<bool> {
    let t = &config.target;
    let mut existing = match dir.read() {
        Ok(r) => r,
        Err(problem) if args.move_aside => {
            let to = dir.move_aside(suite_dir, &[])?;
            eprintln!("  {label}: {problem}: moved to {} (--move-aside)", to.display());
            None
        }
        Err(problem) => bail!(
            "{problem}. Nothing was run for {label}: move it out of the way with `repro run --move-aside` (to {}/), remove it, or use another --out",
            suite_dir.join(results::SUPERSEDED).display()
        ),
    };
    if existing.is_none() {
        // A run made when the target had another number of seeds lives in the other layout.
        let other = RunDir::other_layout(&args.out, &config.suite, t, config.seed);
        if let Ok(Some(r)) = other.read() {
            if r.config.keys.train == config.keys.train && r.config.seed == config.seed {
                eprintln!("  {label}: moving its earlier run from {} to {}", other.0.display(), dir.0.display());
                other.relocate(dir)?;
                existing = dir.read().map_err(|p| anyhow!("{p}"))?;
            }
        }
    }
    match existing {
        Some(r) if r.config.keys.run == config.keys.run && r.failure.as_ref().is_some_and(|f| f.kind == FailureKind::Diverged) && !r.finished() => {
            // A verdict, not an accident: running it again would replay the same steps into the same NaN.
            let f = r.failure.as_ref().map(|f| f.error.clone()).unwrap_or_default();
            eprintln!("  {label}: {f} (recorded earlier; a run with another train.lr or train.on_divergence runs again)");
            return Ok(false);
        }
        Some(r) if r.config.keys.run == config.keys.run && r.finished() => {
            let stale = r.env.as_ref().filter(|e| e.is_stale(build)).map(|e| e.commit_label());
            match stale {
                Some(made_by) if args.rerun_stale => {
                    let to = dir.move_aside(suite_dir, &[])?;
                    eprintln!("  {label}: made by {made_by}, this build is {}: earlier run moved to {}; running again (--rerun-stale)", build.label(), to.display());
                }
                _ => {
                    if r.config != *config {
                        util::write_json(&dir.path("config.json"), config)?; // new wording or expected numbers
                    }
                    let by = stale.map(|c| format!(" by {c} (another build; --rerun-stale runs it again)")).unwrap_or_default();
                    eprintln!("  {label}: finished earlier{by} with the same configuration; skipping");
                    return Ok(false);
                }
            }
        }
        Some(r) if r.config.keys.train == config.keys.train => {
            let evaluated = r.finished() || r.failure.is_some() || dir.path("encoder.onnx").exists();
            if r.config.keys.run != config.keys.run && evaluated {
                let to = dir.move_aside(suite_dir, &TRAINING_FILES)?;
                eprintln!("  {label}: evaluation protocol changed; its training is kept, the earlier results moved to {}", to.display());
            }
        }
        Some(r) => {
            let to = dir.move_aside(suite_dir, &[])?;
            eprintln!(
                "  {label}: configuration changed since the last run (run {} → {}): the earlier run moved to {}; starting over",
                results::short(&r.config.keys.run),
                results::short(&config.keys.run),
                to.display()
            );
        }
        None => {}
    }
    dir.create()?;
    util::remove_stale_temp_files(&dir.0);
    let failure = dir.path("failure.json");
    if failure.exists() {
        std::fs::remove_file(&failure).with_context(|| format!("cannot remove {}", failure.display()))?;
    }
    util::write_json(&dir.path("config.json"), config)?;
    Ok(true)
}

/// Where runs train: the device, and why not CUDA when `--device auto` fell back to the CPU.
struct Placement {
    device: Device,
    note: Option<String>,
}

/// Runs one target at one seed to a finished record (or resumes / skips it).
#[allow(clippy::too_many_arguments)]
fn run_one(config: &ConfigRecord, label: &str, splits: &Splits, dir: &RunDir, suite_dir: &Path, at: &Placement, args: &RunArgs, build: &BuildInfo) -> Result<()> {
    if !prepare(config, label, dir, suite_dir, args, build)? {
        return Ok(());
    }
    let (t, seed, device) = (&config.target, config.seed, at.device);
    failure::inject(&t.id, false)?;
    machine::set_deterministic(t.train.deterministic)?;
    let precision = train::Precision::of(t, device);
    let started = Instant::now();
    let info = &splits.info;
    tch::manual_seed(util::derive_seed(seed, "init") as i64);
    let mut model = methods::Model::new(t, info.channels as i64, info.image_size, device)?;
    let norm = Normalize::new(&info.mean, &info.std, device);
    eprintln!("  {label}: {} on {} at {} px ({})", t.method.name(), t.dataset, info.image_size, t.backbone.label());
    let outcome = if t.method.trains() {
        let data = train::TrainData::new(t, seed, splits, device)?;
        Some(train::train(t, seed, precision, &mut model, &data, &norm, &dir.0, info.classes as i64)?)
    } else {
        None
    };

    // Export and parity on real test images.
    let meta = export::metadata(t.method.name(), info, &t.id);
    let onnx = export::encoder_onnx(&model.encoder, info.channels as i64, &meta)?;
    let sample = splits.test.slice(0..t.export.parity_images.min(splits.test.n));
    let x = norm.apply_u8(&train::to_tensor(&sample, device));
    let parity = export::parity::check(&model.encoder, &onnx, &x, t.export.parity_tolerance)?;
    let onnx_path = dir.path("encoder.onnx");
    util::write_atomic(&onnx_path, &onnx)?;
    eprintln!("  {label}: encoder.onnx written; parity on {} test images: max relative difference {:.2e}", parity.images, parity.rel_diff);

    // Evaluation through ONNX Runtime only (the probes' views are made here, on `device`).
    let eval_started = Instant::now();
    let mut enc = eval::session::Encoder::from_file(&onnx_path, true)?;
    let enc_provider = enc.provider;
    let pre = eval::Preprocess { mean: info.mean.clone(), std: info.std.clone() };
    let embed_batch = enc.batch_for(t.eval.batch_size);
    let emb = eval::embed_splits(&mut enc, &splits.train, &splits.test, &pre, embed_batch)?;
    let mut views = Views { enc: &mut enc, splits, pre: &pre, batch: embed_batch, device };
    let ev = eval::evaluate(&emb, &splits.train, &splits.test, info.classes, &t.eval, seed, &mut views)?;
    let eval_s = eval_started.elapsed().as_secs_f64();
    let probes: Vec<String> = ev.linear.iter().map(|p| format!("{:.2}%", p.outcome.test_top1)).collect();
    eprintln!("  {label}: k-NN {:.2}%  linear {}  (eval {eval_s:.0}s)", ev.knn_top1, probes.join(" / "));

    let mut metrics = BTreeMap::new();
    let pct = |value: f64, kind: MetricKind, protocol: serde_json::Value| Metric { value, higher_is_better: true, unit: "%".into(), kind, protocol: Some(protocol) };
    metrics.insert(ev.knn_metric.clone(), pct(ev.knn_top1, MetricKind::Eval, serde_json::json!({ "knn": t.eval.knn, "bank": "train split", "query": "test split" })));
    for p in &ev.linear {
        metrics.insert(p.metric.clone(), pct(p.outcome.test_top1, MetricKind::Eval, serde_json::to_value(&p.protocol)?));
    }
    let parity_protocol = serde_json::json!({ "images": parity.images, "tolerance": t.export.parity_tolerance });
    metrics.insert(
        "onnx_parity_rel_diff".into(),
        Metric { value: parity.rel_diff, higher_is_better: false, unit: "ratio".into(), kind: MetricKind::Parity, protocol: Some(parity_protocol) },
    );
    if let Some(o) = &outcome {
        metrics.insert("train_images_per_s".into(), Metric { value: o.images_per_s, higher_is_better: true, unit: "images/s".into(), kind: MetricKind::Speed, protocol: None });
        if let Some(m) = o.monitor_knn_top1 {
            let k = &t.eval.knn;
            let name = format!("monitor_knn_top1@k{}_t{}_cosine_hold{}_bank{}", k.k, k.temperature, t.data.monitor_holdout, t.data.monitor_bank);
            let protocol = serde_json::json!({ "k": k.k, "temperature": k.temperature, "distance": "cosine", "holdout": t.data.monitor_holdout, "bank": t.data.monitor_bank, "epoch": o.epochs });
            metrics.insert(name, pct(m, MetricKind::Monitor, protocol));
        }
    }
    let run_key = config.keys.run.clone();
    let env = EnvRecord {
        schema_version: results::SCHEMA_VERSION,
        run_key: run_key.clone(),
        machine: machine::record(),
        device: format!("{device:?}"),
        device_note: at.note.clone(),
        precision: precision.label().into(),
        deterministic: t.train.deterministic,
        eval_provider: enc_provider.into(),
        seed,
        train_s: outcome.as_ref().map_or(0.0, |o| o.train_s),
        eval_s,
        wall_s: started.elapsed().as_secs_f64(),
        train_images_per_s: outcome.as_ref().map_or(0.0, |o| o.images_per_s),
        train_images: outcome.as_ref().map_or(0, |o| o.train_images),
        onnx_parity_rel_diff: Some(parity.rel_diff),
        finished_at: chrono_now(),
        divergence_restarts: outcome.as_ref().map(|o| o.restarts.clone()).unwrap_or_default(),
    };
    util::write_json(&dir.path("env.json"), &env)?;
    util::write_json(&dir.path("metrics.json"), &MetricsRecord { schema_version: results::SCHEMA_VERSION, run_key, metrics })
}

/// The probes' image views for `repro run`: augmented training images and resized test images,
/// made with the training views' tensor code on the training device, embedded by ONNX Runtime.
struct Views<'a> {
    enc: &'a mut eval::session::Encoder,
    splits: &'a Splits,
    pre: &'a eval::Preprocess,
    batch: usize,
    device: Device,
}

impl Views<'_> {
    /// Embeds `n` images of `set`, each batch passed through `view` (floats in [0, 1], [B, C, H, W]).
    fn embed_viewed(&mut self, set: &data::ImageSet, n: usize, view: &dyn Fn(&tch::Tensor) -> Result<tch::Tensor>) -> Result<ndarray::Array2<f32>> {
        let (c, h, w, device) = (set.c, set.h, set.w, self.device);
        let l = set.image_len();
        eval::embed_with(self.enc, n, [c, h, w], self.pre, self.batch, &mut |start, count| {
            let px = eval::unit_pixels(&set.pixels[start * l..(start + count) * l]);
            let x = tch::Tensor::from_slice(&px).reshape([count as i64, c as i64, h as i64, w as i64]).to_device(device);
            let y = view(&x)?.to_device(Device::Cpu).contiguous();
            Vec::<f32>::try_from(y.flatten(0, -1)).map_err(|e| anyhow!("probe views: {e}"))
        })
    }
}

impl eval::ProbeViews for Views<'_> {
    fn augmented_train(&mut self, augment: &plan::ProbeAugment, n: usize, seed: u64) -> Result<ndarray::Array2<f32>> {
        tch::manual_seed(seed as i64);
        let views = augment.as_views();
        let splits = self.splits;
        self.embed_viewed(&splits.train, n, &|x| data::augment::random_view(x, &views, 0))
    }

    fn resized_test(&mut self, side: usize) -> Result<ndarray::Array2<f32>> {
        let splits = self.splits;
        if side < splits.test.h {
            bail!("test_resize {side} is smaller than the {} px images; the centre crop needs at least the image size", splits.test.h);
        }
        self.embed_viewed(&splits.test, splits.test.n, &|x| Ok(data::augment::resize_center_crop(x, side as i64)))
    }
}

/// Seconds since the Unix epoch, as text (no time-zone database needed).
fn chrono_now() -> String {
    let s = util::unix_now();
    format!("unix:{s}")
}

fn fetch(lock: &Path, names: &[String], force: bool, decode: bool) -> Result<Outcome> {
    let l = data::lock::Lock::load(lock)?;
    let cache = data::fetch::data_dir()?;
    let mut opts = FetchOptions::from_env();
    opts.force = force;
    for n in names {
        let fetched = if let Some((train, test)) = data::folder_source(&l, n, &cache)? {
            println!("{n}: reads the class folders {} and {} (nothing to download)", train.display(), test.display());
            None
        } else {
            let files = data::fetch::ensure_dataset(&l, n, &cache, &opts)?;
            for f in &files {
                println!("{n}: {} ok", f.display());
            }
            Some(files)
        };
        if decode {
            let entry = l.get(n)?;
            let s = data::load_from(&l, n, &opts, data::has_unlabeled(entry.format), fetched)?;
            let shape = |set: &data::ImageSet| format!("{}x{}x{}x{}", set.n, set.c, set.h, set.w);
            let mut line = format!("{n}: decoded train {}, test {}", shape(&s.train), shape(&s.test));
            if let Some(u) = &s.unlabeled {
                line.push_str(&format!(", unlabeled {}", shape(u)));
            }
            println!("{line} ({} classes)", s.info.classes);
        }
    }
    Ok(Outcome::Success)
}

/// Re-hashes cached files. Named datasets must be complete; with no names, every dataset in the
/// lock is checked and files never fetched are listed, not counted as failures. Datasets read from
/// extracted folders are reported with the folders' fingerprint (folders are not hashed).
fn verify(lock: &Path, names: &[String]) -> Result<Outcome> {
    let l = data::lock::Lock::load(lock)?;
    let cache = data::fetch::data_dir()?;
    let all = names.is_empty();
    let names: Vec<String> = if all { l.datasets.keys().cloned().collect() } else { names.to_vec() };
    let mut bad = 0;
    for n in &names {
        if let Some((train, test)) = data::folder_source(&l, n, &cache)? {
            for dir in [train, test] {
                println!("{n}: {}: class folders, {} (not hashed)", dir.display(), data::folder::fingerprint(&dir)?);
            }
            continue;
        }
        for r in data::fetch::verify_dataset(&l, n, &cache)? {
            println!("{n}: {r}");
            let missing = matches!(r.status, data::fetch::VerifyStatus::Missing { .. });
            if !r.is_ok() && !(all && missing) {
                bad += 1;
            }
        }
    }
    if bad > 0 {
        bail!("{bad} file(s) missing or not matching {}; run `repro fetch --force NAME` to fetch them again (manual data: see `repro fetch NAME`)", lock.display());
    }
    Ok(Outcome::Success)
}

fn export_checkpoint(lock: &Path, checkpoint: &Path, out: &Path) -> Result<Outcome> {
    let dir = checkpoint.parent().unwrap_or(Path::new("."));
    let run = RunDir(dir.to_owned())
        .read()
        .map_err(|p| anyhow!("{p}"))?
        .ok_or_else(|| anyhow!("export needs the config.json that `repro run` writes beside {}", checkpoint.display()))?;
    let t = &run.config.target;
    let mut info = data::lock::Lock::load(lock)?.info(&t.dataset)?;
    if let Some(size) = t.data.image_size {
        info.image_size = size;
    }
    let mut model = methods::Model::new(t, info.channels as i64, info.image_size, Device::Cpu)?;
    train::checkpoint::load_model(checkpoint, &mut model)?;
    let onnx = export::encoder_onnx(&model.encoder, info.channels as i64, &export::metadata(t.method.name(), &info, &t.id))?;
    tch::manual_seed(0);
    let s = info.image_size as i64;
    let x = tch::Tensor::randn([4, info.channels as i64, s, s], tch::kind::FLOAT_CPU);
    let parity = export::parity::check(&model.encoder, &onnx, &x, t.export.parity_tolerance)?;
    util::write_atomic(out, &onnx)?;
    println!("{} written (parity on 4 random inputs: relative difference {:.2e})", out.display(), parity.rel_diff);
    Ok(Outcome::Success)
}

fn eval_file(lock: &Path, a: &EvalArgs) -> Result<Outcome> {
    let splits = data::load(lock, &a.dataset, &FetchOptions::from_env(), false)?;
    let mut enc = eval::session::Encoder::from_file(&a.model, true)?;
    let pre = eval::Preprocess::from_metadata(&enc, &splits.info.mean, &splits.info.std)?;
    let emb = eval::embed_splits(&mut enc, &splits.train, &splits.test, &pre, a.batch_size)?;
    if let Some(dir) = &a.save_embeddings {
        eval::save_embeddings(dir, &emb, &splits.train, &splits.test)?;
        eprintln!("embeddings and labels written to {}", dir.display());
    }
    let protocol = plan::Eval {
        batch_size: a.batch_size,
        knn: plan::Knn {
            k: a.knn_k,
            temperature: a.knn_temperature,
            distance: match a.knn_distance {
                DistanceArg::Cosine => plan::Distance::Cosine,
                DistanceArg::Euclidean => plan::Distance::Euclidean,
            },
            bank_subset: a.knn_bank_subset,
        },
        linear: plan::Linear {
            epochs: a.linear_epochs,
            batch_size: a.linear_batch_size,
            lr: a.linear_lr,
            schedule: match a.linear_schedule {
                ScheduleArg::CosinePerStep => plan::ProbeSchedule::CosinePerStep,
                ScheduleArg::CosinePerEpoch => plan::ProbeSchedule::CosinePerEpoch,
            },
            min_lr: a.linear_min_lr,
            momentum: a.linear_momentum,
            weight_decay: a.linear_weight_decay,
            standardize: a.linear_standardize,
            augment: None,
            test_resize: None,
            train_subset: a.linear_train_subset,
            batchnorm: false,
            lars_eta: None,
            warmup_epochs: 0.0,
            init_std: 0.0,
        },
        extra_linear: Vec::new(),
    };
    let ev = eval::evaluate(&emb, &splits.train, &splits.test, splits.info.classes, &protocol, a.seed, &mut eval::NoViews)?;
    let probe = &ev.linear[0];
    if a.json {
        let out = serde_json::json!({
            "model": a.model, "dataset": a.dataset, "preprocess": pre, "protocol": protocol,
            "metrics": { ev.knn_metric.clone(): ev.knn_top1, probe.metric.clone(): probe.outcome.test_top1 },
            "embedding_dim": ev.embedding_dim, "embed_s": ev.embed_s,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{}: {} = {:.2}  {} = {:.2}  (D = {})", a.model.display(), ev.knn_metric, ev.knn_top1, probe.metric, probe.outcome.test_top1, ev.embedding_dim);
    }
    Ok(Outcome::Success)
}

/// Reads an N×D .npy of float32 or float64 as float64.
fn read_matrix(path: &Path) -> Result<ndarray::Array2<f64>> {
    if let Ok(a) = ndarray_npy::read_npy::<_, ndarray::Array2<f32>>(path) {
        return Ok(a.mapv(f64::from));
    }
    ndarray_npy::read_npy::<_, ndarray::Array2<f64>>(path).map_err(|e| anyhow!("{}: expected a float32 or float64 .npy of shape N×D: {e}", path.display()))
}

/// Evaluates one method's objective on given embeddings and prints it as JSON. Unless `--set`
/// changes them, the hyper-parameters are the official codes' values (each method's
/// `plan::methods` defaults, or its `repro loss` arguments in `methods::<name>`).
fn loss(a: &LossArgs) -> Result<Outcome> {
    let z1 = read_matrix(&a.z1)?;
    let z2 = a.z2.as_deref().map(read_matrix).transpose()?;
    let to_tensor = |z: &ndarray::Array2<f64>| {
        let (n, d) = z.dim();
        tch::Tensor::from_slice(z.as_standard_layout().as_slice().unwrap_or(&[])).reshape([n as i64, d as i64])
    };
    let files = match &a.z2 {
        Some(z2) => format!("({} and {})", a.z1.display(), z2.display()),
        None => format!("({})", a.z1.display()),
    };
    let z2 = z2.as_ref().map(to_tensor);
    let (out, params) = crate::methods::loss_on(&a.method, &a.set, &to_tensor(&z1), z2.as_ref(), &files)?;
    let v = |t: &tch::Tensor| t.double_value(&[]);
    let terms: serde_json::Map<String, serde_json::Value> = out.terms.iter().map(|(k, t)| ((*k).to_owned(), v(t).into())).collect();
    let json = serde_json::json!({ "method": a.method, "loss": v(&out.total), "terms": terms, "params": params });
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(Outcome::Success)
}
