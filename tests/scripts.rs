//! The shell scripts a user runs outside cargo: `scripts/gpu-check` stops at once, with exit 2 and
//! a message saying why, on a machine without an NVIDIA GPU (a GPU machine runs it for real; see
//! the README, "GPU and speed").

use std::process::Command;

#[test]
fn gpu_check_fails_clearly_without_a_gpu() {
    let has_gpu = Command::new("nvidia-smi").arg("-L").output().is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("GPU "));
    if has_gpu {
        eprintln!("an NVIDIA GPU is present: run scripts/gpu-check itself instead");
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().unwrap();
    let o = Command::new("bash").arg(root.join("scripts/gpu-check")).arg(out.path()).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("gpu-check: no NVIDIA GPU here"), "{err}");
    assert!(std::fs::read_dir(out.path()).unwrap().next().is_none(), "nothing written before the check fails");
}
