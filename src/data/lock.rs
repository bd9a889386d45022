//! `datasets.lock`: the committed, human-readable pin of every dataset file the harness may use.
//!
//! Per file: byte size and sha256 of the archive as published (optionally its md5), optionally the size
//! and sha256 of its gunzipped member (so a mirror's re-compressed copy, e.g. Debian's, is accepted),
//! and an ordered list of sources (`http://`, `https://`, `file://`; none for manual-only data).
//! [`Lock::load`] parses with unknown keys rejected and validates every entry; nothing here touches the
//! network or the cache (that is `crate::data::fetch`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The only lock format version this build understands.
pub const LOCK_VERSION: u32 = 1;

/// A parsed and validated `datasets.lock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    pub version: u32,
    pub datasets: BTreeMap<String, DatasetEntry>,
    /// The file this lock was read from (not a key in the file); error messages name it.
    #[serde(skip)]
    pub path: PathBuf,
}

/// One dataset: what it is, and the files it consists of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetEntry {
    pub description: String,
    pub homepage: String,
    pub license: String,
    /// Free-form here; the decoders dispatch on it.
    pub format: String,
    pub files: Vec<FileEntry>,
}

/// One file of a dataset, as it is stored in the cache under `name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub name: String,
    pub size: u64,
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    /// The gunzipped member; when present, a copy whose decompressed bytes match is accepted too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decompressed: Option<Member>,
    /// Tried in order; empty for manual-only data (verified in place).
    #[serde(default)]
    pub sources: Vec<String>,
}

/// Size and sha256 of the decompressed content of a gzip file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub size: u64,
    pub sha256: String,
}

impl Lock {
    /// Reads, parses and validates a lock file.
    pub fn load(path: &Path) -> Result<Lock> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read the lock file {}; expected a datasets.lock (YAML); pass another one with --lock FILE",
                path.display()
            )
        })?;
        Lock::parse(&text, path)
    }

    /// Parses and validates lock text; `origin` names it in errors and is stored in [`Lock::path`].
    pub fn parse(text: &str, origin: &Path) -> Result<Lock> {
        let mut lock: Lock = serde_yaml::from_str(text).map_err(|e| parse_error(&e, origin))?;
        lock.path = origin.to_path_buf();
        let problems = lock.problems();
        if !problems.is_empty() {
            bail!(
                "{} is not a valid datasets.lock ({} problem{}):\n  - {}\nfix these values in the file",
                origin.display(),
                problems.len(),
                if problems.len() == 1 { "" } else { "s" },
                problems.join("\n  - ")
            );
        }
        Ok(lock)
    }

    /// The entry for dataset `name`; the error names the lock file and lists the known datasets.
    pub fn get(&self, name: &str) -> Result<&DatasetEntry> {
        match self.datasets.get(name) {
            Some(entry) => Ok(entry),
            None => bail!(
                "dataset {name:?} is not in {}; it has: {}. Check the spelling, or add a `{name}:` entry under `datasets:`",
                self.origin(),
                self.known_names()
            ),
        }
    }

    /// The dataset names, comma-separated (or "(none)"), for error messages.
    pub fn known_names(&self) -> String {
        if self.datasets.is_empty() {
            "(none)".to_owned()
        } else {
            self.datasets.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
        }
    }

    /// How error messages name this lock: its path, or "the lock file" when built in code.
    pub fn origin(&self) -> String {
        if self.path.as_os_str().is_empty() {
            "the lock file".to_owned()
        } else {
            self.path.display().to_string()
        }
    }

    /// Every validation problem, each prefixed with its YAML key path.
    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.version != LOCK_VERSION {
            p.push(format!(
                "version: expected {LOCK_VERSION}, found {}; this build of repro reads lock format {LOCK_VERSION} only",
                self.version
            ));
        }
        for (ds, entry) in &self.datasets {
            let at = format!("datasets.{ds}");
            if let Err(why) = check_component(ds) {
                p.push(format!("{at}: the dataset name {why}"));
            }
            if entry.files.is_empty() {
                p.push(format!("{at}.files: expected at least one file, found none"));
            }
            for (i, f) in entry.files.iter().enumerate() {
                let at = format!("{at}.files[{i}]");
                if let Err(why) = check_component(&f.name) {
                    p.push(format!("{at}.name: {why}"));
                }
                if entry.files[..i].iter().any(|g| g.name == f.name) {
                    p.push(format!("{at}.name: {:?} appears twice in this dataset", f.name));
                }
                check_hex(&mut p, &format!("{at}.sha256"), &f.sha256, 64);
                if let Some(md5) = &f.md5 {
                    check_hex(&mut p, &format!("{at}.md5"), md5, 32);
                }
                if let Some(m) = &f.decompressed {
                    check_hex(&mut p, &format!("{at}.decompressed.sha256"), &m.sha256, 64);
                }
                for (j, s) in f.sources.iter().enumerate() {
                    if let Err(why) = check_source(s) {
                        p.push(format!("{at}.sources[{j}]: {why}"));
                    }
                }
            }
        }
        p
    }
}

