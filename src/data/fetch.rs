//! Dataset files: fetch into the cache, verify against `datasets.lock`, move into place atomically.
//!
//! A file lives at `<cache>/<dataset>/<name>`. Sources are tried in order: `$REPRO_MIRROR/<dataset>/<name>`,
//! then the lock's. HTTP downloads stream into `<name>.part` (resumed with `Range` after a dropped
//! connection); `file://` sources are copied to a temporary file. Only a file whose size and sha256 match
//! the lock (or whose gunzipped member does, for re-compressed mirrors) is renamed to its final name, so
//! nothing unverified ever sits there. Hashing always streams; files are never read whole into memory.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use flate2::read::MultiGzDecoder;
use indicatif::{ProgressBar, ProgressStyle};
use md5::Md5;
use sha2::{Digest, Sha256};

use crate::data::lock::{file_url_path, FileEntry, Lock, Member};

/// Cache directory override.
pub const ENV_DATA_DIR: &str = "REPRO_DATA_DIR";
/// Base URL tried before the lock's sources, as `$REPRO_MIRROR/<dataset>/<file>`.
pub const ENV_MIRROR: &str = "REPRO_MIRROR";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for response headers or for any single read of the body (not a whole-transfer deadline).
#[cfg(not(test))]
const READ_TIMEOUT: Duration = Duration::from_secs(60);
#[cfg(test)]
const READ_TIMEOUT: Duration = Duration::from_secs(10);
const BUF_SIZE: usize = 64 * 1024;

/// The cache root: `$REPRO_DATA_DIR`, else `$XDG_CACHE_HOME/repro`, else `$HOME/.cache/repro`.
pub fn data_dir() -> anyhow::Result<PathBuf> {
    resolve_data_dir(|k| std::env::var_os(k))
}

fn resolve_data_dir(var: impl Fn(&str) -> Option<OsString>) -> anyhow::Result<PathBuf> {
    let set = |k: &str| var(k).filter(|v| !v.is_empty());
    if let Some(dir) = set(ENV_DATA_DIR) {
        return Ok(PathBuf::from(dir));
    }
    // The XDG spec says relative values are invalid and must be ignored.
    if let Some(xdg) = set("XDG_CACHE_HOME").map(PathBuf::from).filter(|p| p.is_absolute()) {
        return Ok(xdg.join("repro"));
    }
    if let Some(home) = set("HOME") {
        return Ok(PathBuf::from(home).join(".cache").join("repro"));
    }
    anyhow::bail!(
        "cannot choose a dataset cache directory: expected {ENV_DATA_DIR}, XDG_CACHE_HOME or HOME to be set, \
         found none of them; set {ENV_DATA_DIR}=/path/to/cache"
    )
}

/// How [`ensure_dataset`] fetches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchOptions {
    /// Base URL tried first, as `<mirror>/<dataset>/<file>` (from `REPRO_MIRROR`).
    pub mirror: Option<String>,
    /// Fetch again even when the cached file verifies, and replace a cached file that does not.
    pub force: bool,
    /// Draw a progress bar (only ever drawn when stderr is a terminal).
    pub progress: bool,
}

impl FetchOptions {
    /// `mirror` from `REPRO_MIRROR` (unset or empty: none), no force, progress on.
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Self {
        let mirror = var(ENV_MIRROR).map(|m| m.trim().to_owned()).filter(|m| !m.is_empty());
        FetchOptions { mirror, force: false, progress: true }
    }
}

/// Fetch and verification failures. All are user/data errors (the binary exits with 2).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "dataset {name:?} is not in {lock}; it has: {known}. Check the spelling, or add a `{name}:` entry \
         under `datasets:` in the lock file"
    )]
    UnknownDataset { name: String, lock: String, known: String },

    #[error("{}", all_failed_message(.dataset, .file, .dest, .attempts, .instructions.as_deref()))]
    AllSourcesFailed {
        dataset: String,
        file: String,
        /// Where the verified file would have been placed.
        dest: PathBuf,
        /// (source, why it failed), in the order tried.
        attempts: Vec<(String, String)>,
        /// The lock's `instructions:` for this dataset (how to obtain it by hand).
        instructions: Option<String>,
    },

    #[error(
        "cached file {} does not match datasets.lock: expected {expected}; found {found}. It was left \
         untouched: run `repro fetch --force {dataset}` to download it again, or delete it yourself",
        .path.display()
    )]
    CorruptCache { dataset: String, path: PathBuf, expected: String, found: String },

    #[error(
        "{what} {}: {source}; check that the directory exists and is writable and that the disk has space, \
         or set {ENV_DATA_DIR} to another cache directory",
        .path.display()
    )]
    Io {
        /// What was being done, e.g. "cannot write".
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn all_failed_message(dataset: &str, file: &str, dest: &Path, attempts: &[(String, String)], instructions: Option<&str>) -> String {
    let dir = dest.parent().unwrap_or(dest).display();
    if attempts.is_empty() {
        // Manual data: nothing to download from.
        let mut m = format!("{dataset}/{file} cannot be downloaded: the lock lists no source for it (manual data) and {ENV_MIRROR} is not set.");
        if let Some(how) = instructions {
            m.push_str(&format!("\nHow to get it: {}", how.trim()));
        }
        m.push_str(&format!(
            "\nPlace {file} (or a symlink to it) in {dir}/; it is verified against datasets.lock before use."
        ));
        return m;
    }
    let mut m = format!("could not fetch {dataset}/{file}: every source failed:");
    for (i, (src, why)) in attempts.iter().enumerate() {
        m.push_str(&format!("\n  {}. {src}: {why}", i + 1));
    }
    m.push_str(&format!(
        "\nTo fix: check the network (and proxy settings), or set {ENV_MIRROR} to a base URL serving \
         <mirror>/{dataset}/{file}, or place a copy of {file} that matches datasets.lock in {dir}/ \
         (it is verified before use)"
    ));
    if let Some(how) = instructions {
        m.push_str(&format!(", or: {}", how.trim()));
    }
    m
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FetchError {
    let path = path.to_path_buf();
    move |source| FetchError::Io { what, path, source }
}

/// How a file matched the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matched {
    /// Size and sha256 (and md5, when locked) of the archive itself.
    Archive,
    /// Size and sha256 of the gunzipped member (a re-compressed copy).
    Member,
    /// Size and md5: the lock pins no sha256 because none was ever published.
    Md5Only,
}

/// The state of one cached file, as `repro verify` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyStatus {
    Ok(Matched),
    /// Not in the cache; `partial` is the size of a `.part` left by an interrupted download.
    Missing {
        partial: Option<u64>,
    },
    Mismatch {
        expected: String,
        found: String,
    },
}

