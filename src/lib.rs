//! repro: reproduce self-supervised-learning papers. Data flows one way, down this list:
//! suite → plan → data → nn/losses/methods → train → export → eval → results → verdict → report → gate.
//! `app` is the one orchestrator; `cli` the argument structs. Suites, plans, records, verdicts,
//! reports and the gate live in `repro-lite` (crates/lite, no libtorch) and are re-exported here.
//! See ../shared/ARCHITECTURE.md.

pub mod app;
pub mod bench;
pub mod cli;
pub mod data;
pub mod estimate;
pub mod eval;
pub mod executor;
pub mod export;
pub mod failure;
pub mod losses;
pub mod machine;
pub mod methods;
pub mod nn;
pub mod train;

pub use repro_lite::{gate, plan, report, results, slurm, status, suite, util, validate, verdict, Outcome};

/// Serialises unit tests that draw from libtorch's one global generator, so a test that seeds it
/// is not disturbed by another test drawing numbers on a parallel thread.
#[cfg(test)]
pub(crate) fn rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The libtorch version this build pairs with (tch 0.24.0 ↔ PyTorch 2.11.0).
pub const TORCH_VERSION: &str = "2.11.0";