/// A serde_yaml error as "FILE: line L, column C: KEY.PATH: message" plus what to do.
fn parse_error(e: &serde_yaml::Error, origin: &Path) -> anyhow::Error {
    let mut msg = e.to_string();
    let at = match e.location() {
        Some(loc) => {
            // serde_yaml appends " at line L column C"; we print the location up front instead.
            let suffix = format!(" at line {} column {}", loc.line(), loc.column());
            if let Some(stripped) = msg.strip_suffix(&suffix) {
                msg = stripped.to_owned();
            }
            format!("line {}, column {}: ", loc.line(), loc.column())
        }
        None => String::new(),
    };
    anyhow::anyhow!(
        "{}: {at}{msg}\nexpected `version: 1` and `datasets: {{NAME: {{description, homepage, license, format, \
         files: [{{name, size, sha256, md5?, decompressed?: {{size, sha256}}, sources}}]}}}}`; fix that key or value",
        origin.display()
    )
}

/// A dataset or file name must be one plain path component: it becomes `<cache>/<dataset>/<file>`.
fn check_component(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("expected a non-empty name, found an empty one".to_owned());
    }
    if name.contains('/') || name.contains('\\') || name.contains("..") {
        return Err(format!("expected a plain file name without `/`, `\\` or `..`, found {name:?}"));
    }
    if name.starts_with('.') || name.ends_with(".part") || name.chars().any(char::is_control) {
        return Err(format!(
            "expected a name that does not start with `.`, end with `.part` or contain control characters \
             (those are reserved for temporary files), found {name:?}"
        ));
    }
    Ok(())
}

fn check_hex(problems: &mut Vec<String>, at: &str, value: &str, len: usize) {
    let ok = value.len() == len && value.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !ok {
        problems
            .push(format!("{at}: expected {len} lowercase hex digits, found {value:?} ({} characters)", value.len()));
    }
}

fn check_source(s: &str) -> std::result::Result<(), String> {
    if let Some(rest) = s.strip_prefix("http://").or_else(|| s.strip_prefix("https://")) {
        if rest.is_empty() || rest.starts_with('/') {
            return Err(format!("expected a host after the scheme, found {s:?}"));
        }
        return Ok(());
    }
    if s.starts_with("file://") {
        return match file_url_path(s) {
            Some(_) => Ok(()),
            None => Err(format!("expected file:///ABSOLUTE/PATH (percent-encoded UTF-8), found {s:?}")),
        };
    }
    Err(format!("expected a source starting with http://, https:// or file://, found {s:?}"))
}

/// The local path of a `file:///abs/path` (or `file://localhost/abs/path`) URL, percent-decoded.
pub fn file_url_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("file://")?;
    let rest = rest.strip_prefix("localhost").unwrap_or(rest);
    if !rest.starts_with('/') {
        return None;
    }
    let bytes = rest.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real_lock_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets.lock")
    }

    const GOOD: &str = r#"
version: 1
datasets:
  toy:
    description: "a toy"
    homepage: https://example.org
    license: MIT
    format: idx
    files:
      - name: a.gz
        size: 3
        sha256: 0000000000000000000000000000000000000000000000000000000000000000
        sources:
          - https://example.org/a.gz
