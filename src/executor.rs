//! The local executor's isolation: one run in a child process (this binary, `repro run --child` for
//! one target and seed), so that a segfault, an abort or the kernel's out-of-memory kill ends that
//! run alone and its device memory is freed before the next. The child's stderr is passed through
//! line by line and its last lines kept for the failure record; the child dies with its parent
//! (`PR_SET_PDEATHSIG`), so a killed `repro run` never leaves a run writing behind a rerun's back.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

/// Lines of the child's output kept for its failure record.
pub const TAIL_LINES: usize = 30;

/// How a child ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Exit status 0: the run finished (or was skipped as finished).
    Finished,
    /// Any other exit status (1: the run failed and recorded why).
    Exited(i32),
    /// Killed by a signal.
    Signaled(i32),
}

impl End {
    /// `exit status 2`, `killed by signal 11 (SIGSEGV)`.
    pub fn describe(&self) -> String {
        match self {
            End::Finished => "exit status 0".into(),
            End::Exited(c) => format!("exit status {c}"),
            End::Signaled(s) => format!("killed by signal {s} ({})", signal_name(*s)),
        }
    }

    /// A signal a person (Ctrl-C, `kill`, a scheduler) sends to stop work, not a crash of the run.
    pub fn interrupted(&self) -> bool {
        matches!(self, End::Signaled(s) if [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT].contains(s))
    }
}

/// The conventional name of a signal number.
pub fn signal_name(s: i32) -> &'static str {
    match s {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        _ => "unknown signal",
    }
}

/// Runs this binary with `args` (global flags and `run ... --child`), passing its stderr through;
/// returns how it ended and its last [`TAIL_LINES`] lines of stderr. An error means the process
/// could not be started (or waited for).
pub fn run_child(args: &[OsString]) -> Result<(End, Vec<String>)> {
    // This very binary, even when a rebuild has replaced or removed its file since it started.
    let exe = std::path::PathBuf::from("/proc/self/exe");
    let exe = if exe.exists() { exe } else { std::env::current_exe().context("cannot find the repro binary to start a run's process")? };
    let parent = std::process::id() as libc::pid_t;
    let mut cmd = Command::new(&exe);
    cmd.arg0("repro").args(args).stdin(Stdio::null()).stdout(Stdio::inherit()).stderr(Stdio::piped());
    // SAFETY: between fork and exec the closure calls only async-signal-safe functions (prctl,
    // getppid) and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().with_context(|| format!("cannot start {}", exe.display()))?;
    let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
    if let Some(err) = child.stderr.take() {
        let mut out = std::io::stderr();
        for line in BufReader::new(err).split(b'\n') {
            let Ok(line) = line else { break };
            let _ = out.write_all(&line);
            let _ = out.write_all(b"\n");
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(String::from_utf8_lossy(&line).trim_end().to_owned());
        }
    }
    let status = child.wait().context("cannot wait for a run's process")?;
    let end = match (status.code(), status.signal()) {
        (Some(0), _) => End::Finished,
        (Some(c), _) => End::Exited(c),
        (None, Some(s)) => End::Signaled(s),
        (None, None) => End::Exited(-1),
    };
    Ok((end, tail.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_are_described_by_name() {
        assert_eq!(End::Signaled(11).describe(), "killed by signal 11 (SIGSEGV)");
        assert_eq!(End::Exited(2).describe(), "exit status 2");
        assert!(End::Signaled(libc::SIGTERM).interrupted());
        assert!(!End::Signaled(libc::SIGKILL).interrupted());
    }
}
