//! `datasets.lock`: the committed, human-readable pin of every dataset file the harness may use, and
//! how each dataset is decoded.
//!
//! Per dataset: its format, class count, image size and normalisation (so a user's own lock can
//! define a new dataset, e.g. an ImageFolder tree, with no code change), an optional `layout:` with
//! the format's options, optional `instructions:` for data that must be placed by hand, and its files.
//! Per file: byte size and sha256 of the archive as published (or its md5 where no sha256 is
//! published), optionally the size and sha256 of its gunzipped member (so a mirror's re-compressed
//! copy, e.g. Debian's, is accepted), and an ordered list of sources (`http://`, `https://`,
//! `file://`; none for manual-only data). [`Lock::load`] parses with unknown keys rejected and
//! validates every entry; nothing here touches the network or the cache (that is the main crate's `data::fetch`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The only lock format version this build understands (2 added the per-dataset decode facts:
/// `classes`, `image_size`, `mean`, `std`, `layout`, and md5-only file pins).
pub const LOCK_VERSION: u32 = 2;

/// A parsed and validated `datasets.lock`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    pub version: u32,
    pub datasets: BTreeMap<String, DatasetEntry>,
    /// The file this lock was read from (not a key in the file); error messages name it.
    #[serde(skip)]
    pub path: PathBuf,
}

/// One dataset: what it is, how it is decoded, and the files it consists of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetEntry {
    pub description: String,
    pub homepage: String,
    pub license: String,
    pub format: Format,
    /// Number of classes of the labelled splits.
    pub classes: usize,
    /// Side of the square images the decoder produces.
    pub image_size: usize,
    /// Per-channel normalisation of pixel/255 (one value per channel: 1 or 3).
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// The format's options (split folders, resizing, label set, class list).
    #[serde(default, skip_serializing_if = "Layout::is_empty")]
    pub layout: Layout,
    /// Images in the labelled training split (and in the unlabeled split), as published: what
    /// `repro plan` counts per epoch before the data is fetched. Not part of the content hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_images: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unlabeled_images: Option<usize>,
    /// For data that cannot be downloaded: where the user puts it. Printed by `repro fetch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// May be empty only for formats that can read an extracted folder tree instead.
    #[serde(default)]
    pub files: Vec<FileEntry>,
}

/// The facts about a dataset that training, export and evaluation need; from its lock entry.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetInfo {
    pub name: String,
    pub classes: usize,
    pub channels: usize,
    pub image_size: usize,
    /// Per-channel normalisation of pixel/255.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

/// Whether the format has an unlabeled split (suites may pre-train on it).
pub fn has_unlabeled(format: Format) -> bool {
    format == Format::Stl10Bin
}

/// The dataset formats this build decodes (`format:` in the lock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// IDX files (MNIST, Fashion-MNIST): `train-images*`, `train-labels*`, `t10k-images*`, `t10k-labels*`.
    Idx,
    /// `cifar-10-binary.tar.gz`: `cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin`.
    Cifar10Bin,
    /// `cifar-100-binary.tar.gz`: `cifar-100-binary/{train,test}.bin`; `layout.labels` fine or coarse.
    Cifar100Bin,
    /// `stl10_binary.tar.gz`: labelled train/test plus the 100k-image unlabeled split.
    Stl10Bin,
    /// `tiny-imagenet-200.zip`: train class folders, val labelled by `val_annotations.txt`.
    TinyImagenetZip,
    /// Class folders `<layout.train>/<class>/*.{jpg,jpeg,png}` and `<layout.test>/<class>/…`, inside
    /// the dataset's one archive, or (no files) in folders on this machine.
    ImageFolder,
    /// A class subset of ILSVRC-2012 (`layout.class_list`), from the user's own train/val archives
    /// or from extracted `train/<wnid>/` and `val/<wnid>/` folders.
    ImagenetSubset,
}