/// One line of `repro verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub dataset: String,
    pub file: String,
    pub path: PathBuf,
    pub status: VerifyStatus,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        matches!(self.status, VerifyStatus::Ok(_))
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (file, path, ds) = (&self.file, self.path.display(), &self.dataset);
        match &self.status {
            VerifyStatus::Ok(Matched::Archive) => write!(f, "{file}: ok (archive size and sha256 match)"),
            VerifyStatus::Ok(Matched::Md5Only) => {
                write!(f, "{file}: ok (size and md5 match; no sha256 was published for this file)")
            }
            VerifyStatus::Ok(Matched::Member) => {
                write!(f, "{file}: ok (re-compressed copy; its gunzipped size and sha256 match)")
            }
            VerifyStatus::Missing { partial } => {
                write!(f, "{file}: missing at {path}; run `repro fetch {ds}`")?;
                match partial {
                    Some(n) => write!(f, " (it resumes the {n}-byte partial download)"),
                    None => Ok(()),
                }
            }
            VerifyStatus::Mismatch { expected, found } => write!(
                f,
                "{file}: MISMATCH at {path}: expected {expected}; found {found}; run `repro fetch --force {ds}`"
            ),
        }
    }
}

/// Returns the verified cached paths of all files of dataset `name`, in lock order, fetching what is
/// missing (everything, with `opts.force`).
pub fn ensure_dataset(lock: &Lock, name: &str, cache: &Path, opts: &FetchOptions) -> Result<Vec<PathBuf>, FetchError> {
    let entry = lock.datasets.get(name).ok_or_else(|| unknown(lock, name))?;
    let dir = cache.join(name);
    fs::create_dir_all(&dir).map_err(io_err("cannot create directory", &dir))?;
    let mut http = Http::default();
    entry
        .files
        .iter()
        .map(|f| {
            let local = Local { siblings: sibling_copies(lock, name, f, cache), instructions: entry.instructions.as_deref() };
            ensure_file(name, f, &dir, opts, &mut http, &local)
        })
        .collect()
}

/// Local places a file may already be, besides the lock's sources.
struct Local<'a> {
    /// Verified-looking copies of the same file (same name and hashes) cached for other datasets of
    /// the lock, e.g. `cifar100_coarse` sharing `cifar100`'s archive: copied, not downloaded again.
    siblings: Vec<PathBuf>,
    instructions: Option<&'a str>,
}

/// Cached copies of `f` under other datasets of the lock that pin the same file.
fn sibling_copies(lock: &Lock, name: &str, f: &FileEntry, cache: &Path) -> Vec<PathBuf> {
    lock.datasets
        .iter()
        .filter(|(other, _)| other.as_str() != name)
        .filter(|(_, e)| e.files.iter().any(|g| g.name == f.name && g.size == f.size && g.sha256 == f.sha256 && g.md5 == f.md5))
        .map(|(other, _)| cache.join(other).join(&f.name))
        .filter(|p| p.is_file())
        .collect()
}

/// Re-hashes the cached files of dataset `name` and reports ok / missing / mismatch per file.
pub fn verify_dataset(lock: &Lock, name: &str, cache: &Path) -> Result<Vec<VerifyReport>, FetchError> {
    let entry = lock.datasets.get(name).ok_or_else(|| unknown(lock, name))?;
    let dir = cache.join(name);
    let mut out = Vec::new();
    for f in &entry.files {
        let path = dir.join(&f.name);
        let status = if exists(&path)? {
            match check(&path, f)? {
                Ok(m) => VerifyStatus::Ok(m),
                Err(Mismatch { expected, found }) => VerifyStatus::Mismatch { expected, found },
            }
        } else {
            let part = part_path(&path);
            let partial = if exists(&part)? { Some(len(&part)?) } else { None };
            VerifyStatus::Missing { partial }
        };
        out.push(VerifyReport { dataset: name.to_owned(), file: f.name.clone(), path, status });
    }
    Ok(out)
}

fn unknown(lock: &Lock, name: &str) -> FetchError {
    FetchError::UnknownDataset { name: name.to_owned(), lock: lock.origin(), known: lock.known_names() }
}

fn part_path(dest: &Path) -> PathBuf {
    let mut p = dest.as_os_str().to_owned();
    p.push(".part");
    PathBuf::from(p)
}

fn exists(path: &Path) -> Result<bool, FetchError> {
    match fs::metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("cannot inspect", path)(e)),
    }
}

fn len(path: &Path) -> Result<u64, FetchError> {
    fs::metadata(path).map(|m| m.len()).map_err(io_err("cannot inspect", path))
}

fn remove_if_exists(path: &Path) -> Result<(), FetchError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("cannot remove", path)(e)),
    }
}

/// Why one attempt did not produce a verified file.
enum Fail {
    /// This source failed; try the next one.
    Source(String),
    /// A local problem (cache not writable, ...) that every source would hit: stop.
    Local(FetchError),
}

impl From<FetchError> for Fail {
    fn from(e: FetchError) -> Self {
        Fail::Local(e)
    }
}

fn ensure_file(
    dataset: &str,
    f: &FileEntry,
    dir: &Path,
    opts: &FetchOptions,
    http: &mut Http,
    local: &Local,
) -> Result<PathBuf, FetchError> {
    let dest = dir.join(&f.name);
    let part = part_path(&dest);
    if exists(&dest)? && !opts.force {
        return match check(&dest, f)? {
            Ok(_) => Ok(dest),
            Err(Mismatch { expected, found }) => {
                Err(FetchError::CorruptCache { dataset: dataset.to_owned(), path: dest, expected, found })
            }
        };
    }
    if opts.force {
        remove_if_exists(&part)?;
    }
    for sibling in &local.siblings {
        if let Ok(()) = copy_local(sibling, f, &dest) {
            remove_if_exists(&part)?;
            return Ok(dest);
        }
    }
    let mirror = opts.mirror.iter().map(|m| format!("{}/{dataset}/{}", m.trim_end_matches('/'), f.name));
    let mut attempts = Vec::new();
    for src in mirror.chain(f.sources.iter().cloned()) {
        let label = format!("{dataset}/{}", f.name);
        let result = if src.starts_with("file://") {
            match file_url_path(&src) {
                Some(path) => copy_local(&path, f, &dest),
                None => Err(Fail::Source("expected file:///ABSOLUTE/PATH".to_owned())),
            }
        } else if src.starts_with("http://") || src.starts_with("https://") {
            download(http, &src, f, &dest, &part, opts.progress.then_some(label.as_str()))
        } else {
            Err(Fail::Source("unsupported scheme; expected http://, https:// or file://".to_owned()))
        };
        match result {
            Ok(()) => {
                // A local copy may have succeeded after another source left a partial download.
                remove_if_exists(&part)?;
                return Ok(dest);
            }
            Err(Fail::Source(why)) => attempts.push((src, why)),
            Err(Fail::Local(e)) => return Err(e),
        }
    }
    Err(FetchError::AllSourcesFailed {
        dataset: dataset.to_owned(),
        file: f.name.clone(),
        dest,
        attempts,
        instructions: local.instructions.map(str::to_owned),
    })
}