"#;

    fn err(text: &str) -> String {
        format!("{:#}", Lock::parse(text, Path::new("/x/test.lock")).unwrap_err())
    }

    #[test]
    fn loads_the_real_lock() {
        let lock = Lock::load(&real_lock_path()).unwrap();
        assert_eq!(lock.version, 1);
        assert_eq!(lock.path, real_lock_path());
        let fm = lock.get("fashion_mnist").unwrap();
        assert_eq!(fm.format, "idx");
        let names: Vec<&str> = fm.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "train-images-idx3-ubyte.gz",
                "train-labels-idx1-ubyte.gz",
                "t10k-images-idx3-ubyte.gz",
                "t10k-labels-idx1-ubyte.gz"
            ]
        );
        let ti = &fm.files[0];
        assert_eq!(ti.size, 26421880);
        assert_eq!(ti.sha256, "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84");
        assert_eq!(ti.md5.as_deref(), Some("8d4fb7e6c68d591d4c3dfef9ec88bf0d"));
        assert_eq!(
            ti.decompressed,
            Some(Member {
                size: 47040016,
                sha256: "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888".into()
            })
        );
        for f in &fm.files {
            assert_eq!(f.sources.len(), 2, "{}", f.name);
            // Debian's package first (no network attempt where it is installed), then upstream.
            assert_eq!(f.sources[0], format!("file:///usr/share/datasets/fashion-mnist/{}", f.name));
            assert_eq!(f.sources[1], format!("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/{}", f.name));
            assert!(f.decompressed.is_some() && f.md5.is_some());
        }
    }

    #[test]
    fn good_minimal_lock_and_manual_only_entry() {
        let lock = Lock::parse(GOOD, Path::new("t.lock")).unwrap();
        assert_eq!(lock.datasets["toy"].files[0].md5, None);
        let manual = GOOD.replace("        sources:\n          - https://example.org/a.gz\n", "");
        let lock = Lock::parse(&manual, Path::new("t.lock")).unwrap();
        assert!(lock.datasets["toy"].files[0].sources.is_empty());
    }

    #[test]
    fn unknown_key_names_file_line_and_key_path() {
        let e = err(&GOOD.replace("        size: 3", "        sizee: 3"));
        assert!(e.starts_with("/x/test.lock: line 11, column 9: "), "{e}");
        assert!(e.contains("datasets.toy.files[0]"), "{e}");
        assert!(e.contains("unknown field `sizee`"), "{e}");
        assert!(e.contains("fix that key or value"), "{e}");
        let e = err(&GOOD.replace("license: MIT", "license: MIT\n    licence: MIT"));
        assert!(e.contains("line 8, column 5") && e.contains("datasets.toy:") && e.contains("licence"), "{e}");
    }

    #[test]
    fn wrong_type_names_line_and_key_path() {
        let e = err(&GOOD.replace("size: 3", "size: three"));
        assert!(e.contains("line 11") && e.contains("datasets.toy.files[0].size"), "{e}");
        let e = err(&GOOD.replace("    format: idx\n", ""));
        assert!(e.contains("missing field `format`") && e.contains("datasets.toy"), "{e}");
    }

    #[test]
    fn validation_lists_every_problem_with_its_path() {
        let text = GOOD
            .replace("version: 1", "version: 2")
            .replace("name: a.gz", "name: ../a.gz")
            .replace(
                "sha256: 0000000000000000000000000000000000000000000000000000000000000000",
                "sha256: ABCD\n        md5: xyz",
            )
            .replace("https://example.org/a.gz", "ftp://example.org/a.gz\n          - file://relative/a.gz");
        let e = err(&text);
        for needle in [
            "/x/test.lock is not a valid datasets.lock (6 problems)",
            "version: expected 1, found 2",
            "datasets.toy.files[0].name: expected a plain file name",
            "datasets.toy.files[0].sha256: expected 64 lowercase hex digits, found \"ABCD\"",
            "datasets.toy.files[0].md5: expected 32 lowercase hex digits",
            "datasets.toy.files[0].sources[0]: expected a source starting with http://, https:// or file://",
            "datasets.toy.files[0].sources[1]: expected file:///ABSOLUTE/PATH",
        ] {
            assert!(e.contains(needle), "missing {needle:?} in:\n{e}");
        }
        let upper = GOOD.replace(&"0".repeat(64), &"A".repeat(64));
        assert!(err(&upper).contains("lowercase hex"));
        let slash = GOOD.replace("  toy:", "  a/b:");
        assert!(err(&slash).contains("datasets.a/b: the dataset name"));
        let dup = GOOD.replace("    files:\n", "    files:\n      - name: a.gz\n        size: 1\n        sha256: \"0000000000000000000000000000000000000000000000000000000000000000\"\n");
        assert!(err(&dup).contains("datasets.toy.files[1].name: \"a.gz\" appears twice"));
    }

    #[test]
    fn get_unknown_lists_names_and_lock_file() {
        let lock = Lock::parse(GOOD, Path::new("/x/test.lock")).unwrap();
        let e = format!("{:#}", lock.get("toyy").unwrap_err());
        assert!(e.contains("\"toyy\" is not in /x/test.lock; it has: toy"), "{e}");
    }

    #[test]
    fn load_missing_file_names_it() {
        let e = format!("{:#}", Lock::load(Path::new("/nonexistent/datasets.lock")).unwrap_err());
        assert!(e.contains("/nonexistent/datasets.lock") && e.contains("--lock"), "{e}");
    }

    #[test]
    fn file_urls() {
        assert_eq!(file_url_path("file:///a/b%20c.gz"), Some(PathBuf::from("/a/b c.gz")));
        assert_eq!(file_url_path("file://localhost/a"), Some(PathBuf::from("/a")));
        assert_eq!(file_url_path("file://a/b"), None);
        assert_eq!(file_url_path("file:///a%2"), None);
        assert_eq!(file_url_path("http://a/b"), None);
    }
}