impl Format {
    /// The word used in the lock.
    pub fn name(self) -> &'static str {
        match self {
            Format::Idx => "idx",
            Format::Cifar10Bin => "cifar10_bin",
            Format::Cifar100Bin => "cifar100_bin",
            Format::Stl10Bin => "stl10_bin",
            Format::TinyImagenetZip => "tiny_imagenet_zip",
            Format::ImageFolder => "image_folder",
            Format::ImagenetSubset => "imagenet_subset",
        }
    }

    /// Formats that can read an extracted folder tree, so their `files:` may be empty.
    pub fn reads_folders(self) -> bool {
        matches!(self, Format::ImageFolder | Format::ImagenetSubset)
    }
}

/// Which CIFAR-100 label a dataset entry uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelSet {
    /// The 100 fine classes (what the papers report).
    Fine,
    /// The 20 superclasses.
    Coarse,
}

/// Format options; each format reads only its own keys (validated in [`Lock::load`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    /// cifar100_bin: `fine` (default) or `coarse`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<LabelSet>,
    /// image_folder, imagenet_subset: folder holding the training split's class folders, relative to
    /// the extracted archive (or, with no archive, to the dataset's cache folder), or absolute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train: Option<String>,
    /// The same for the evaluation split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<String>,
    /// Resize the shorter side to this many pixels, then centre-crop `image_size` (torchvision
    /// `Resize` + `CenterCrop`); absent: every image must already be `image_size` square.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shorter_side: Option<u32>,
    /// imagenet_subset: the subset's wnids, one per line, in a file next to the lock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_list: Option<PinnedFile>,
    /// imagenet_subset: the wnid of every ILSVRC-2012 validation image, one per line, line i for
    /// `ILSVRC2012_val_{i:08}.JPEG` (needed to label the images of the val archive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_labels: Option<PinnedFile>,
}

impl Layout {
    fn is_empty(&self) -> bool {
        *self == Layout::default()
    }
}

/// A text file shipped next to the lock (path relative to the lock's folder), pinned by sha256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinnedFile {
    pub file: String,
    pub sha256: String,
}

/// One file of a dataset, as it is stored in the cache under `name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub name: String,
    pub size: u64,
    /// Absent only where no sha256 was ever published; then `md5` is required (and is said in the lock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
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

impl DatasetEntry {
    /// sha256 of what the decoded arrays depend on: the format, decode facts, layout and every
    /// file's pinned size and hashes (not the description, licence, instructions or sources, which
    /// can change without changing the data). Run keys include it.
    pub fn content_hash(&self) -> String {
        let files: Vec<serde_json::Value> =
            self.files.iter().map(|f| serde_json::json!({ "name": f.name, "size": f.size, "sha256": f.sha256, "md5": f.md5, "decompressed": f.decompressed })).collect();
        let v = serde_json::json!({
            "format": self.format, "classes": self.classes, "image_size": self.image_size,
            "mean": self.mean, "std": self.std, "layout": self.layout, "files": files,
        });
        crate::util::sha256_hex(v.to_string().as_bytes())
    }
}

