//! What a failed run's `failure.json` says, and the process-wide panic policy. A run fails as
//! *diverged* (the first non-finite loss or gradient, from `train`), *out of memory* (CUDA, the
//! host allocator, or ONNX Runtime said so; the message names the batch sizes and what to try),
//! *crashed* (its process died: a signal or an exit without a record; written by the parent with
//! the child's last lines) or *failed* (any other error). A panic anywhere prints its message and
//! location; `main` then exits 1 inside a run's process and 2 elsewhere, never 101.
//!
//! `REPRO_TEST_FAULT=<target id>:<segfault|abort|panic>[_at_exit][,...]` makes that target's run
//! fail that way right after its folder is prepared, or with `_at_exit` as its process ends after
//! the run is recorded (`@main` instead of an id: the command itself, before it starts): the
//! tests' way to crash a run for real.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::executor::End;
use crate::plan::Target;
use crate::results::{ConfigRecord, FailureKind, FailureRecord};

/// The last panic's message and location (`src/x.rs:10:5: message`), for the failure record.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);
/// Whether this process is one run's child: a panic then fails that run (exit 1), not the command.
static IN_RUN_PROCESS: AtomicBool = AtomicBool::new(false);

/// Prints every panic as one line with its location (a backtrace too under `RUST_BACKTRACE`) and
/// remembers it for [`take_panic`].
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = payload_text(info.payload());
        let at = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column())).unwrap_or_else(|| "an unknown place".into());
        eprintln!("panic at {at}: {msg}");
        if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
            eprintln!("{}", std::backtrace::Backtrace::force_capture());
        }
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some(format!("{msg} (panic at {at})"));
        }
    }));
}

fn payload_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned())).unwrap_or_else(|| "a panic without a message".into())
}

/// The message and location of the panic just caught (its payload when the hook did not run).
pub fn take_panic(payload: &(dyn std::any::Any + Send)) -> String {
    LAST_PANIC.lock().ok().and_then(|mut l| l.take()).unwrap_or_else(|| payload_text(payload))
}

pub fn set_in_run_process() {
    IN_RUN_PROCESS.store(true, Ordering::Relaxed);
}

/// The exit status for a panic that reached `main`.
pub fn panic_exit_status() -> u8 {
    if IN_RUN_PROCESS.load(Ordering::Relaxed) {
        1
    } else {
        2
    }
}

/// Whether `text` is an out-of-memory report: libtorch's CUDA and CPU allocators, ONNX Runtime's
/// arena, or Rust's allocation failure.
pub fn is_out_of_memory(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    ["out of memory", "not enough memory", "can't allocate memory", "failed to allocate memory", "memory allocation of", "cannot allocate memory"].iter().any(|m| t.contains(m))
}

/// What to try when `t` ran out of memory.
fn memory_advice(t: &Target, device: &str) -> String {
    let bs = t.train.batch_size;
    let half = (bs / 2).max(1);
    format!(
        "out of memory on {device} at train.batch_size {bs} (eval.batch_size {}). Try `--set targets.{}.train.batch_size={half}` (with train.lr_scaling to keep the paper's rate), \
         train.precision auto (bf16 autocast) on CUDA, a smaller eval.batch_size, or a device with more memory; `repro plan` estimates what a target needs",
        t.eval.batch_size, t.id
    )
}

/// The record of a run that ended with `err` (an error, or a panic's text) on `device`.
pub fn from_error(config: &ConfigRecord, err: &anyhow::Error, device: &str) -> FailureRecord {
    // libtorch appends its C++ stack ("frame #0: ...") to its errors: not for people.
    let full = format!("{err:#}");
    // (A panic's text holds it escaped: `...Error code 12\nframe #0: ...`.)
    let full = full.split("\\nframe #").next().unwrap_or_default();
    let text = full.lines().filter(|l| !l.trim_start().starts_with("frame #")).collect::<Vec<_>>().join("\n").trim_end().to_owned();
    if let Some(d) = err.downcast_ref::<crate::train::Diverged>() {
        let mut r = FailureRecord::new(&config.keys.run, FailureKind::Diverged, text);
        r.divergence = Some(d.0.clone());
        return r;
    }
    if is_out_of_memory(&text) {
        return FailureRecord::new(&config.keys.run, FailureKind::OutOfMemory, format!("{}: {text}", memory_advice(&config.target, device)));
    }
    FailureRecord::new(&config.keys.run, FailureKind::Error, text)
}

