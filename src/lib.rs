//! repro: reproduce self-supervised-learning papers. Data flows one way, down this list:
//! suite → plan → data → nn/losses/methods → train → export → eval → results → verdict → report → gate.
//! `app` is the one orchestrator; `cli` the argument structs. See ../shared/ARCHITECTURE.md.

pub mod app;
pub mod bench;
pub mod cli;
pub mod data;
pub mod eval;
pub mod export;
pub mod gate;
pub mod losses;
pub mod machine;
pub mod methods;
pub mod nn;
pub mod plan;
pub mod report;
pub mod results;
pub mod suite;
pub mod train;
pub mod util;
pub mod verdict;

/// Serialises unit tests that draw from libtorch's one global generator, so a test that seeds it
/// is not disturbed by another test drawing numbers on a parallel thread.
#[cfg(test)]
pub(crate) fn rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The libtorch version this build pairs with (tch 0.24.0 ↔ PyTorch 2.11.0).
pub const TORCH_VERSION: &str = "2.11.0";

/// How a command that ran ended (errors are exit 2, via `anyhow::Error`).
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Success,
    /// A target failed or the gate found a regression: exit 1.
    Failed,
}