impl Lock {
    /// Reads, parses and validates a lock file.
    pub fn load(path: &Path) -> Result<Lock> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the lock file {}; expected a datasets.lock (YAML); pass another one with --lock FILE", path.display()))?;
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
            None => bail!("dataset {name:?} is not in {}; it has: {}. Check the spelling, or add a `{name}:` entry under `datasets:`", self.origin(), self.known_names()),
        }
    }

    /// The decode facts of dataset `name`.
    pub fn info(&self, name: &str) -> Result<DatasetInfo> {
        let e = self.get(name)?;
        Ok(DatasetInfo { name: name.to_owned(), classes: e.classes, channels: e.mean.len(), image_size: e.image_size, mean: e.mean.clone(), std: e.std.clone() })
    }

    /// Where a path named in the lock points: absolute as is, else relative to the lock's folder.
    pub fn resolve(&self, file: &str) -> PathBuf {
        let p = Path::new(file);
        if p.is_absolute() {
            return p.to_path_buf();
        }
        self.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).join(p)
    }

    /// Reads a file shipped next to the lock and checks it against its pinned sha256.
    pub fn read_pinned(&self, pin: &PinnedFile) -> Result<String> {
        let path = self.resolve(&pin.file);
        let bytes = std::fs::read(&path).with_context(|| format!("cannot read {} (named in {}); it ships with repro next to datasets.lock", path.display(), self.origin()))?;
        let found = crate::util::sha256_hex(&bytes);
        if found != pin.sha256 {
            bail!("{}: expected sha256 {} (pinned in {}), found {found}; restore the file from the repository", path.display(), pin.sha256, self.origin());
        }
        String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8 text", path.display()))
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
            p.push(format!("version: expected {LOCK_VERSION}, found {}; this build of repro reads lock format {LOCK_VERSION} only", self.version));
        }
        for (ds, entry) in &self.datasets {
            let at = format!("datasets.{ds}");
            if let Err(why) = check_component(ds) {
                p.push(format!("{at}: the dataset name {why}"));
            }
            if entry.files.is_empty() && !entry.format.reads_folders() {
                p.push(format!("{at}.files: expected at least one file, found none (only image_folder and imagenet_subset can read folders instead)"));
            }
            entry_problems(entry, &at, &mut p);
            for (i, f) in entry.files.iter().enumerate() {
                let at = format!("{at}.files[{i}]");
                if let Err(why) = check_component(&f.name) {
                    p.push(format!("{at}.name: {why}"));
                }
                if entry.files[..i].iter().any(|g| g.name == f.name) {
                    p.push(format!("{at}.name: {:?} appears twice in this dataset", f.name));
                }
                match (&f.sha256, &f.md5) {
                    (Some(sha), _) => check_hex(&mut p, &format!("{at}.sha256"), sha, 64),
                    (None, Some(_)) => {}
                    (None, None) => p.push(format!("{at}: expected sha256 (or, where none was ever published, md5), found neither")),
                }
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

/// The decode facts and the format's layout keys of one dataset.
fn entry_problems(e: &DatasetEntry, at: &str, p: &mut Vec<String>) {
    if e.classes < 1 {
        p.push(format!("{at}.classes: expected at least 1, found 0"));
    }
    if e.image_size < 1 {
        p.push(format!("{at}.image_size: expected at least 1 pixel, found 0"));
    }
    if !matches!(e.mean.len(), 1 | 3) || e.std.len() != e.mean.len() {
        p.push(format!("{at}.mean/std: expected one value per channel (1 or 3) in both, found {} and {}", e.mean.len(), e.std.len()));
    }
    if let Some(bad) = e.std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
        p.push(format!("{at}.std: expected positive values, found {bad}"));
    }
    let l = &e.layout;
    let allowed: &[&str] = match e.format {
        Format::Cifar100Bin => &["labels"],
        Format::ImageFolder => &["train", "test", "shorter_side"],
        Format::ImagenetSubset => &["train", "test", "shorter_side", "class_list", "val_labels"],
        Format::Idx | Format::Cifar10Bin | Format::Stl10Bin | Format::TinyImagenetZip => &[],
    };
    let present = [
        ("labels", l.labels.is_some()),
        ("train", l.train.is_some()),
        ("test", l.test.is_some()),
        ("shorter_side", l.shorter_side.is_some()),
        ("class_list", l.class_list.is_some()),
        ("val_labels", l.val_labels.is_some()),
    ];
    for (key, here) in present {
        if here && !allowed.contains(&key) {
            p.push(format!(
                "{at}.layout.{key}: format {} does not read this key (it reads: {})",
                e.format.name(),
                if allowed.is_empty() { "none".to_owned() } else { allowed.join(", ") }
            ));
        }
    }
    let required: &[(&str, bool)] = match e.format {
        Format::ImageFolder => &[("train", l.train.is_some()), ("test", l.test.is_some())],
        Format::ImagenetSubset => &[("train", l.train.is_some()), ("test", l.test.is_some()), ("class_list", l.class_list.is_some()), ("val_labels", l.val_labels.is_some())],
        _ => &[],
    };
    for (key, here) in required {
        if !here {
            p.push(format!("{at}.layout.{key}: required by format {}", e.format.name()));
        }
    }
    if let Some(s) = l.shorter_side {
        if (s as usize) < e.image_size {
            p.push(format!("{at}.layout.shorter_side: expected at least image_size ({}), found {s}", e.image_size));
        }
    }
    for (key, pin) in [("class_list", &l.class_list), ("val_labels", &l.val_labels)] {
        if let Some(pin) = pin {
            check_hex(p, &format!("{at}.layout.{key}.sha256"), &pin.sha256, 64);
        }
    }
    if e.format == Format::ImagenetSubset && e.files.len() == 1 {
        p.push(format!("{at}.files: imagenet_subset takes both ILSVRC-2012 archives (train and val) or none"));
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
        "{}: {at}{msg}\nexpected `version: 2` and `datasets: {{NAME: {{description, homepage, license, format, \
         classes, image_size, mean, std, train_images?, unlabeled_images?, layout?, instructions?, files: [{{name, size, sha256 (or md5), md5?, \
         decompressed?: {{size, sha256}}, sources}}]}}}}`; fix that key or value",
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
        problems.push(format!("{at}: expected {len} lowercase hex digits, found {value:?} ({} characters)", value.len()));
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
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets.lock")
    }

    const GOOD: &str = r#"
version: 2
datasets:
  toy:
    description: "a toy"
    homepage: https://example.org
    license: MIT
    format: idx
    classes: 10
    image_size: 28
    mean: [0.5]
    std: [0.25]
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
        assert_eq!(lock.version, 2);
        assert_eq!(lock.path, real_lock_path());
        let fm = lock.get("fashion_mnist").unwrap();
        assert_eq!(fm.format, Format::Idx);
        assert_eq!(lock.info("fashion_mnist").unwrap().channels, 1);
        let names: Vec<&str> = fm.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]);
        let ti = &fm.files[0];
        assert_eq!(ti.size, 26421880);
        assert_eq!(ti.sha256.as_deref(), Some("3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"));
        assert_eq!(ti.md5.as_deref(), Some("8d4fb7e6c68d591d4c3dfef9ec88bf0d"));
        assert_eq!(ti.decompressed, Some(Member { size: 47040016, sha256: "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888".into() }));
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
        assert!(e.starts_with("/x/test.lock: line 15, column 9: "), "{e}");
        assert!(e.contains("datasets.toy.files[0]"), "{e}");
        assert!(e.contains("unknown field `sizee`"), "{e}");
        assert!(e.contains("fix that key or value"), "{e}");
        let e = err(&GOOD.replace("license: MIT", "license: MIT\n    licence: MIT"));
        assert!(e.contains("line 8, column 5") && e.contains("datasets.toy:") && e.contains("licence"), "{e}");
    }

    #[test]
    fn wrong_type_names_line_and_key_path() {
        let e = err(&GOOD.replace("size: 3", "size: three"));
        assert!(e.contains("line 15") && e.contains("datasets.toy.files[0].size"), "{e}");
        let e = err(&GOOD.replace("    format: idx\n", ""));
        assert!(e.contains("missing field `format`") && e.contains("datasets.toy"), "{e}");
    }

    #[test]
    fn validation_lists_every_problem_with_its_path() {
        let text = GOOD
            .replace("version: 2", "version: 1")
            .replace("name: a.gz", "name: ../a.gz")
            .replace("sha256: 0000000000000000000000000000000000000000000000000000000000000000", "sha256: ABCD\n        md5: xyz")
            .replace("https://example.org/a.gz", "ftp://example.org/a.gz\n          - file://relative/a.gz");
        let e = err(&text);
        for needle in [
            "/x/test.lock is not a valid datasets.lock (6 problems)",
            "version: expected 2, found 1",
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
        let dup =
            GOOD.replace("    files:\n", "    files:\n      - name: a.gz\n        size: 1\n        sha256: \"0000000000000000000000000000000000000000000000000000000000000000\"\n");
        assert!(err(&dup).contains("datasets.toy.files[1].name: \"a.gz\" appears twice"));
    }

    #[test]
    fn md5_only_pins_and_decode_facts_are_checked() {
        let md5_only = GOOD.replace(&format!("sha256: {}", "0".repeat(64)), &format!("md5: {}", "a".repeat(32)));
        let lock = Lock::parse(&md5_only, Path::new("t.lock")).unwrap();
        assert_eq!((lock.datasets["toy"].files[0].sha256.as_deref(), lock.datasets["toy"].files[0].md5.is_some()), (None, true));
        let neither = GOOD.replace(&format!("        sha256: {}\n", "0".repeat(64)), "");
        assert!(err(&neither).contains("datasets.toy.files[0]: expected sha256 (or, where none was ever published, md5), found neither"));
        let bad = GOOD.replace("classes: 10", "classes: 0").replace("std: [0.25]", "std: [0.25, -1]");
        let e = err(&bad);
        assert!(e.contains("datasets.toy.classes: expected at least 1"), "{e}");
        assert!(e.contains("datasets.toy.mean/std: expected one value per channel"), "{e}");
        assert!(e.contains("datasets.toy.std: expected positive values, found -1"), "{e}");
        let stray = GOOD.replace("    files:", "    layout: {train: t}\n    files:");
        assert!(err(&stray).contains("datasets.toy.layout.train: format idx does not read this key"), "{}", err(&stray));
        let folder = GOOD.replace("format: idx", "format: image_folder").replace("    files:", "    layout: {shorter_side: 20}\n    files:");
        let e = err(&folder);
        assert!(e.contains("layout.test: required by format image_folder") && e.contains("layout.shorter_side: expected at least image_size (28), found 20"), "{e}");
        let typo = GOOD.replace("format: idx", "format: imagefolder");
        assert!(err(&typo).contains("unknown variant `imagefolder`"), "{}", err(&typo));
    }

    #[test]
    fn pinned_files_resolve_next_to_the_lock_and_are_hash_checked() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("lists")).unwrap();
        std::fs::write(d.path().join("lists/a.txt"), "n01000001\n").unwrap();
        let lock = Lock::parse(GOOD, &d.path().join("datasets.lock")).unwrap();
        let good = PinnedFile { file: "lists/a.txt".into(), sha256: crate::util::sha256_hex(b"n01000001\n") };
        assert_eq!(lock.read_pinned(&good).unwrap(), "n01000001\n");
        let bad = PinnedFile { sha256: "0".repeat(64), ..good };
        let e = format!("{:#}", lock.read_pinned(&bad).unwrap_err());
        assert!(e.contains("lists/a.txt") && e.contains("expected sha256 0000"), "{e}");
        assert_eq!(lock.resolve("/abs/x"), PathBuf::from("/abs/x"));
    }

    #[test]
    fn every_shipped_dataset_has_a_source_or_instructions() {
        let lock = Lock::load(&real_lock_path()).unwrap();
        for (name, e) in &lock.datasets {
            let manual = e.files.iter().any(|f| f.sources.is_empty());
            assert!(!manual || e.instructions.is_some(), "{name}: manual files need instructions");
            let info = lock.info(name).unwrap();
            assert!(info.classes >= 10 || name == "cifar100_coarse", "{name}");
        }
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
