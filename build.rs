//! Build script: bakes libtorch's directory into the binary's RUNPATH (torch-sys's own rpath never
//! reaches the final link; see ../shared/reference/toolchain.md) and generates the ONNX protobuf
//! types. The git commit for env.json is recorded by crates/lite's build script (`BuildInfo`).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    println!("cargo:rerun-if-changed=src/export/onnx.proto");
    let mut cfg = prost_build::Config::new();
    cfg.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    cfg.compile_protos(&["src/export/onnx.proto"], &["src/export"])?;
    Ok(())
}
