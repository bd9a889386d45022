//! Build script: bakes libtorch's directory into the binary's RUNPATH (torch-sys's own rpath never
//! reaches the final link; see ../shared/reference/toolchain.md), generates the ONNX protobuf types
//! and records the git commit (and whether the sources differ from it) for env.json.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    println!("cargo:rerun-if-changed=src/export/onnx.proto");
    // The commit recorded in every env.json, and whether the sources the binary is built from differ
    // from it; rebuilt when HEAD, the branch, the index or any source file changes.
    for f in [".git/HEAD", ".git/refs/heads", ".git/index", "src", "Cargo.toml", "Cargo.lock", "build.rs"] {
        if std::path::Path::new(f).exists() {
            println!("cargo:rerun-if-changed={f}");
        }
    }
    let git = |args: &[&str]| {
        std::process::Command::new("git").args(args).output().ok().filter(|o| o.status.success()).map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    if let Some(commit) = git(&["rev-parse", "HEAD"]) {
        println!("cargo:rustc-env=REPRO_GIT_COMMIT={commit}");
        if let Some(changes) = git(&["status", "--porcelain", "--untracked-files=no", "--", "src", "Cargo.toml", "Cargo.lock", "build.rs"]) {
            println!("cargo:rustc-env=REPRO_GIT_DIRTY={}", !changes.is_empty());
        }
    }
    let mut cfg = prost_build::Config::new();
    cfg.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    cfg.compile_protos(&["src/export/onnx.proto"], &["src/export"])?;
    Ok(())
}
