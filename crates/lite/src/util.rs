//! Small shared helpers: the one atomic file write of the workspace (temp file in the same folder,
//! fsync, rename, fsync of the folder: a killed run or a lost machine never leaves a complete-looking
//! file), the results folder's run lock, and the one seed-derivation policy.

use std::path::Path;

use anyhow::{Context, Result};

/// Writes `bytes` to `path` atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |tmp| std::fs::write(tmp, bytes).with_context(|| format!("cannot write {}", tmp.display())))
}

/// Lets `write` produce a temp file next to `path` (`.<name>.tmp<pid>`), flushes it to the disk,
/// renames it into place and flushes the folder, so that after a crash or power loss `path` holds
/// either its old content or all of the new one.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create folder {}", dir.display()))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}{TEMP_MARK}{}", std::process::id()));
    let result = write(&tmp)
        .and_then(|()| sync_path(&tmp))
        .and_then(|()| std::fs::rename(&tmp, path).with_context(|| format!("cannot move {} to {}", tmp.display(), path.display())))
        .and_then(|()| sync_path(dir));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// What names a temp file of [`write_atomic_with`] (after `.<name>`, before the writer's pid).
pub const TEMP_MARK: &str = ".tmp";

/// Whether `name` is a temp file of [`write_atomic_with`]; one left by a killed process is garbage.
pub fn is_temp_file(name: &str) -> bool {
    name.starts_with('.') && name.rsplit_once(TEMP_MARK).is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// Removes the temp files killed writers left in `dir` (not its sub-folders); returns how many.
pub fn remove_stale_temp_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mine = format!("{TEMP_MARK}{}", std::process::id());
    entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| is_temp_file(n) && !n.ends_with(&mine)) && e.path().is_file())
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

/// fsync of a file or a folder.
fn sync_path(p: &Path) -> Result<()> {
    std::fs::File::open(p).and_then(|f| f.sync_all()).with_context(|| format!("cannot flush {} to the disk", p.display()))
}

/// An exclusive lock on a results folder (`<folder>/.lock`), held until dropped or until the
/// process ends, however it ends: the kernel releases a killed holder's lock, so a stale lock is
/// taken over without guessing from process ids. The file names its holder for the message a second
/// run gets.
#[derive(Debug)]
pub struct FolderLock {
    _file: std::fs::File,
    pub path: std::path::PathBuf,
    /// The holder named in the file when this process took it over from one that had died.
    pub took_over: Option<String>,
}

impl Drop for FolderLock {
    /// A holder that ends normally leaves the file empty; only a killed one leaves its name.
    fn drop(&mut self) {
        let _ = self._file.set_len(0);
    }
}

impl FolderLock {
    pub const FILE: &'static str = ".lock";

    /// Takes the lock of `dir` (created if absent), or fails at once naming the process holding it.
    pub fn acquire(dir: &Path, what: &str) -> Result<Self> {
        match Self::try_acquire(&dir.join(Self::FILE), what)? {
            Ok(lock) => Ok(lock),
            Err(holder) => {
                anyhow::bail!(
                    "{} is in use by {holder}: two runs on one results folder would write over each other. Wait for it to finish, stop it, or use another --out",
                    dir.display()
                )
            }
        }
    }

    /// Takes the lock file `path` (created if absent, with its folder), or fails naming the
    /// process holding it.
    pub fn acquire_file(path: &Path, what: &str) -> Result<Self> {
        match Self::try_acquire(path, what)? {
            Ok(lock) => Ok(lock),
            Err(holder) => anyhow::bail!("{} is held by {holder}", path.display()),
        }
    }

    /// The lock, or who holds it (`Err` inside); the outer error is the file system's.
    fn try_acquire(path: &Path, what: &str) -> Result<std::result::Result<Self, String>> {
        use std::io::{Read, Seek, Write};
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create folder {}", d.display()))?;
        }
        let mut file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let mut holder = String::new();
        // A holder that has not written its name yet may be `holder()` looking, for an instant.
        let mut tries = 0;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) => {
                    holder.clear();
                    let _ = file.rewind().and_then(|_| file.read_to_string(&mut holder));
                    if holder.trim().is_empty() && tries < 20 {
                        tries += 1;
                        std::thread::sleep(std::time::Duration::from_millis(25));
                        continue;
                    }
                    let holder = holder.trim();
                    return Ok(Err(if holder.is_empty() { "another process (it has not written its name yet)".into() } else { holder.to_owned() }));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(e).with_context(|| format!("cannot lock {}", path.display())),
            }
        }
        holder.clear();
        let _ = file.rewind().and_then(|_| file.read_to_string(&mut holder));
        let took_over = Some(holder.trim().to_owned()).filter(|h| !h.is_empty());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let since = unix_now();
        let slurm = std::env::var("SLURM_JOB_ID").map(|j| format!(", Slurm job {j}")).unwrap_or_default();
        let me = format!("{what} (pid {} on {}{slurm}, since unix:{since})\n", std::process::id(), host.trim());
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(me.as_bytes()))
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Ok(Self { _file: file, path: path.to_owned(), took_over }))
    }

    /// Who holds the lock file `path` now, without taking it (a shared probe, let go at once):
    /// `None` when nobody does.
    pub fn holder(path: &Path) -> Option<String> {
        use std::io::Read;
        let mut file = std::fs::File::open(path).ok()?;
        match file.try_lock_shared() {
            Ok(()) => None,
            Err(_) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                Some(Some(holder.trim().to_owned()).filter(|h| !h.is_empty()).unwrap_or_else(|| "a process that has not written its name yet".into()))
            }
        }
    }
}