/// The record of a run whose process ended (`end`) without writing one; `tail` is its last lines.
pub fn from_crash(config: &ConfigRecord, end: &End, tail: Vec<String>, device: &str) -> FailureRecord {
    let said = tail.iter().rev().find(|l| l.starts_with("error:") || l.starts_with("panic at")).cloned();
    let oom = tail.iter().any(|l| is_out_of_memory(l));
    let mut error = match end {
        End::Signaled(s) if *s == libc::SIGKILL => format!(
            "the run's process was {}: if nobody killed it, the kernel's out-of-memory killer did (`dmesg` or `journalctl -k` says so); {}",
            end.describe(),
            memory_advice(&config.target, device)
        ),
        _ if oom => format!("the run's process was {}: {}", end.describe(), memory_advice(&config.target, device)),
        End::Signaled(_) => format!("the run's process was {} (a crash in libtorch, ONNX Runtime or repro; its last lines are in log_tail)", end.describe()),
        _ => format!("the run's process ended with {} without a record", end.describe()),
    };
    if let Some(s) = said {
        error += &format!(": {s}");
    }
    // A SIGKILL is only probably the OOM killer: it stays `crashed`, its message says the rest.
    let kind = match end {
        _ if oom => FailureKind::OutOfMemory,
        End::Signaled(_) => FailureKind::Crashed,
        _ => FailureKind::Error,
    };
    let mut r = FailureRecord::new(&config.keys.run, kind, error);
    r.exit = Some(end.describe());
    r.log_tail = tail;
    r
}

/// `REPRO_TEST_FAULT`: fails `target`'s run as asked (see the module header), at its start or,
/// `at_exit`, as its process ends.
pub fn inject(target: &str, at_exit: bool) -> anyhow::Result<()> {
    let Ok(spec) = std::env::var("REPRO_TEST_FAULT") else { return Ok(()) };
    for one in spec.split(',') {
        let Some((id, how)) = one.split_once(':') else { anyhow::bail!("REPRO_TEST_FAULT={spec:?}: expected TARGET:segfault|abort|panic[_at_exit][,...]") };
        let (how, late) = how.strip_suffix("_at_exit").map_or((how, false), |h| (h, true));
        if id != target || late != at_exit {
            continue;
        }
        eprintln!("REPRO_TEST_FAULT: {how} in {target}");
        match how {
            // SAFETY: raising a signal at ourselves; the default action ends the process.
            // (Rust's own SIGSEGV handler, for stack overflows, would return from a raised one.)
            "segfault" => unsafe {
                libc::signal(libc::SIGSEGV, libc::SIG_DFL);
                libc::raise(libc::SIGSEGV);
            },
            "abort" => std::process::abort(),
            "panic" => panic!("REPRO_TEST_FAULT asked for a panic in {target}"),
            other => anyhow::bail!("REPRO_TEST_FAULT: unknown fault {other:?}; expected segfault, abort or panic"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_memory_messages_are_recognised() {
        // The allocators' own words (PyTorch c10/cuda/CUDACachingAllocator.cpp, c10/core/impl/alloc_cpu.cpp,
        // onnxruntime/core/framework/bfc_arena.cc, Rust's alloc::alloc::handle_alloc_error).
        for m in [
            "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.15 GiB total capacity)",
            "DefaultCPUAllocator: not enough memory: you tried to allocate 4398046511104 bytes.",
            "Failed to allocate memory for requested buffer of size 123",
            "memory allocation of 1099511627776 bytes failed",
        ] {
            assert!(is_out_of_memory(m), "{m}");
        }
        assert!(!is_out_of_memory("the loss became NaN"));
    }
}
