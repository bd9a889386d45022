//! The only file that imports `ort`: loads ONNX Runtime (dynamically, from `ORT_DYLIB_PATH` or the
//! path baked in at build time by `.cargo/config.toml`) and runs single-input encoders, whatever
//! their input and output names. Outputs of rank > 2 are flattened to [N, D].

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context, Result};
use ndarray::{Array2, ArrayView4};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{TensorRef, ValueType};

static ENV: OnceLock<std::result::Result<ort::environment::Environment, String>> = OnceLock::new();

/// Path of the ONNX Runtime shared library.
pub fn library_path() -> Option<String> {
    std::env::var("ORT_DYLIB_PATH").ok().or(option_env!("ORT_DYLIB_PATH").map(String::from))
}

fn environment() -> Result<&'static ort::environment::Environment> {
    ENV.get_or_init(|| {
        let path = library_path().ok_or("ORT_DYLIB_PATH is not set and no default was built in")?;
        if !Path::new(&path).exists() {
            return Err(format!("ONNX Runtime library {path} does not exist; run scripts/setup or set ORT_DYLIB_PATH"));
        }
        let builder = ort::init_from(&path).map_err(|e| format!("cannot load ONNX Runtime from {path}: {e}"))?;
        builder.with_name("repro").build().map_err(|e| format!("cannot start ONNX Runtime: {e}"))
    })
    .as_ref()
    .map_err(|e| anyhow!("{e}"))
}

/// ONNX Runtime's version (for env.json), read from the loaded library's versioned file name
/// (`libonnxruntime.so.1.31.1`), with its build info.
pub fn runtime_version() -> Option<String> {
    environment().ok()?;
    let path = std::fs::canonicalize(library_path()?).ok()?;
    let name = path.file_name()?.to_str()?;
    let version = name.split_once(".so.").map_or(name, |(_, v)| v);
    Some(format!("{version} ({})", ort::info()))
}

/// The execution providers the loaded ONNX Runtime library was built with (for env.json): the CPU
/// one always, CUDA with the `onnxruntime-gpu` library.
pub fn providers() -> Vec<String> {
    if environment().is_err() {
        return Vec::new();
    }
    let mut out = vec!["CPUExecutionProvider".to_owned()];
    if cuda_provider_built() {
        out.push("CUDAExecutionProvider".to_owned());
    }
    out
}

fn cuda_provider_built() -> bool {
    use ort::ep::ExecutionProvider;
    ort::ep::CUDA::is_available().unwrap_or(false)
}

/// Whether sessions may try the CUDA provider: set by the caller that knows a GPU is usable (this
/// module does not link libtorch to find out). With it and a library that has the provider, the
/// CUDA provider is tried; a failure to start it falls back to the CPU, said once.
static TRY_CUDA: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static PROVIDER_NOTE: OnceLock<()> = OnceLock::new();

/// Lets later sessions use ONNX Runtime's CUDA execution provider when the library has it.
pub fn allow_cuda(gpu_usable: bool) {
    TRY_CUDA.store(gpu_usable, std::sync::atomic::Ordering::Relaxed);
}

/// An encoder session: one float32 image input [N, C, H, W], one float32 output.
pub struct Encoder {
    session: Session,
    input: String,
    output: String,
    /// Input dims as declared (-1 for dynamic).
    pub input_dims: Vec<i64>,
    /// `metadata_props` of the model.
    pub metadata: BTreeMap<String, String>,
    /// `CUDAExecutionProvider` or `CPUExecutionProvider`.
    pub provider: &'static str,
}

impl Encoder {
    pub fn from_file(path: &Path, optimize: bool) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read ONNX file {}", path.display()))?;
        Self::from_bytes(&bytes, optimize).with_context(|| format!("loading {}", path.display()))
    }

    pub fn from_bytes(bytes: &[u8], optimize: bool) -> Result<Self> {
        let env = environment()?;
        let level = if optimize { GraphOptimizationLevel::Level3 } else { GraphOptimizationLevel::Disable };
        let builder = || -> Result<ort::session::builder::SessionBuilder> {
            Session::builder(env).map_err(|e| anyhow!("ONNX Runtime: {e}"))?.with_optimization_level(level).map_err(|e| anyhow!("ONNX Runtime: {e}"))
        };
        let mut provider = "CPUExecutionProvider";
        let mut b = builder()?;
        if TRY_CUDA.load(std::sync::atomic::Ordering::Relaxed) && cuda_provider_built() {
            match b.with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()]) {
                Ok(with_cuda) => {
                    b = with_cuda;
                    provider = "CUDAExecutionProvider";
                }
                Err(e) => {
                    PROVIDER_NOTE.get_or_init(|| eprintln!("ONNX Runtime's CUDA execution provider did not start ({e}); evaluating on the CPU"));
                    b = builder()?;
                }
            }
        }
        let session = b.commit_from_memory(bytes).map_err(|e| anyhow!("ONNX Runtime cannot load the model: {e}"))?;
        if session.inputs().len() != 1 {
            let names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
            bail!("expected an encoder with exactly one input, found {} ({})", names.len(), names.join(", "));
        }
        let first = &session.inputs()[0];
        let input_dims = match first.dtype() {
            ValueType::Tensor { ty: ort::value::TensorElementType::Float32, shape, .. } => shape.iter().copied().collect::<Vec<i64>>(),
            other => bail!("input {:?} must be a float32 tensor, found {other:?}", first.name()),
        };
        if input_dims.len() != 4 {
            bail!("input {:?} must be [N, C, H, W], found rank {} ({input_dims:?})", first.name(), input_dims.len());
        }
        let input = first.name().to_owned();
        let output = session.outputs().first().map(|o| o.name().to_owned()).context("the model has no output")?;
        let mut metadata = BTreeMap::new();
        if let Ok(meta) = session.metadata() {
            for k in meta.custom_keys().unwrap_or_default() {
                if let Some(v) = meta.custom(&k) {
                    metadata.insert(k, v);
                }
            }
        }
        Ok(Self { session, input, output, input_dims, metadata, provider })
    }

    /// The images per call for a protocol that asks for `asked`: on the CUDA provider at least 1,024
    /// (a GPU is idle on small batches; BatchNorm runs on its running statistics, so the embeddings
    /// do not depend on the batch), else as asked.
    pub fn batch_for(&self, asked: usize) -> usize {
        if self.provider == "CUDAExecutionProvider" {
            asked.max(1024)
        } else {
            asked
        }
    }

    /// Runs one batch; returns [N, D] (trailing dims flattened).
    pub fn run(&mut self, x: ArrayView4<f32>) -> Result<Array2<f32>> {
        let n = x.shape()[0];
        let x = x.as_standard_layout();
        let tensor = TensorRef::from_array_view(x.view()).map_err(|e| anyhow!("ONNX Runtime input: {e}"))?;
        let outputs = self
            .session
            .run(ort::inputs![self.input.as_str() => tensor])
            .map_err(|e| anyhow!("ONNX Runtime failed on a batch of {n}: {e}"))?;
        let (shape, data) = outputs[self.output.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(|e| anyhow!("output {:?} is not a float32 tensor: {e}", self.output))?;
        let dims: Vec<i64> = shape.iter().copied().collect();
        if dims.first() != Some(&(n as i64)) {
            bail!("output {:?} has shape {dims:?}; expected the batch size {n} first", self.output);
        }
        let d = data.len() / n.max(1);
        Array2::from_shape_vec((n, d), data.to_vec()).map_err(|e| anyhow!("output reshape: {e}"))
    }
}
