//! Build script: records the git commit of the workspace (and whether its sources differ from it)
//! for every env.json and report, so `repro` and `repro-lite` built from one checkout agree.
fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for f in [".git/HEAD", ".git/refs/heads", ".git/index", "src", "crates", "Cargo.toml", "Cargo.lock", "build.rs"] {
        let p = root.join(f);
        if p.exists() {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .current_dir(&root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    if let Some(commit) = git(&["rev-parse", "HEAD"]) {
        println!("cargo:rustc-env=REPRO_GIT_COMMIT={commit}");
        if let Some(changes) = git(&["status", "--porcelain", "--untracked-files=no", "--", "src", "crates", "Cargo.toml", "Cargo.lock", "build.rs"]) {
            println!("cargo:rustc-env=REPRO_GIT_DIRTY={}", !changes.is_empty());
        }
    }
}
