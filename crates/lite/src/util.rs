//! Small shared helpers: atomic file writes (temp file in the same folder + rename, so a killed run
//! never leaves a complete-looking file) and the one seed-derivation policy.

use std::path::Path;

use anyhow::{Context, Result};

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |tmp| std::fs::write(tmp, bytes).with_context(|| format!("cannot write {}", tmp.display())))
}

/// Lets `write` produce a temp file next to `path`, then renames it into place.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create folder {}", dir.display()))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = write(&tmp).and_then(|()| {
        std::fs::rename(&tmp, path).with_context(|| format!("cannot move {} to {}", tmp.display(), path.display()))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
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
}
