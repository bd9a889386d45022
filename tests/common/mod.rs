//! Shared helpers for the integration tests: run the real `repro` binary in a temp folder with its
//! own data cache, against Fashion-MNIST from Debian's `dataset-fashion-mnist` package (installed by
//! scripts/setup) pinned by the sha256 of its decompressed members, as datasets.lock does.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const DEBIAN_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// (file, decompressed size, decompressed sha256) from ../shared/reference/datasets.md.
pub const MEMBERS: [(&str, u64, &str); 4] = [
    ("train-images-idx3-ubyte.gz", 47040016, "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    ("train-labels-idx1-ubyte.gz", 60008, "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    ("t10k-images-idx3-ubyte.gz", 7840016, "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    ("t10k-labels-idx1-ubyte.gz", 10008, "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
];

pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("temp dir") }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    /// Runs `repro` with this sandbox as working directory and data cache.
    pub fn repro(&self, args: &[&str]) -> Output {
        self.repro_env(args, &[])
    }

    pub fn repro_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_repro"));
        cmd.current_dir(self.dir.path()).env("REPRO_DATA_DIR", self.path("cache")).env_remove("REPRO_MIRROR").args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run repro")
    }

    /// A lock whose fashion_mnist files come from `source_dir` (a file:// folder or http URL base).
    pub fn lock_with_sources(&self, name: &str, source_base: &str) -> PathBuf {
        self.write(name, &fashion_lock(source_base))
    }
}