/// Seconds since the Unix epoch, now (0 on a clock before 1970).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Serialises `value` as pretty JSON, atomically.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Reads JSON from `path`, naming the file in errors.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: invalid or outdated JSON", path.display()))
}

/// A seed for one purpose (`label`) derived from the target's seed: FNV-1a over both, so streams
/// for different purposes never coincide and a resumed epoch replays the same randomness.
pub fn derive_seed(seed: u64, label: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in seed.to_le_bytes().iter().chain(label.as_bytes()) {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h >> 1 // non-negative as i64
}

/// The CPU this runs on and the vector extensions libtorch's kernels may pick (their results differ
/// in the last bits, which training amplifies), e.g. `AMD EPYC (avx2 avx512f)`; an
/// `ATEN_CPU_CAPABILITY` override is named too.
pub fn cpu_description() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| info.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_owned());
    let model = field("model name").unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    let flags = field("flags").unwrap_or_default();
    let have: Vec<&str> = ["avx2", "avx512f", "avx512_bf16", "amx_tile", "asimd", "sve"].into_iter().filter(|f| flags.split(' ').any(|x| x == *f)).collect();
    let mut s = if have.is_empty() { model } else { format!("{model} ({})", have.join(" ")) };
    if let Ok(cap) = std::env::var("ATEN_CPU_CAPABILITY") {
        s += &format!(", ATEN_CPU_CAPABILITY={cap}");
    }
    s
}

/// sha256 of a byte slice, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.json");
        write_json(&p, &serde_json::json!({"x": 1})).unwrap();
        assert_eq!(read_json::<serde_json::Value>(&p).unwrap()["x"], 1);
        let failed = write_atomic_with(&d.path().join("b"), |_| anyhow::bail!("boom"));
        assert!(failed.is_err());
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        assert_ne!(derive_seed(0, "a"), derive_seed(0, "b"));
    }

    #[test]
    fn stale_temp_files_are_recognised_and_removed() {
        assert!(is_temp_file(".metrics.json.tmp123"));
        assert!(!is_temp_file("metrics.json"));
        assert!(!is_temp_file(".lock"));
        assert!(!is_temp_file(".a.tmpx"));
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(".checkpoint.safetensors.tmp999999"), b"half").unwrap();
        std::fs::write(d.path().join("config.json"), b"{}").unwrap();
        assert_eq!(remove_stale_temp_files(d.path()), 1);
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn folder_lock_is_exclusive_and_released_on_drop() {
        let d = tempfile::tempdir().unwrap();
        let a = FolderLock::acquire(d.path(), "repro run a").unwrap();
        assert!(a.took_over.is_none());
        // A second open file description conflicts even within one process (flock semantics).
        let e = format!("{:#}", FolderLock::acquire(d.path(), "repro run b").unwrap_err());
        assert!(e.contains("in use by repro run a (pid") && e.contains("another --out"), "{e}");
        drop(a);
        let b = FolderLock::acquire(d.path(), "repro run b").unwrap();
        assert!(b.took_over.is_none(), "a holder that ended normally is not taken over: {:?}", b.took_over);
        drop(b);
        // A killed holder leaves its name behind, and the kernel has released its lock.
        std::fs::write(d.path().join(FolderLock::FILE), "repro run c (pid 1 on h, since unix:0)\n").unwrap();
        let c = FolderLock::acquire(d.path(), "repro run d").unwrap();
        assert!(c.took_over.as_deref().is_some_and(|h| h.starts_with("repro run c")), "{:?}", c.took_over);
    }

    #[test]
    fn a_run_lock_is_probed_without_being_taken() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(".locks/cim.seed-0.lock");
        assert_eq!(FolderLock::holder(&p), None, "no file: nobody");
        let a = FolderLock::acquire_file(&p, "repro run s.yaml").unwrap();
        assert!(FolderLock::holder(&p).is_some_and(|h| h.starts_with("repro run s.yaml (pid")), "{:?}", FolderLock::holder(&p));
        let e = format!("{:#}", FolderLock::acquire_file(&p, "other").unwrap_err());
        assert!(e.contains("cim.seed-0.lock is held by repro run s.yaml (pid"), "{e}");
        drop(a);
        assert_eq!(FolderLock::holder(&p), None, "released");
        // The probe let go: the lock can be taken at once.
        let _b = FolderLock::acquire_file(&p, "b").unwrap();
    }
}
