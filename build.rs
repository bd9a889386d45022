//! Build script: bakes libtorch's directory into the binary's RUNPATH (torch-sys's own rpath never
//! reaches the final link; see ../shared/reference/toolchain.md), generates the ONNX protobuf types
//! and records the git commit for env.json.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    println!("cargo:rerun-if-changed=src/export/onnx.proto");
    // The commit recorded in every env.json; rebuilt when HEAD or the branch it points to moves.
    for f in [".git/HEAD", ".git/refs/heads"] {
        if std::path::Path::new(f).exists() {
            println!("cargo:rerun-if-changed={f}");
        }
    }
    if let Ok(out) = std::process::Command::new("git").args(["rev-parse", "HEAD"]).output() {
        if out.status.success() {
            println!("cargo:rustc-env=REPRO_GIT_COMMIT={}", String::from_utf8_lossy(&out.stdout).trim());
        }
    }
    let mut cfg = prost_build::Config::new();
    cfg.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    cfg.compile_protos(&["src/export/onnx.proto"], &["src/export"])?;
    Ok(())
}