/// datasets.lock text for fashion_mnist with the Debian files accepted by their member hashes.
pub fn fashion_lock(source_base: &str) -> String {
    let mut s = String::from("version: 2\ndatasets:\n  fashion_mnist:\n    description: Fashion-MNIST (test copy)\n    homepage: https://github.com/zalandoresearch/fashion-mnist\n    license: MIT\n    format: idx\n    classes: 10\n    image_size: 28\n    mean: [0.2860]\n    std: [0.3530]\n    instructions: \"apt-get install dataset-fashion-mnist\"\n    files:\n");
    let upstream: [(u64, &str); 4] = [
        (26421880, "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
        (29515, "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
        (4422102, "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
        (5148, "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
    ];
    for ((file, msize, msha), (size, sha)) in MEMBERS.iter().zip(upstream) {
        s += &format!(
            "      - name: {file}\n        size: {size}\n        sha256: {sha}\n        decompressed: {{size: {msize}, sha256: {msha}}}\n        sources:\n          - {source_base}/{file}\n"
        );
    }
    s
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn assert_exit(o: &Output, code: i32) {
    assert_eq!(o.status.code(), Some(code), "stdout:\n{}\nstderr:\n{}", stdout(o), stderr(o));
}

/// Every file below `dir`, relative paths, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(root: &Path, d: &Path, out: &mut Vec<String>) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(root, &p, out);
                } else {
                    out.push(p.strip_prefix(root).unwrap_or(&p).display().to_string());
                }
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A small but complete suite: width-2 ResNet-18, one epoch on 1024 images, short probe.
pub fn tiny_suite(epochs: usize) -> String {
    format!(
        "suite: tiny\nversion: 1\ndefaults:\n  dataset: fashion_mnist\n  backbone: {{arch: resnet18, width: 2, zero_init_residual: false, stem: cifar}}\n  data: {{train_subset: 1024, monitor_holdout: 200, monitor_bank: 1000}}\n  augment: {{crop_scale: [0.3, 1.0], crop_ratio: [0.75, 1.3333], hflip: 0.5, interpolation: bilinear}}\n  train: {{epochs: {epochs}, batch_size: 128, seeds: [0], lr: 0.1, optimizer: {{name: sgd, momentum: 0.9}}, schedule: {{name: warmup_cosine}}, weight_decay: 1.0e-4, warmup_epochs: 0.5, min_lr: 0.0}}\n  eval:\n    batch_size: 1000\n    knn: {{k: 20, temperature: 0.07, distance: cosine}}\n    linear: {{epochs: 5, batch_size: 256, lr: 0.5, schedule: cosine_per_step, min_lr: 0.0, momentum: 0.9, weight_decay: 0.0, standardize: true, train_subset: 10000}}\n  export: {{parity_tolerance: 1.0e-4, parity_images: 16}}\ntargets:\n  - id: cim\n    method: corinfomax\n    method_params: {{projector: [32, 16], alpha: 250, la_r: 0.01, la_mu: 0.01, r_ini: 1.0, eps: 1.0e-8, normalize: true}}\n  - id: floor\n    method: random_init\n"
    )
}

/// A real HTTP server on 127.0.0.1 serving the files of `root` at `/<relative path>` (bounded:
/// it stops when dropped). Returns the base URL.
pub struct FileServer {
    pub url: String,
    server: std::sync::Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FileServer {
    pub fn start(root: &Path) -> Self {
        let server = std::sync::Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind loopback"));
        let url = format!("http://{}", server.server_addr().to_ip().expect("ip address"));
        let (srv, root) = (server.clone(), root.to_owned());
        let thread = std::thread::spawn(move || {
            for rq in srv.incoming_requests() {
                let path = root.join(rq.url().trim_start_matches('/'));
                let _ = match std::fs::read(&path) {
                    Ok(bytes) => rq.respond(tiny_http::Response::from_data(bytes)),
                    Err(_) => rq.respond(tiny_http::Response::empty(404)),
                };
            }
        });
        Self { url, server, thread: Some(thread) }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// sha256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).expect("read")))
}

/// Decode facts of the test datasets: (classes, image_size, channels).
pub fn facts(format: &str) -> (usize, usize, usize) {
    match format {
        "cifar10_bin" => (10, 32, 3),
        "cifar100_bin" => (100, 32, 3),
        "stl10_bin" => (10, 96, 3),
        "tiny_imagenet_zip" => (200, 64, 3),
        _ => (10, 64, 3),
    }
}

/// The `datasets.lock` text of one dataset entry (decode facts, optional layout and files).
pub fn entry_text(dataset: &str, format: &str, classes: usize, image_size: usize, layout: &str, files: &[(&Path, &[&str])]) -> String {
    let mut s = format!(
        "  {dataset}:\n    description: test copy\n    homepage: https://example.invalid/\n    license: test\n    format: {format}\n    classes: {classes}\n    image_size: {image_size}\n    mean: [0.5, 0.5, 0.5]\n    std: [0.25, 0.25, 0.25]\n    instructions: \"put the test files in place\"\n"
    );
    if !layout.is_empty() {
        s += &format!("    layout: {layout}\n");
    }
    s += "    files:\n";
    if files.is_empty() {
        s.pop();
        s += " []\n";
    }
    for (path, sources) in files {
        let size = std::fs::metadata(path).expect("archive").len();
        let name = path.file_name().and_then(|n| n.to_str()).expect("archive name");
        let sources: Vec<String> = sources.iter().map(|s| format!("{s:?}")).collect();
        s += &format!("      - name: {name}\n        size: {size}\n        sha256: {}\n        sources: [{}]\n", sha256_file(path), sources.join(", "));
    }
    s
}

/// Writes `datasets.lock` with one dataset pinning `archive` by its real size and sha256;
/// `sources` are the lock's own (REPRO_MIRROR is tried before them).
pub fn archive_lock(sb: &Sandbox, dataset: &str, format: &str, archive: &Path, sources: &[&str]) -> PathBuf {
    archive_lock_with(sb, dataset, format, "", archive, sources)
}

/// Like [`archive_lock`], with a `layout:` flow mapping (e.g. `{train: x/train, test: x/val}`).
pub fn archive_lock_with(sb: &Sandbox, dataset: &str, format: &str, layout: &str, archive: &Path, sources: &[&str]) -> PathBuf {
    let (classes, size, _) = facts(format);
    let size = if format == "image_folder" { 64 } else { size };
    sb.write("datasets.lock", &format!("version: 2\ndatasets:\n{}", entry_text(dataset, format, classes, size, layout, &[(archive, sources)])))
}