/// Copies a local file through a temporary file in the destination directory; renames on success.
fn copy_local(src: &Path, f: &FileEntry, dest: &Path) -> Result<(), Fail> {
    let mut input = File::open(&src).map_err(|e| Fail::Source(format!("cannot open {}: {e}", src.display())))?;
    let dir = dest.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", f.name))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io_err("cannot create a temporary file in", dir))?;
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Fail::Source(format!("cannot read {}: {e}", src.display()))),
        };
        tmp.write_all(&buf[..n]).map_err(io_err("cannot write", tmp.path()))?;
    }
    tmp.as_file().sync_all().map_err(io_err("cannot write", tmp.path()))?;
    match check(tmp.path(), f)? {
        Ok(_) => {
            tmp.persist(dest).map_err(|e| io_err("cannot move a verified copy to", dest)(e.error))?;
            Ok(())
        }
        // Dropping `tmp` deletes the copy.
        Err(m) => Err(Fail::Source(format!("{} does not match the lock: {m}", src.display()))),
    }
}

/// The HTTP client, built on first use.
#[derive(Default)]
struct Http(Option<reqwest::blocking::Client>);

impl Http {
    fn client(&mut self) -> Result<&reqwest::blocking::Client, Fail> {
        if self.0.is_none() {
            // In the blocking client, `timeout` bounds the wait for the response headers and each read of
            // the body separately: a read timeout, never a deadline on the whole (possibly GB-sized) transfer.
            let client = reqwest::blocking::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(READ_TIMEOUT)
                .user_agent(concat!("repro/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| Fail::Source(format!("cannot set up the HTTP client: {}", chain(&e))))?;
            self.0 = Some(client);
        }
        match &self.0 {
            Some(c) => Ok(c),
            None => Err(Fail::Source("HTTP client unavailable".to_owned())),
        }
    }
}

/// An error with its chain of causes, e.g. "error sending request: ...: Connection refused (os error 111)".
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}

/// The most bytes a source may send for `f` before we give up on it.
fn max_size(f: &FileEntry) -> u64 {
    match &f.decompressed {
        None => f.size,
        // A re-compressed archive is no bigger than its member plus gzip's small worst-case overhead.
        Some(Member { size, .. }) => f.size.max(size + size / 16 + (1 << 20)),
    }
}

/// Downloads `url` into `part` (resuming it if present), verifies, renames to `dest`.
fn download(
    http: &mut Http,
    url: &str,
    f: &FileEntry,
    dest: &Path,
    part: &Path,
    progress: Option<&str>,
) -> Result<(), Fail> {
    let client = http.client()?.clone();
    let mut restarted = false;
    loop {
        let offset = if exists(part)? { len(part)? } else { 0 };
        // `Connection: close`: one transfer per file, and a server that drops mid-body is seen at once.
        let mut req = client.get(url).header(reqwest::header::CONNECTION, "close");
        if offset > 0 {
            req = req.header(reqwest::header::RANGE, format!("bytes={offset}-"));
        }
        let mut resp = req.send().map_err(|e| Fail::Source(chain(&e)))?;
        let status = resp.status();
        let content_len = resp.content_length();
        let start = match status.as_u16() {
            206 if offset > 0 => {
                let range = resp.headers().get(reqwest::header::CONTENT_RANGE).and_then(|v| v.to_str().ok());
                if content_range_start(range) != Some(offset) {
                    // Not the range we asked for: start over rather than guess.
                    remove_if_exists(part)?;
                    if restarted {
                        return Err(Fail::Source(format!(
                            "asked for bytes {offset}- but the server answered with Content-Range {range:?}"
                        )));
                    }
                    restarted = true;
                    continue;
                }
                offset
            }
            416 if offset > 0 => {
                // Nothing after `offset`: the partial file may already be complete.
                match check(part, f)? {
                    Ok(_) => return finish(part, dest),
                    Err(_) => {
                        remove_if_exists(part)?;
                        if restarted {
                            return Err(Fail::Source("HTTP 416 Range Not Satisfiable".to_owned()));
                        }
                        restarted = true;
                        continue;
                    }
                }
            }
            200 => 0,
            _ => return Err(Fail::Source(format!("HTTP {status}"))),
        };
        let total = content_len.map(|n| start + n);
        if let Some(t) = total {
            if f.decompressed.is_none() && t != f.size {
                return Err(Fail::Source(format!("the server announces {t} bytes, the lock expects {}", f.size)));
            }
            if t > max_size(f) {
                return Err(Fail::Source(format!(
                    "the server announces {t} bytes, more than any copy the lock accepts ({} at most)",
                    max_size(f)
                )));
            }
        }
        let mut out = if start == 0 {
            File::create(part).map_err(io_err("cannot create", part))?
        } else {
            OpenOptions::new().append(true).open(part).map_err(io_err("cannot open", part))?
        };
        let bar = progress_bar(progress, total.or(Some(f.size)), start);
        let received = match stream(&mut resp, &mut out, part, start, max_size(f), &bar) {
            Ok(n) => n,
            Err(e) => {
                bar.abandon();
                return Err(e);
            }
        };
        out.sync_all().map_err(io_err("cannot write", part))?;
        drop(out);
        let have = start + received;
        if let Some(t) = total {
            if have < t {
                bar.abandon();
                return Err(Fail::Source(format!(
                    "the connection closed after {have} of {t} bytes; kept {} so the next `repro fetch` resumes",
                    part.display()
                )));
            }
        }
        bar.finish();
        match check(part, f)? {
            Ok(_) => return finish(part, dest),
            Err(m) => {
                remove_if_exists(part)?;
                if start > 0 && !restarted {
                    // The old partial bytes may be the culprit (e.g. another source's copy): once, from zero.
                    restarted = true;
                    continue;
                }
                return Err(Fail::Source(format!("the downloaded file does not match the lock: {m}")));
            }
        }
    }
}

fn finish(part: &Path, dest: &Path) -> Result<(), Fail> {
    fs::rename(part, dest).map_err(|e| Fail::Local(io_err("cannot move the verified download to", dest)(e)))
}

/// The first byte of a `Content-Range: bytes START-END/TOTAL` header.
fn content_range_start(value: Option<&str>) -> Option<u64> {
    let rest = value?.trim().strip_prefix("bytes")?.trim_start();
    rest.split('-').next()?.trim().parse().ok()
}

/// Copies the body into `out`. A read error keeps what arrived (the `.part` is resumable); a body longer
/// than any acceptable copy deletes it.
fn stream(
    body: &mut impl Read,
    out: &mut File,
    part: &Path,
    start: u64,
    max: u64,
    bar: &ProgressBar,
) -> Result<u64, Fail> {
    let mut buf = vec![0u8; BUF_SIZE];
    let mut received = 0u64;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => return Ok(received),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                out.sync_all().map_err(io_err("cannot write", part))?;
                return Err(Fail::Source(format!(
                    "the transfer broke off after {} bytes ({}); kept {} so the next `repro fetch` resumes",
                    start + received,
                    chain(&e),
                    part.display()
                )));
            }
        };
        if start + received + n as u64 > max {
            remove_if_exists(part)?;
            return Err(Fail::Source(format!(
                "the server sent more than {max} bytes, more than any copy the lock accepts"
            )));
        }
        out.write_all(&buf[..n]).map_err(io_err("cannot write", part))?;
        received += n as u64;
        bar.inc(n as u64);
    }
}

