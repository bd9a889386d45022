//! The light binary on the committed smoke baseline (ci/baseline/smoke, real records of a
//! `repro run suites/smoke.yaml`): it links neither libtorch nor ONNX Runtime and runs with an
//! empty environment; it validates the shipped suites, renders reports in every format with plots,
//! and gates (a copy of the baseline with one target's accuracy lowered by 10 points fails).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `repro-lite` with a bare environment (no LD_LIBRARY_PATH, no LIBTORCH, no ORT_DYLIB_PATH).
fn lite(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_repro-lite")).args(args).current_dir(cwd).env_clear().env("PATH", "/usr/bin:/bin").output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// Its dependency graph holds neither tch/torch-sys nor ort, so it builds where neither library is.
#[test]
fn depends_on_no_libtorch_or_onnx_runtime() {
    let o = Command::new(env!("CARGO")).args(["tree", "-p", "repro-lite", "--edges", "normal,build", "--prefix", "none", "--offline"]).current_dir(root()).output().unwrap();
    let tree = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && tree.starts_with("repro-lite "), "{tree}{}", String::from_utf8_lossy(&o.stderr));
    let heavy: Vec<&str> = tree.lines().filter(|l| ["tch ", "torch-sys ", "ort ", "ort-sys "].iter().any(|p| l.starts_with(p))).collect();
    assert!(heavy.is_empty(), "{heavy:?}");
}

#[test]
fn links_no_libtorch_or_onnx_runtime() {
    let o = Command::new("ldd").arg(env!("CARGO_BIN_EXE_repro-lite")).output().unwrap();
    let libs = String::from_utf8_lossy(&o.stdout);
    assert!(!libs.contains("torch") && !libs.contains("onnxruntime") && !libs.contains("not found"), "{libs}");
}

#[test]
fn validates_reports_and_gates_without_libtorch() {
    let root = root();
    let o = lite(&["validate", "suites/quickstart.yaml", "suites/cifar10.yaml", "suites/imagenet100.yaml"], &root);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("suites/cifar10.yaml: ok"), "{}", text(&o));
    let o = lite(&["validate", "suites/quickstart.yaml", "--set", "train.epochs=-1"], &root);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    // One suite: its target table; --layout grid: methods × metrics; LaTeX is always the grid.
    let o = lite(&["report", "ci/baseline/smoke"], &root);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("corinfomax") && text(&o).contains("3/3"), "{}", text(&o));
    let o = lite(&["report", "ci/baseline", "--layout", "grid", "--format", "md"], &root);
    let md = text(&o);
    assert!(o.status.success() && md.contains("| method ") && md.contains("k-NN top-1") && md.contains("barlow_twins"), "{md}");
    let o = lite(&["report", "ci/baseline", "--format", "latex"], &root);
    assert!(o.status.success() && text(&o).contains("\\toprule") && text(&o).contains("\\textbf{"), "{}", text(&o));
    for f in ["csv", "json", "terminal"] {
        let o = lite(&["report", "ci/baseline/smoke", "--layout", "grid", "--format", f], &root);
        assert!(o.status.success() && !o.stdout.is_empty(), "{f}: {}", text(&o));
    }
    // --out: the report and its plots (SVG and PNG), linked from the Markdown.
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("report.md");
    let o = lite(&["report", "ci/baseline/smoke", "--format", "md", "--out", file.to_str().unwrap()], &root);
    assert!(o.status.success(), "{}", text(&o));
    let md = std::fs::read_to_string(&file).unwrap();
    for plot in ["accuracy_smoke", "train_smoke_corinfomax", "train_smoke_amdim"] {
        assert!(md.contains(&format!("](plots/{plot}.svg)")), "{plot} not linked:\n{md}");
        let svg = std::fs::read_to_string(out.path().join(format!("plots/{plot}.svg"))).unwrap();
        assert!(svg.starts_with("<svg"), "{plot}");
        let png = std::fs::read(out.path().join(format!("plots/{plot}.png"))).unwrap();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{plot}: {} bytes", png.len());
    }

    // The gate: the baseline against itself passes, every target covered.
    let o = lite(&["gate", "ci/baseline/smoke", "--baseline", "ci/baseline/smoke", "--require-baseline"], &root);
    assert!(o.status.success() && text(&o).contains("0 failure(s)"), "{}", text(&o));
    // A copy with simclr's k-NN 10 points lower at every seed fails on it (exit 1).
    let worse = out.path().join("worse/smoke");
    copy_dir(&root.join("ci/baseline/smoke"), &worse);
    for seed in 0..3 {
        let p = worse.join(format!("simclr/seed-{seed}/metrics.json"));
        let mut m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        let knn = m["metrics"]["knn_top1@k20_t0.07_cosine_bankall"]["value"].as_f64().unwrap();
        m["metrics"]["knn_top1@k20_t0.07_cosine_bankall"]["value"] = serde_json::json!(knn - 10.0);
        std::fs::write(&p, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    }
    let o = lite(&["gate", worse.to_str().unwrap(), "--baseline", "ci/baseline/smoke", "--require-baseline"], &root);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    let failed: Vec<&str> = t.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(failed.len() == 1 && failed[0].contains("simclr: knn_top1@k20_t0.07_cosine_bankall"), "{t}");
    // --require-baseline without a baseline is a usage error.
    let o = lite(&["gate", "ci/baseline/smoke", "--require-baseline"], &root);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}
