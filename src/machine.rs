//! What this machine offers repro, read once at start-up: libtorch's CUDA backend (registered by
//! loading `libtorch_cuda.so`; see ../shared/reference/toolchain.md) and, when it is absent, why;
//! ONNX Runtime and its execution providers; threads and CPU features; and the libtorch switches a
//! run sets (cuDNN benchmark mode, deterministic algorithms). `repro env` prints it; every
//! `env.json` records it.

use std::sync::OnceLock;

use anyhow::{bail, Result};

use crate::results::{BuildInfo, MachineRecord};

/// libtorch's CUDA backend as this process sees it.
#[derive(Debug, Clone)]
pub struct Cuda {
    pub devices: i64,
    pub cudnn: bool,
    /// Why CUDA is not available (None when it is).
    pub absent: Option<String>,
}

static CUDA: OnceLock<Cuda> = OnceLock::new();

/// Loads libtorch's CUDA backend once and says whether it found a GPU, or why not.
pub fn cuda() -> &'static Cuda {
    CUDA.get_or_init(|| {
        // SAFETY: loading libtorch_cuda only runs its static initialisers, which register CUDA kernels.
        match unsafe { libloading::Library::new("libtorch_cuda.so") } {
            Err(e) => Cuda { devices: 0, cudnn: false, absent: Some(load_failure(&e.to_string())) },
            Ok(lib) => {
                std::mem::forget(lib);
                let devices = tch::Cuda::device_count();
                let absent = (!tch::Cuda::is_available()).then(|| {
                    "libtorch's CUDA backend is loaded but finds no GPU: no NVIDIA driver, or no device visible (check `nvidia-smi` and CUDA_VISIBLE_DEVICES)".to_owned()
                });
                Cuda { devices, cudnn: tch::Cuda::cudnn_is_available(), absent }
            }
        }
    })
}

/// The reason for a failed `dlopen("libtorch_cuda.so")`, with what to do about it.
fn load_failure(err: &str) -> String {
    let missing = err.split(':').map(str::trim).find(|part| part.starts_with("lib") && part.contains(".so")).filter(|lib| !lib.starts_with("libtorch_cuda"));
    match missing {
        Some(lib) => format!(
            "libtorch_cuda.so cannot load: {lib} is missing (the lean CPU set-up installs no CUDA libraries). On a GPU machine run `REPRO_CUDA=1 bash scripts/setup`, or put a CUDA PyTorch's torch/lib on LD_LIBRARY_PATH"
        ),
        None => format!("libtorch_cuda.so cannot load ({err}); with a CUDA PyTorch, put its torch/lib on LD_LIBRARY_PATH"),
    }
}

/// The device `--device` asks for; with `auto` and no GPU, the CPU and the reason. Evaluation may
/// then use ONNX Runtime's CUDA provider exactly when training uses CUDA.
pub fn select_device(arg: crate::cli::DeviceArg) -> Result<(tch::Device, Option<String>)> {
    let chosen = pick_device(arg)?;
    crate::eval::session::allow_cuda(chosen.0.is_cuda());
    Ok(chosen)
}

fn pick_device(arg: crate::cli::DeviceArg) -> Result<(tch::Device, Option<String>)> {
    use crate::cli::DeviceArg;
    let c = cuda();
    match (arg, &c.absent) {
        (DeviceArg::Cpu, _) => Ok((tch::Device::Cpu, None)),
        (DeviceArg::Auto | DeviceArg::Cuda, None) => Ok((tch::Device::Cuda(0), None)),
        (DeviceArg::Auto, Some(why)) => Ok((tch::Device::Cpu, Some(why.clone()))),
        (DeviceArg::Cuda, Some(why)) => bail!("--device cuda: {why}; or use --device auto or cpu"),
    }
}

/// Keeps freed tensor memory in the process for reuse. With glibc's defaults a tensor above the
/// (adaptive, at most 32 MiB) mmap threshold is a fresh `mmap`, and the heap top is trimmed back to
/// the kernel whenever twice that threshold is free, so each step pays page faults on zeroed pages
/// again. Here tensors up to 256 MiB come from the heap (32 MiB where glibc refuses more, as some
/// versions do) and up to 1 GiB of free heap is kept: on the 2-core test machine the batched views
/// ran 1.4× faster (the crop 2×). Setting either threshold stops glibc adapting both, so the trim
/// threshold is set only once an mmap threshold is; `MALLOC_MMAP_THRESHOLD_`,
/// `MALLOC_TRIM_THRESHOLD_` and `GLIBC_TUNABLES=glibc.malloc.…` in the environment are left as
/// they are. PyTorch's CPU tuning guide gets the same by preloading jemalloc or tcmalloc. Called at
/// start-up by the binary and the benches.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let set = |v: &str| std::env::var_os(v).is_some();
        if std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc.")) {
            return;
        }
        // SAFETY: mallopt only sets glibc malloc parameters.
        unsafe {
            let mmap = set("MALLOC_MMAP_THRESHOLD_") || libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20) == 1 || libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) == 1;
            if mmap && !set("MALLOC_TRIM_THRESHOLD_") {
                libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
            }
        }
    }
}