fn progress_bar(label: Option<&str>, total: Option<u64>, pos: u64) -> ProgressBar {
    let Some(label) = label else { return ProgressBar::hidden() };
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(t) => ProgressBar::new(t),
        None => ProgressBar::new_spinner(),
    };
    if let Ok(style) = ProgressStyle::with_template("{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {eta}") {
        bar.set_style(style);
    }
    bar.set_message(label.to_owned());
    bar.set_position(pos);
    bar
}

/// What a file did not match: both sides spelled out for the user.
struct Mismatch {
    expected: String,
    found: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected {}; found {}", self.expected, self.found)
    }
}

/// Streams `path` through the hashes the lock entry asks for. `Err` only for local I/O problems.
fn check(path: &Path, f: &FileEntry) -> Result<Result<Matched, Mismatch>, FetchError> {
    let raw = digest_file(path, f.md5.is_some())?;
    let md5_ok = match (&f.md5, &raw.md5) {
        (Some(want), Some(got)) => want == got,
        _ => true,
    };
    let sha_ok = f.sha256.as_ref().is_none_or(|want| *want == raw.sha256);
    if raw.size == f.size && sha_ok && md5_ok {
        return Ok(Ok(if f.sha256.is_some() { Matched::Archive } else { Matched::Md5Only }));
    }
    let mut found = format!("size {} and sha256 {}", raw.size, raw.sha256);
    if let (Some(_), Some(got)) = (&f.md5, &raw.md5) {
        found.push_str(&format!(" and md5 {got}"));
    }
    let mut expected = format!("size {}", f.size);
    if let Some(sha) = &f.sha256 {
        expected.push_str(&format!(" and sha256 {sha}"));
    }
    if let Some(md5) = &f.md5 {
        expected.push_str(&format!(" and md5 {md5}"));
    }
    if let Some(m) = &f.decompressed {
        expected.push_str(&format!(" (or, gunzipped, size {} and sha256 {})", m.size, m.sha256));
        match digest_gunzip(path)? {
            Ok((size, sha)) if size == m.size && sha == m.sha256 => return Ok(Ok(Matched::Member)),
            Ok((size, sha)) => found.push_str(&format!(" (gunzipped: size {size} and sha256 {sha})")),
            Err(why) => found.push_str(&format!(" (not a valid gzip file: {why})")),
        }
    }
    Ok(Err(Mismatch { expected, found }))
}

struct RawDigest {
    size: u64,
    sha256: String,
    md5: Option<String>,
}

fn digest_file(path: &Path, want_md5: bool) -> Result<RawDigest, FetchError> {
    let mut file = File::open(path).map_err(io_err("cannot open", path))?;
    let mut sha = Sha256::new();
    let mut md5 = want_md5.then(Md5::new);
    let mut buf = vec![0u8; BUF_SIZE];
    let mut size = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err("cannot read", path)(e)),
        };
        sha.update(&buf[..n]);
        if let Some(m) = md5.as_mut() {
            m.update(&buf[..n]);
        }
        size += n as u64;
    }
    Ok(RawDigest { size, sha256: hex::encode(sha.finalize()), md5: md5.map(|m| hex::encode(m.finalize())) })
}

/// Size and sha256 of the gunzipped content; the inner `Err` says why the file is not valid gzip.
fn digest_gunzip(path: &Path) -> Result<Result<(u64, String), String>, FetchError> {
    let file = File::open(path).map_err(io_err("cannot open", path))?;
    let mut dec = MultiGzDecoder::new(Watched { inner: file, failed: None });
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; BUF_SIZE];
    let mut size = 0u64;
    loop {
        match dec.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                sha.update(&buf[..n]);
                size += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // A failure reading the file itself is local; anything else is the data's fault.
                return match dec.get_mut().failed.take() {
                    Some(source) => Err(io_err("cannot read", path)(source)),
                    None => Ok(Err(e.to_string())),
                };
            }
        }
    }
    Ok(Ok((size, hex::encode(sha.finalize()))))
}

/// A reader that remembers its own I/O error, to tell file errors from gzip format errors.
struct Watched<R> {
    inner: R,
    failed: Option<io::Error>,
}

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            if e.kind() != io::ErrorKind::Interrupted {
                self.failed = Some(io::Error::new(e.kind(), e.to_string()));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::lock::DatasetEntry;
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread::JoinHandle;
    use std::time::Instant;

    const DEBIAN: &str = "/usr/share/datasets/fashion-mnist";
    const TRAIN_LABELS: &str = "train-labels-idx1-ubyte.gz";
    const TEST_LABELS: &str = "t10k-labels-idx1-ubyte.gz";
    const TEST_IMAGES: &str = "t10k-images-idx3-ubyte.gz";
    const DS: &str = "fashion_mnist";

    fn debian(name: &str) -> PathBuf {
        Path::new(DEBIAN).join(name)
    }

    // ---- a real loopback HTTP server ---------------------------------------------------------------

    #[derive(Clone)]
    enum Route {
        /// Serve a file; honour `Range: bytes=N-` when `ranges`.
        File {
            path: PathBuf,
            ranges: bool,
        },
        /// Announce the whole file's length but send only `keep` bytes, then close the connection.
        Truncate {
            path: PathBuf,
            keep: usize,
        },
        Status(u16),
        Redirect(String),
    }

    #[derive(Debug, Clone, PartialEq)]
    struct Hit {
        path: String,
        range: Option<String>,
    }

    struct Server {
        base: String,
        hits: Arc<Mutex<Vec<Hit>>>,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl Server {
        fn start(routes: Vec<(&str, Route)>) -> Server {
            let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
            let port = server.server_addr().to_ip().unwrap().port();
            let routes: BTreeMap<String, Route> = routes.into_iter().map(|(p, r)| (p.to_owned(), r)).collect();
            let hits = Arc::new(Mutex::new(Vec::new()));
            let stop = Arc::new(AtomicBool::new(false));
            let (h, s) = (hits.clone(), stop.clone());
            let thread = std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(60); // bounded even if never stopped
                while !s.load(Ordering::SeqCst) && Instant::now() < deadline {
                    if let Ok(Some(rq)) = server.recv_timeout(Duration::from_millis(20)) {
                        let range = rq.headers().iter().find(|x| x.field.equiv("Range")).map(|x| x.value.to_string());
                        h.lock().unwrap().push(Hit { path: rq.url().to_owned(), range: range.clone() });
                        let route = routes.get(rq.url()).cloned();
                        respond(rq, route, range);
                    }
                }
            });
            Server { base: format!("http://127.0.0.1:{port}"), hits, stop, thread: Some(thread) }
        }

        fn url(&self, path: &str) -> String {
            format!("{}{path}", self.base)
        }

        fn hits(&self) -> Vec<Hit> {
            self.hits.lock().unwrap().clone()
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            if let Some(t) = self.thread.take() {
                t.join().unwrap();
            }
        }
    }

    fn respond(rq: tiny_http::Request, route: Option<Route>, range: Option<String>) {
        use tiny_http::{Header, Response, StatusCode};
        let hdr = |k: &str, v: &str| Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap();
        // Content-Length, never chunked, so a short body is recognisable as such.
        let _ = match route {
            None => rq.respond(Response::empty(404)),
            Some(Route::Status(code)) => rq.respond(Response::empty(code)),
            Some(Route::Redirect(to)) => rq.respond(Response::empty(302).with_header(hdr("Location", &to))),
            Some(Route::File { path, ranges }) => {
                let data = fs::read(path).unwrap();
                let total = data.len();
                let start = range
                    .filter(|_| ranges)
                    .and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse::<usize>().ok());
                match start {
                    Some(s) if s >= total => {
                        rq.respond(Response::empty(416).with_header(hdr("Content-Range", &format!("bytes */{total}"))))
                    }
                    Some(s) => rq.respond(
                        Response::from_data(data[s..].to_vec())
                            .with_status_code(206)
                            .with_header(hdr("Content-Range", &format!("bytes {s}-{}/{total}", total - 1)))
                            .with_chunked_threshold(usize::MAX),
                    ),
                    None => rq.respond(Response::from_data(data).with_chunked_threshold(usize::MAX)),
                }
            }
            Some(Route::Truncate { path, keep }) => {
                let data = fs::read(path).unwrap();
                let body = io::Cursor::new(data[..keep].to_vec());
                rq.respond(
                    Response::new(StatusCode(200), vec![], body, Some(data.len()), None)
                        .with_chunked_threshold(usize::MAX),
                )
            }
        };
    }

    // ---- fixtures -----------------------------------------------------------------------------------

    fn size_and_sha256(path: &Path) -> (u64, String) {
        let bytes = fs::read(path).unwrap();
        (bytes.len() as u64, hex::encode(Sha256::digest(&bytes)))
    }

    /// A lock entry pinning the Debian copy's own .gz size and sha256 (computed here).
    fn entry(name: &str, sources: Vec<String>) -> FileEntry {
        let (size, sha256) = size_and_sha256(&debian(name));
        FileEntry { name: name.to_owned(), size, sha256: Some(sha256), md5: None, decompressed: None, sources }
    }

    fn lock_of(files: Vec<FileEntry>) -> Lock {
        let entry = DatasetEntry {
            description: "test".into(),
            homepage: "https://example.org".into(),
            license: "MIT".into(),
            format: crate::data::lock::Format::Idx,
            classes: 10,
            image_size: 28,
            mean: vec![0.286],
            std: vec![0.353],
            train_images: None,
            unlabeled_images: None,
            layout: Default::default(),
            instructions: Some("Debian/Ubuntu: apt-get install dataset-fashion-mnist".into()),
            files,
        };
        Lock { version: 2, datasets: BTreeMap::from([(DS.to_owned(), entry)]), path: PathBuf::from("/x/test.lock") }
    }

    fn quiet() -> FetchOptions {
        FetchOptions { mirror: None, force: false, progress: false }
    }

    fn file_route(name: &str, ranges: bool) -> (String, Route) {
        (format!("/f/{name}"), Route::File { path: debian(name), ranges })
    }

    fn serve(routes: Vec<(String, Route)>) -> Server {
        Server::start(routes.iter().map(|(p, r)| (p.as_str(), r.clone())).collect())
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        v.sort();
        v
    }

    fn same_as_debian(path: &Path, name: &str) {
        assert!(
            fs::read(path).unwrap() == fs::read(debian(name)).unwrap(),
            "{} differs from the Debian copy",
            path.display()
        );
    }

    fn attempts(e: &FetchError) -> &[(String, String)] {
        match e {
            FetchError::AllSourcesFailed { attempts, .. } => attempts,
            other => panic!("expected AllSourcesFailed, got {other}"),
        }
    }

    // ---- tests --------------------------------------------------------------------------------------

    #[test]
    fn downloads_verifies_and_second_call_makes_no_request() {
        let srv = serve(vec![file_route(TRAIN_LABELS, true), file_route(TEST_LABELS, true)]);
        let lock = lock_of(vec![
            entry(TRAIN_LABELS, vec![srv.url(&format!("/f/{TRAIN_LABELS}"))]),
            entry(TEST_LABELS, vec![srv.url(&format!("/f/{TEST_LABELS}"))]),
        ]);
        let cache = tempfile::tempdir().unwrap();
        let dir = cache.path().join(DS);
        let paths = ensure_dataset(&lock, DS, cache.path(), &quiet()).unwrap();
        assert_eq!(paths, vec![dir.join(TRAIN_LABELS), dir.join(TEST_LABELS)]);
        same_as_debian(&paths[0], TRAIN_LABELS);
        same_as_debian(&paths[1], TEST_LABELS);
        assert_eq!(listing(&dir), [TEST_LABELS, TRAIN_LABELS]); // no .part, no temporary files
        let hits = srv.hits();
        assert_eq!(hits.len(), 2);
        assert!(hits.iter().all(|h| h.range.is_none()));

        let again = ensure_dataset(&lock, DS, cache.path(), &quiet()).unwrap();
        assert_eq!(again, paths);
        assert_eq!(srv.hits().len(), 2, "a verified cached file must not be fetched again");
    }

    #[test]
    fn mirror_is_tried_first_and_falls_through() {
        let mirror =
            serve(vec![(format!("/m/{DS}/{TEST_LABELS}"), Route::File { path: debian(TEST_LABELS), ranges: true })]);
        let origin = serve(vec![file_route(TEST_LABELS, true)]);
        let lock = lock_of(vec![entry(TEST_LABELS, vec![origin.url(&format!("/f/{TEST_LABELS}"))])]);
        let cache = tempfile::tempdir().unwrap();
        let opts = FetchOptions { mirror: Some(mirror.url("/m/")), ..quiet() };
        let paths = ensure_dataset(&lock, DS, cache.path(), &opts).unwrap();
        same_as_debian(&paths[0], TEST_LABELS);
        assert_eq!(mirror.hits(), [Hit { path: format!("/m/{DS}/{TEST_LABELS}"), range: None }]);
        assert!(origin.hits().is_empty());

        // A mirror without the file: the lock's own source is used next.
        let cache = tempfile::tempdir().unwrap();
        let opts = FetchOptions { mirror: Some(mirror.url("/elsewhere")), ..quiet() };
        ensure_dataset(&lock, DS, cache.path(), &opts).unwrap();
        assert_eq!(origin.hits().len(), 1);
    }

    #[test]
    fn wrong_sha256_fails_and_leaves_nothing() {
        let srv = serve(vec![file_route(TEST_LABELS, true)]);
        let url = srv.url(&format!("/f/{TEST_LABELS}"));
        let mut e = entry(TEST_LABELS, vec![url.clone()]);
        let real = e.sha256.clone().unwrap();
        e.sha256 = Some("0".repeat(64));
        let cache = tempfile::tempdir().unwrap();
        let err = ensure_dataset(&lock_of(vec![e]), DS, cache.path(), &quiet()).unwrap_err();
        let tried = attempts(&err);
        assert_eq!(tried.len(), 1);
        assert_eq!(tried[0].0, url);
        assert!(tried[0].1.contains(&format!("expected size 5125 and sha256 {}", "0".repeat(64))), "{}", tried[0].1);
        assert!(tried[0].1.contains(&format!("found size 5125 and sha256 {real}")), "{}", tried[0].1);
        let dir = cache.path().join(DS);
        assert!(listing(&dir).is_empty(), "left behind: {:?}", listing(&dir));
        let msg = err.to_string();
        assert!(msg.contains("apt-get install dataset-fashion-mnist"), "{msg}");
        assert!(msg.contains("REPRO_MIRROR") && msg.contains(&dir.display().to_string()), "{msg}");
    }

    #[test]
    fn md5_only_pin_is_checked_by_size_and_md5() {
        let cache = tempfile::tempdir().unwrap();
        let mut e = entry(TEST_LABELS, vec![format!("file://{}", debian(TEST_LABELS).display())]);
        e.sha256 = None;
        e.md5 = Some(hex::encode(Md5::digest(fs::read(debian(TEST_LABELS)).unwrap())));
        let lock = lock_of(vec![e.clone()]);
        ensure_dataset(&lock, DS, cache.path(), &quiet()).unwrap();
        let r = verify_dataset(&lock, DS, cache.path()).unwrap();
        assert_eq!(r[0].status, VerifyStatus::Ok(Matched::Md5Only));
        assert!(r[0].to_string().contains("no sha256 was published"), "{}", r[0]);
        e.md5 = Some("0".repeat(32));
        let r = verify_dataset(&lock_of(vec![e]), DS, cache.path()).unwrap();
        match &r[0].status {
            VerifyStatus::Mismatch { expected, .. } => assert!(expected.contains(&format!("md5 {}", "0".repeat(32))) && !expected.contains("sha256"), "{expected}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_file_cached_for_another_dataset_is_copied_not_downloaded() {
        let srv = serve(vec![file_route(TEST_LABELS, true)]);
        let e = entry(TEST_LABELS, vec![srv.url(&format!("/f/{TEST_LABELS}"))]);
        let mut lock = lock_of(vec![e]);
        let twin = lock.datasets[DS].clone();
        lock.datasets.insert("twin".into(), twin);
        let cache = tempfile::tempdir().unwrap();
        ensure_dataset(&lock, DS, cache.path(), &quiet()).unwrap();
        ensure_dataset(&lock, "twin", cache.path(), &quiet()).unwrap();
        assert_eq!(srv.hits().len(), 1, "the twin's copy came from the cache");
        same_as_debian(&cache.path().join("twin").join(TEST_LABELS), TEST_LABELS);
    }

    #[test]
    fn manual_file_message_says_where_and_how() {
        let cache = tempfile::tempdir().unwrap();
        let err = ensure_dataset(&lock_of(vec![entry(TEST_LABELS, vec![])]), DS, cache.path(), &quiet()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("cannot be downloaded") && msg.contains("manual data"), "{msg}");
        assert!(msg.contains("How to get it: Debian/Ubuntu: apt-get install dataset-fashion-mnist"), "{msg}");
        assert!(msg.contains(&cache.path().join(DS).display().to_string()), "{msg}");
    }

    #[test]
    fn announced_wrong_size_is_refused_before_writing() {
        let srv = serve(vec![file_route(TEST_LABELS, true)]);
        let mut e = entry(TEST_LABELS, vec![srv.url(&format!("/f/{TEST_LABELS}"))]);
        e.size += 1;
        let cache = tempfile::tempdir().unwrap();
        let err = ensure_dataset(&lock_of(vec![e]), DS, cache.path(), &quiet()).unwrap_err();
        assert!(attempts(&err)[0].1.contains("announces 5125 bytes, the lock expects 5126"), "{err}");
        assert!(listing(&cache.path().join(DS)).is_empty());
    }

    #[test]
    fn not_found_then_next_source_succeeds() {
        let srv = serve(vec![file_route(TEST_LABELS, true)]);
        let lock = lock_of(vec![entry(TEST_LABELS, vec![srv.url("/missing"), srv.url(&format!("/f/{TEST_LABELS}"))])]);
        let cache = tempfile::tempdir().unwrap();
        let paths = ensure_dataset(&lock, DS, cache.path(), &quiet()).unwrap();
        same_as_debian(&paths[0], TEST_LABELS);
        let hits: Vec<String> = srv.hits().into_iter().map(|h| h.path).collect();
        assert_eq!(hits, ["/missing".to_owned(), format!("/f/{TEST_LABELS}")]);
    }

    #[test]
    fn every_failed_source_is_listed_with_its_reason() {
        let srv = serve(vec![("/boom".to_owned(), Route::Status(500))]);
        let refused = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = l.local_addr().unwrap().port();
            drop(l);
            format!("http://127.0.0.1:{port}/{TEST_LABELS}")
        };
        let sources = vec![
            srv.url("/missing"),
            srv.url("/boom"),
            refused.clone(),
            format!("file:///nonexistent/{TEST_LABELS}"),
            format!("ftp://example.org/{TEST_LABELS}"),
        ];
        let cache = tempfile::tempdir().unwrap();
        let err = ensure_dataset(&lock_of(vec![entry(TEST_LABELS, sources.clone())]), DS, cache.path(), &quiet())
            .unwrap_err();
        let tried = attempts(&err);
        assert_eq!(tried.iter().map(|a| a.0.clone()).collect::<Vec<_>>(), sources);
        assert!(tried[0].1.contains("HTTP 404"), "{}", tried[0].1);
        assert!(tried[1].1.contains("HTTP 500"), "{}", tried[1].1);
        assert!(tried[2].1.to_lowercase().contains("refused"), "{}", tried[2].1);
        assert!(tried[3].1.contains("cannot open /nonexistent/"), "{}", tried[3].1);
        assert!(tried[4].1.contains("unsupported scheme"), "{}", tried[4].1);
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("could not fetch {DS}/{TEST_LABELS}: every source failed:\n  1. ")), "{msg}");
        assert!(msg.contains(&format!("\n  3. {refused}: ")), "{msg}");
        assert!(listing(&cache.path().join(DS)).is_empty());
    }

    #[test]
    fn truncated_transfer_keeps_part_then_resumes_with_range() {
        let bad =
            serve(vec![(format!("/f/{TRAIN_LABELS}"), Route::Truncate { path: debian(TRAIN_LABELS), keep: 20000 })]);
        let cache = tempfile::tempdir().unwrap();
        let dest = cache.path().join(DS).join(TRAIN_LABELS);
        let part = part_path(&dest);
        let lock = lock_of(vec![entry(TRAIN_LABELS, vec![bad.url(&format!("/f/{TRAIN_LABELS}"))])]);
        let err = ensure_dataset(&lock, DS, cache.path(), &quiet()).unwrap_err();
        assert!(attempts(&err)[0].1.contains("so the next `repro fetch` resumes"), "{err}");
        assert!(!dest.exists(), "a partial transfer must never get the final name");
        let have = fs::metadata(&part).unwrap().len();
        assert!(have > 0 && have <= 20000, "{have}");
        assert_eq!(fs::read(&part).unwrap(), fs::read(debian(TRAIN_LABELS)).unwrap()[..have as usize]);
        let report = &verify_dataset(&lock, DS, cache.path()).unwrap()[0];
        assert_eq!(report.status, VerifyStatus::Missing { partial: Some(have) });

        let good = serve(vec![file_route(TRAIN_LABELS, true)]);
        let lock = lock_of(vec![entry(TRAIN_LABELS, vec![good.url(&format!("/f/{TRAIN_LABELS}"))])]);
        let paths = ensure_dataset(&lock, DS, cache.path(), &quiet()).unwrap();
        same_as_debian(&paths[0], TRAIN_LABELS);
        assert_eq!(good.hits(), [Hit { path: format!("/f/{TRAIN_LABELS}"), range: Some(format!("bytes={have}-")) }]);
        assert!(!part.exists());
    }

    #[test]
    fn server_ignoring_range_restarts_from_zero() {
        let srv = serve(vec![file_route(TRAIN_LABELS, false)]);
        let cache = tempfile::tempdir().unwrap();
        let dir = cache.path().join(DS);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("{TRAIN_LABELS}.part")), [0xAAu8; 1000]).unwrap();
        let lock = lock_of(vec![entry(TRAIN_LABELS, vec![srv.url(&format!("/f/{TRAIN_LABELS}"))])]);
        let paths = ensure_dataset(&lock, DS, cache.path(), &quiet()).unwrap();
        same_as_debian(&paths[0], TRAIN_LABELS);
        assert_eq!(srv.hits().len(), 1);
        assert_eq!(srv.hits()[0].range.as_deref(), Some("bytes=1000-"));
        assert_eq!(listing(&dir), [TRAIN_LABELS]);
    }

    #[test]
    fn resumed_download_that_fails_verification_restarts_once_from_zero() {
        let srv = serve(vec![file_route(TRAIN_LABELS, true)]);
        let cache = tempfile::tempdir().unwrap();
        let dir = cache.path().join(DS);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("{TRAIN_LABELS}.part")), [0xAAu8; 1000]).unwrap(); // not the file's prefix
        let lock = lock_of(vec![entry(TRAIN_LABELS, vec![srv.url(&format!("/f/{TRAIN_LABELS}"))])]);
        let paths = ensure_dataset(&lock, DS, cache.path(), &quiet()).unwrap();
        same_as_debian(&paths[0], TRAIN_LABELS);
        let ranges: Vec<Option<String>> = srv.hits().into_iter().map(|h| h.range).collect();
        assert_eq!(ranges, [Some("bytes=1000-".to_owned()), None]);
    }

    #[test]
    fn complete_part_answered_416_is_verified_and_used() {
        let srv = serve(vec![file_route(TEST_LABELS, true)]);
        let cache = tempfile::tempdir().unwrap();
        let dir = cache.path().join(DS);
        fs::create_dir_all(&dir).unwrap();
        fs::copy(debian(TEST_LABELS), dir.join(format!("{TEST_LABELS}.part"))).unwrap();
        let lock = lock_of(vec![entry(TEST_LABELS, vec![srv.url(&format!("/f/{TEST_LABELS}"))])]);
        let paths = ensure_dataset(&lock, DS, cache.path(), &quiet()).unwrap();
        same_as_debian(&paths[0], TEST_LABELS);
        assert_eq!(srv.hits()[0].range.as_deref(), Some("bytes=5125-"));
        assert_eq!(listing(&dir), [TEST_LABELS]);
    }

    #[test]
    fn redirects_are_followed() {
        let srv = serve(vec![file_route(TEST_LABELS, true)]);
        let target = srv.url(&format!("/f/{TEST_LABELS}"));
        let hop = serve(vec![("/old".to_owned(), Route::Redirect(target))]);
        let cache = tempfile::tempdir().unwrap();
        let paths =
            ensure_dataset(&lock_of(vec![entry(TEST_LABELS, vec![hop.url("/old")])]), DS, cache.path(), &quiet())
                .unwrap();
        same_as_debian(&paths[0], TEST_LABELS);
        assert_eq!(srv.hits().len(), 1);
    }

    #[test]
    fn file_source_is_copied() {
        let cache = tempfile::tempdir().unwrap();
        let lock = lock_of(vec![entry(TEST_LABELS, vec![format!("file://{DEBIAN}/{TEST_LABELS}")])]);
        let paths = ensure_dataset(&lock, DS, cache.path(), &quiet()).unwrap();
        same_as_debian(&paths[0], TEST_LABELS);
        assert_eq!(listing(&cache.path().join(DS)), [TEST_LABELS]);
    }

    #[test]
    fn corrupt_cache_is_an_error_naming_the_path_and_is_kept() {
        let srv = serve(vec![file_route(TEST_LABELS, true)]);
        let cache = tempfile::tempdir().unwrap();
        let dest = cache.path().join(DS).join(TEST_LABELS);
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::write(&dest, b"not the labels").unwrap();
        let lock = lock_of(vec![entry(TEST_LABELS, vec![srv.url(&format!("/f/{TEST_LABELS}"))])]);
        let err = ensure_dataset(&lock, DS, cache.path(), &quiet()).unwrap_err();
        match &err {
            FetchError::CorruptCache { path, found, .. } => {
                assert_eq!(path, &dest);
                assert!(found.starts_with("size 14 and sha256 "), "{found}");
            }
            other => panic!("expected CorruptCache, got {other}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains(&dest.display().to_string()) && msg.contains("repro fetch --force fashion_mnist"),
            "{msg}"
        );
        assert_eq!(fs::read(&dest).unwrap(), b"not the labels");
        assert!(srv.hits().is_empty());
    }

    #[test]
    fn force_refetches() {
        let srv = serve(vec![file_route(TEST_LABELS, true)]);
        let cache = tempfile::tempdir().unwrap();
        let dest = cache.path().join(DS).join(TEST_LABELS);
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::write(&dest, b"not the labels").unwrap();
        let lock = lock_of(vec![entry(TEST_LABELS, vec![srv.url(&format!("/f/{TEST_LABELS}"))])]);
        let force = FetchOptions { force: true, ..quiet() };
        ensure_dataset(&lock, DS, cache.path(), &force).unwrap();
        same_as_debian(&dest, TEST_LABELS);
        assert_eq!(srv.hits().len(), 1);
        ensure_dataset(&lock, DS, cache.path(), &force).unwrap(); // verified, but forced: fetched again
        assert_eq!(srv.hits().len(), 2);
        ensure_dataset(&lock, DS, cache.path(), &quiet()).unwrap();
        assert_eq!(srv.hits().len(), 2);
    }

    #[test]
    fn force_keeps_the_old_file_when_every_source_fails() {
        let cache = tempfile::tempdir().unwrap();
        let dest = cache.path().join(DS).join(TEST_LABELS);
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::write(&dest, b"old").unwrap();
        let lock = lock_of(vec![entry(TEST_LABELS, vec!["file:///nonexistent/x.gz".to_owned()])]);
        let err = ensure_dataset(&lock, DS, cache.path(), &FetchOptions { force: true, ..quiet() }).unwrap_err();
        assert_eq!(attempts(&err).len(), 1);
        assert_eq!(fs::read(&dest).unwrap(), b"old");
    }

    /// The real lock pins upstream's archives; Debian's re-gzipped copies pass by their member hashes.
    #[test]
    fn real_lock_accepts_debian_copies_by_member_hash_over_http() {
        let real = Lock::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets.lock")).unwrap();
        let srv = serve(vec![file_route(TEST_IMAGES, true), file_route(TEST_LABELS, true)]);
        let mut lock = real.clone();
        let Some(entry) = lock.datasets.get_mut(DS) else { panic!("no {DS} in the real lock") };
        entry.files.retain(|f| f.name == TEST_IMAGES || f.name == TEST_LABELS);
        for f in &mut entry.files {
            f.sources = vec![srv.url(&format!("/f/{}", f.name))];
        }
        let cache = tempfile::tempdir().unwrap();
        let paths = ensure_dataset(&lock, DS, cache.path(), &quiet()).unwrap();
        same_as_debian(&paths[0], TEST_IMAGES);
        same_as_debian(&paths[1], TEST_LABELS);
        let reports = verify_dataset(&lock, DS, cache.path()).unwrap();
        assert!(reports.iter().all(|r| r.status == VerifyStatus::Ok(Matched::Member)), "{reports:?}");

        // The other two files, checked in place (no copy) against the real lock's values.
        for f in &real.datasets[DS].files {
            if f.name != TEST_IMAGES && f.name != TEST_LABELS {
                assert!(matches!(check(&debian(&f.name), f).unwrap(), Ok(Matched::Member)), "{}", f.name);
            }
        }
    }

    #[test]
    fn verify_reports_ok_missing_and_mismatch() {
        let cache = tempfile::tempdir().unwrap();
        let dir = cache.path().join(DS);
        fs::create_dir_all(&dir).unwrap();
        fs::copy(debian(TEST_LABELS), dir.join(TEST_LABELS)).unwrap();
        fs::write(dir.join(format!("{TRAIN_LABELS}.part")), [0u8; 10]).unwrap();
        fs::write(dir.join(TEST_IMAGES), b"junk").unwrap();
        let mut images = entry(TEST_IMAGES, vec![]);
        images.decompressed = Some(Member {
            size: 7840016,
            sha256: "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b".into(),
        });
        let lock = lock_of(vec![entry(TRAIN_LABELS, vec![]), entry(TEST_LABELS, vec![]), images]);
        let r = verify_dataset(&lock, DS, cache.path()).unwrap();
        assert_eq!(r[0].status, VerifyStatus::Missing { partial: Some(10) });
        assert_eq!(r[1].status, VerifyStatus::Ok(Matched::Archive));
        assert!(
            matches!(&r[2].status, VerifyStatus::Mismatch { found, .. } if found.contains("not a valid gzip file")),
            "{:?}",
            r[2]
        );
        assert_eq!(r.iter().map(VerifyReport::is_ok).collect::<Vec<_>>(), [false, true, false]);
        assert!(r[0].to_string().contains("missing at") && r[0].to_string().contains("`repro fetch fashion_mnist`"));
        let line = r[2].to_string();
        assert!(
            line.contains("MISMATCH")
                && line.contains("expected size 4422079")
                && line.contains("repro fetch --force fashion_mnist"),
            "{line}"
        );
        // Missing with no sources at all: the fetch error says it is manual-only.
        let err = ensure_dataset(&lock, DS, cache.path(), &quiet()).unwrap_err();
        assert!(err.to_string().contains("no source for it (manual data)"), "{err}");
    }

    #[test]
    fn unknown_dataset_lists_known_names_and_the_lock() {
        let lock = lock_of(vec![]);
        let cache = tempfile::tempdir().unwrap();
        for err in [
            ensure_dataset(&lock, "cifar", cache.path(), &quiet()).unwrap_err(),
            verify_dataset(&lock, "cifar", cache.path()).unwrap_err(),
        ] {
            assert!(matches!(err, FetchError::UnknownDataset { .. }));
            assert!(err.to_string().contains("\"cifar\" is not in /x/test.lock; it has: fashion_mnist"), "{err}");
        }
    }

    #[test]
    fn unwritable_cache_is_an_io_error_naming_the_path() {
        let cache = tempfile::tempdir().unwrap();
        let blocker = cache.path().join("file");
        fs::write(&blocker, b"x").unwrap();
        let lock = lock_of(vec![entry(TEST_LABELS, vec![])]);
        let err = ensure_dataset(&lock, DS, &blocker, &quiet()).unwrap_err();
        assert!(matches!(err, FetchError::Io { .. }));
        assert!(err.to_string().contains(&blocker.join(DS).display().to_string()), "{err}");
    }

    #[test]
    fn data_dir_precedence() {
        fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
            move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| OsString::from(v))
        }
        let all = [("REPRO_DATA_DIR", "/d"), ("XDG_CACHE_HOME", "/x"), ("HOME", "/h")];
        assert_eq!(resolve_data_dir(env(&all)).unwrap(), PathBuf::from("/d"));
        assert_eq!(
            resolve_data_dir(env(&[("REPRO_DATA_DIR", ""), ("XDG_CACHE_HOME", "/x"), ("HOME", "/h")])).unwrap(),
            PathBuf::from("/x/repro")
        );
        assert_eq!(
            resolve_data_dir(env(&[("XDG_CACHE_HOME", "rel"), ("HOME", "/h")])).unwrap(),
            PathBuf::from("/h/.cache/repro")
        );
        let e = resolve_data_dir(env(&[])).unwrap_err().to_string();
        assert!(e.contains("set REPRO_DATA_DIR="), "{e}");
    }

    #[test]
    fn options_from_env_lookup() {
        let o = FetchOptions::from_lookup(|k| (k == ENV_MIRROR).then(|| " http://m/ ".to_owned()));
        assert_eq!(o, FetchOptions { mirror: Some("http://m/".into()), force: false, progress: true });
        assert_eq!(FetchOptions::from_lookup(|_| Some(String::new())).mirror, None);
        assert_eq!(FetchOptions::from_lookup(|_| None).mirror, None);
    }

    #[test]
    fn content_range_parsing() {
        assert_eq!(content_range_start(Some("bytes 100-199/200")), Some(100));
        assert_eq!(content_range_start(Some("bytes */200")), None);
        assert_eq!(content_range_start(None), None);
    }
}