/// Sets libtorch's global switches for a run: cuDNN's benchmark mode (fastest kernels, chosen by
/// timing, not bit-repeatable) unless `deterministic`, and then deterministic algorithms and cuDNN.
/// libtorch's C API has only the benchmark switch; the others are `at::Context` methods, found in
/// `libtorch_cpu.so` by their (Itanium C++ ABI) symbols.
pub fn set_deterministic(deterministic: bool) -> Result<()> {
    tch::Cuda::cudnn_set_benchmark(!deterministic);
    type Global = unsafe extern "C" fn() -> *mut std::ffi::c_void;
    type SetBool = unsafe extern "C" fn(*mut std::ffi::c_void, bool);
    type SetAlgorithms = unsafe extern "C" fn(*mut std::ffi::c_void, bool, bool);
    type GetBool = unsafe extern "C" fn(*const std::ffi::c_void) -> bool;
    // SAFETY: these are the non-virtual at::Context methods of the libtorch this binary was built
    // against (tch 0.24 ↔ 2.11.0; on x86-64 and aarch64 Linux a member function takes `this` first),
    // called on the one global context.
    unsafe {
        let lib = libloading::Library::new("libtorch_cpu.so").map_err(|e| anyhow::anyhow!("libtorch_cpu.so: {e}"))?;
        let sym = |name: &[u8]| lib.get::<*const ()>(name).map(|s| *s).map_err(|e| anyhow::anyhow!("libtorch_cpu.so lacks {}: {e}", String::from_utf8_lossy(name)));
        let global: Global = std::mem::transmute(sym(b"_ZN2at13globalContextEv")?);
        let set_algorithms: SetAlgorithms = std::mem::transmute(sym(b"_ZN2at7Context26setDeterministicAlgorithmsEbb")?);
        let set_cudnn: SetBool = std::mem::transmute(sym(b"_ZN2at7Context21setDeterministicCuDNNEb")?);
        let get: GetBool = std::mem::transmute(sym(b"_ZNK2at7Context23deterministicAlgorithmsEv")?);
        let ctx = global();
        set_algorithms(ctx, deterministic, false);
        set_cudnn(ctx, deterministic);
        if get(ctx) != deterministic {
            bail!("libtorch did not take deterministic algorithms = {deterministic}");
        }
        std::mem::forget(lib);
    }
    if deterministic && std::env::var_os("CUBLAS_WORKSPACE_CONFIG").is_none() {
        // cuBLAS needs a fixed workspace for repeatable results (PyTorch's reproducibility notes).
        std::env::set_var("CUBLAS_WORKSPACE_CONFIG", ":4096:8");
    }
    Ok(())
}

/// The first GPU's name as `nvidia-smi` prints it (None without nvidia-smi or a GPU).
pub fn gpu_name() -> Option<String> {
    let out = std::process::Command::new("nvidia-smi").args(["--query-gpu=name", "--format=csv,noheader"]).output().ok()?;
    let name = String::from_utf8_lossy(&out.stdout).lines().next()?.trim().to_owned();
    (out.status.success() && !name.is_empty()).then_some(name)
}

/// The folder of the libtorch this process loaded (from /proc/self/maps: an `LD_LIBRARY_PATH`
/// pointing at another PyTorch's torch/lib wins over the build's RUNPATH).
pub fn libtorch_dir() -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let path = maps.lines().filter_map(|l| l.split_whitespace().nth(5)).find(|p| p.ends_with("/libtorch_cpu.so"))?;
    Some(std::path::Path::new(path).parent()?.display().to_string())
}

/// Everything `env.json` records about the machine and the build.
pub fn record() -> MachineRecord {
    let build = BuildInfo::current();
    let c = cuda();
    MachineRecord {
        repro_version: build.version,
        git_commit: build.git_commit,
        git_dirty: build.git_dirty,
        libtorch_version: Some(crate::TORCH_VERSION.into()),
        libtorch_dir: libtorch_dir(),
        cuda_devices: c.devices,
        cudnn: c.cudnn,
        gpu: if c.absent.is_none() { gpu_name() } else { None },
        cuda_absent: c.absent.clone(),
        onnxruntime_version: crate::eval::session::runtime_version(),
        onnxruntime_providers: crate::eval::session::providers(),
        threads: tch::get_num_threads(),
        cpu: crate::util::cpu_description(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_cuda_library_is_named_with_the_fix() {
        let why = load_failure("libcusparse.so.12: cannot open shared object file: No such file or directory");
        assert!(why.contains("libcusparse.so.12 is missing") && why.contains("REPRO_CUDA=1 bash scripts/setup"), "{why}");
        let why = load_failure("libtorch_cuda.so: cannot open shared object file: No such file or directory");
        assert!(why.contains("LD_LIBRARY_PATH") && !why.contains("is missing"), "{why}");
    }

    #[test]
    fn deterministic_algorithms_switch_on_and_off() {
        set_deterministic(true).unwrap();
        set_deterministic(false).unwrap();
        // On this machine (no GPU in CI) CUDA is absent, with a reason.
        if tch::Cuda::device_count() == 0 {
            assert!(cuda().absent.is_some());
        }
    }
}
