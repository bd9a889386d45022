//! Safe, atomic extraction of dataset archives (`.tar`, `.tar.gz`/`.tgz`, `.zip`) into the data cache.
//!
//! Owns: recognising the archive kind from its file name; checking every entry's name and link
//! target before anything is written (no absolute paths, no `..`, no drive prefixes, no links that
//! lead out); writing files ourselves into a sibling `<dest>.partial-<pid>` folder; the
//! `.repro-extracted` completion marker; and the final rename to `dest`. A refused, corrupt or
//! interrupted extraction never leaves a `dest` that looks complete.
//!
//! Symlinks are created only after every file and folder was written, and never beneath another
//! symlink, so no write can pass through a link planted by the archive.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Name of the completion marker written inside a finished extraction; holds the archive's file name.
pub const MARKER: &str = ".repro-extracted";

/// Longest symlink target accepted from a zip entry (the target is the entry's content).
const MAX_ZIP_LINK_TARGET: u64 = 4096;

/// The archive formats `extract` understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    Tar,
    TarGz,
    Zip,
}

impl ArchiveKind {
    /// Recognises `.tar`, `.tar.gz`, `.tgz` and `.zip` (case-insensitive); `None` for anything else.
    pub fn from_name(file_name: &str) -> Option<Self> {
        let lower = file_name.to_ascii_lowercase();
        if lower.ends_with(".tar.gz") || lower.ends_with(".tgz") {
            Some(Self::TarGz)
        } else if lower.ends_with(".tar") {
            Some(Self::Tar)
        } else if lower.ends_with(".zip") {
            Some(Self::Zip)
        } else {
            None
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// An entry would land outside the destination (absolute path, `..`, or a symlink/hard link pointing out).
    #[error("{archive}: entry {entry:?} would be written outside {dest}: {why}; the archive is unsafe or corrupt — delete it and fetch it again")]
    Unsafe { archive: PathBuf, entry: String, dest: PathBuf, why: String },
    /// The archive cannot be read to its end (truncated, bad gzip stream, tar header garbage, bad zip).
    #[error("{archive}: {msg}")]
    Corrupt { archive: PathBuf, msg: String },
    /// A filesystem operation failed; `what` says which, `path` where.
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, #[source] source: io::Error },
}

/// What one extraction wrote. A call that found `dest` already complete reports zeros.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtractReport {
    /// Regular files written (hard-link copies included; folders and symlinks not counted).
    pub files: usize,
    /// Bytes of file content written.
    pub bytes: u64,
}

/// True when `dest` holds the completion marker of a finished extraction.
pub fn is_extracted(dest: &Path) -> bool {
    dest.join(MARKER).is_file()
}

/// Extracts `archive` into `dest` atomically: everything goes into a sibling temp folder
/// (`<dest>.partial-<pid>`) which is renamed to `dest` only after every entry was written and a
/// completion marker file `.repro-extracted` (containing the archive file name) was written inside.
/// If `dest` already exists with that marker, returns Ok without work. If `dest` exists without
/// the marker (an interrupted earlier run), it is removed and extraction starts over. On any error
/// the temp folder is removed, so an interrupted or refused extraction never looks complete.
pub fn extract(archive: &Path, kind: ArchiveKind, dest: &Path) -> Result<ExtractReport, ExtractError> {
    let archive_name = archive
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| invalid("cannot extract archive", archive, "the path has no file name"))?;
    if marker_matches(dest, &archive_name) {
        return Ok(ExtractReport::default());
    }
    let dest_name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| invalid("cannot extract into", dest, "the path has no folder name"))?;
    let tmp = dest.with_file_name(format!("{dest_name}.partial-{}", std::process::id()));
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(io_err("cannot create folder", parent))?;
    }
    remove_any(dest)?;
    remove_any(&tmp)?;
    fs::create_dir(&tmp).map_err(io_err("cannot create folder", &tmp))?;
    let mut guard = RemoveOnDrop(Some(tmp.clone()));

    let file = File::open(archive).map_err(io_err("cannot open archive", archive))?;
    let mut x = Extraction::new(archive, dest, &tmp);
    match kind {
        ArchiveKind::Tar => x.tar(BufReader::new(file))?,
        ArchiveKind::TarGz => x.tar(flate2::read::GzDecoder::new(BufReader::new(file)))?,
        ArchiveKind::Zip => x.zip(file)?,
    }
    x.create_symlinks()?;
    let report = x.report;

    let marker = tmp.join(MARKER);
    fs::write(&marker, archive_name.as_bytes()).map_err(io_err("cannot write completion marker", &marker))?;
    if let Err(source) = fs::rename(&tmp, dest) {
        // Another process may have finished the same extraction first; its result is as good as ours.
        if marker_matches(dest, &archive_name) {
            return Ok(report);
        }
        return Err(ExtractError::Io { what: "cannot move the finished extraction to", path: dest.to_path_buf(), source });
    }
    guard.0 = None;
    Ok(report)
}

fn marker_matches(dest: &Path, archive_name: &str) -> bool {
    fs::read_to_string(dest.join(MARKER)).is_ok_and(|s| s.trim_end() == archive_name)
}

fn io_err<'p>(what: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> ExtractError + 'p {
    move |source| ExtractError::Io { what, path: path.to_path_buf(), source }
}

fn invalid(what: &'static str, path: &Path, msg: &str) -> ExtractError {
    ExtractError::Io { what, path: path.to_path_buf(), source: io::Error::new(io::ErrorKind::InvalidInput, msg.to_owned()) }
}

/// Removes whatever is at `path` (folder tree, file or link); nothing there is fine.
fn remove_any(path: &Path) -> Result<(), ExtractError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path).map_err(io_err("cannot remove stale folder", path)),
        Ok(_) => fs::remove_file(path).map_err(io_err("cannot remove stale file", path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("cannot inspect", path)(e)),
    }
}

/// Deletes the temp folder unless disarmed (also on panic).
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = fs::remove_dir_all(&path);
        }
    }
}

/// Reader wrapper that remembers whether the stream ran dry, so a tar that ends without its
/// end-of-archive block (a download cut at an entry boundary) is not mistaken for a whole one.
struct EofTracker<R> {
    inner: R,
    hit_eof: bool,
}

impl<R: Read> Read for EofTracker<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.hit_eof = true;
        }
        Ok(n)
    }
}

// ---------------------------------------------------------------------------------------------
// Name and link-target checks (pure; all paths relative to the extraction root).

/// Splits an entry name into its normal components, refusing anything that could leave the root.
/// Both `/` and `\` count as separators. An empty result means the root itself (e.g. `./`).
fn entry_components(name: &str) -> Result<Vec<&str>, String> {
    if name.is_empty() {
        return Err("empty name".into());
    }
    if name.contains('\0') {
        return Err("NUL byte in name".into());
    }
    if name.starts_with(['/', '\\']) {
        return Err("absolute path".into());
    }
    if has_drive_prefix(name) {
        return Err("Windows drive prefix".into());
    }
    let mut parts = Vec::new();
    for part in name.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => return Err("`..` component".into()),
            p => parts.push(p),
        }
    }
    Ok(parts)
}

fn has_drive_prefix(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':'
}

/// Checks a symlink target relative to the folder `parent` that holds the link. Only leading `..`
/// are accepted (as many as `parent` is deep); a `..` after a folder name is refused because where
/// it leads depends on whether that folder is itself a link.
fn check_symlink_target(parent: &[&str], target: &str) -> Result<(), String> {
    if target.is_empty() {
        return Err("symlink has an empty target".into());
    }
    if target.contains('\0') {
        return Err("NUL byte in symlink target".into());
    }
    if target.starts_with(['/', '\\']) || has_drive_prefix(target) {
        return Err(format!("symlink target {target:?} is absolute"));
    }
    let mut ups = 0usize;
    let mut seen_name = false;
    for part in target.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." if seen_name => {
                return Err(format!("symlink target {target:?} has `..` after a folder name, which cannot be checked safely"))
            }
            ".." => ups += 1,
            _ => seen_name = true,
        }
    }
    if ups > parent.len() {
        return Err(format!("symlink target {target:?} leads outside the destination"));
    }
    Ok(())
}

/// Resolves a hard-link target (tar names it from the archive root) lexically; `..` may not climb
/// above the root. Lexical resolution is exact here: no symlinks exist while files are written.
fn hard_link_target(target: &str) -> Result<PathBuf, String> {
    if target.is_empty() {
        return Err("hard link has an empty target".into());
    }
    if target.contains('\0') {
        return Err("NUL byte in hard link target".into());
    }
    if target.starts_with(['/', '\\']) || has_drive_prefix(target) {
        return Err(format!("hard link target {target:?} is absolute"));
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in target.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!("hard link target {target:?} leads outside the destination"));
                }
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(format!("hard link target {target:?} names no file"));
    }
    Ok(parts.iter().collect())
}

// ---------------------------------------------------------------------------------------------
// The extraction itself.

struct PendingLink {
    entry: String,
    target: String,
}

struct Extraction<'a> {
    archive: &'a Path,
    dest: &'a Path,
    tmp: &'a Path,
    report: ExtractReport,
    /// Regular files written so far (relative paths), the only valid hard-link targets.
    files: HashSet<PathBuf>,
    /// Symlinks to create once every file is written, by relative path (sorted: parents first).
    links: BTreeMap<PathBuf, PendingLink>,
    buf: Vec<u8>,
}

impl<'a> Extraction<'a> {
    fn new(archive: &'a Path, dest: &'a Path, tmp: &'a Path) -> Self {
        Self {
            archive,
            dest,
            tmp,
            report: ExtractReport::default(),
            files: HashSet::new(),
            links: BTreeMap::new(),
            buf: vec![0; 1 << 16],
        }
    }

    fn refuse(&self, entry: &str, why: String) -> ExtractError {
        ExtractError::Unsafe { archive: self.archive.to_path_buf(), entry: entry.to_owned(), dest: self.dest.to_path_buf(), why }
    }

    fn corrupt(&self, msg: String) -> ExtractError {
        ExtractError::Corrupt { archive: self.archive.to_path_buf(), msg }
    }

    /// Checked relative path of an entry; `None` when it names the root itself.
    fn rel_path(&self, name: &str) -> Result<Option<PathBuf>, ExtractError> {
        let parts = entry_components(name).map_err(|why| self.refuse(name, why))?;
        Ok(if parts.is_empty() { None } else { Some(parts.iter().collect()) })
    }

    /// Like `rel_path`, for entries that must name something below the root.
    fn rel_file_path(&self, name: &str) -> Result<PathBuf, ExtractError> {
        self.rel_path(name)?.ok_or_else(|| self.refuse(name, "the name points at the destination folder itself".into()))
    }

    /// A later entry at `rel` replaces an earlier symlink or file entry of the same name.
    fn claim(&mut self, rel: &Path) {
        self.links.remove(rel);
        self.files.remove(rel);
    }

    fn make_dir(&mut self, name: &str) -> Result<(), ExtractError> {
        let Some(rel) = self.rel_path(name)? else { return Ok(()) };
        self.claim(&rel);
        let path = self.tmp.join(&rel);
        fs::create_dir_all(&path).map_err(io_err("cannot create folder", &path))
    }

    fn create_parent(&self, path: &Path) -> Result<(), ExtractError> {
        match path.parent() {
            Some(parent) => fs::create_dir_all(parent).map_err(io_err("cannot create folder", parent)),
            None => Ok(()),
        }
    }

    /// Streams `data` into the entry's file; `expected` is the size the archive declares.
    fn write_file(&mut self, name: &str, data: &mut dyn Read, expected: Option<u64>) -> Result<(), ExtractError> {
        let rel = self.rel_file_path(name)?;
        self.claim(&rel);
        let path = self.tmp.join(&rel);
        self.create_parent(&path)?;
        let file = File::create(&path).map_err(io_err("cannot create file", &path))?;
        let mut out = BufWriter::with_capacity(1 << 16, file);
        let mut written = 0u64;
        loop {
            let n = match data.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.corrupt(format!("entry {name:?}: {e}"))),
            };
            out.write_all(&self.buf[..n]).map_err(io_err("cannot write", &path))?;
            written += n as u64;
        }
        out.into_inner().map_err(|e| io_err("cannot write", &path)(e.into_error()))?;
        if let Some(expected) = expected {
            if written != expected {
                return Err(self.corrupt(format!(
                    "entry {name:?}: the archive ends after {written} of its {expected} bytes (truncated download?)"
                )));
            }
        }
        self.files.insert(rel);
        self.report.files += 1;
        self.report.bytes += written;
        Ok(())
    }

    /// A hard link becomes a copy of an earlier regular file from the same archive.
    fn hard_link(&mut self, name: &str, target: &str) -> Result<(), ExtractError> {
        let rel = self.rel_file_path(name)?;
        let target_rel = hard_link_target(target).map_err(|why| self.refuse(name, why))?;
        if !self.files.contains(&target_rel) {
            return Err(self.corrupt(format!("entry {name:?} is a hard link to {target:?}, which is not an earlier file of the archive")));
        }
        if target_rel == rel {
            return Ok(());
        }
        self.claim(&rel);
        let from = self.tmp.join(&target_rel);
        let to = self.tmp.join(&rel);
        self.create_parent(&to)?;
        // fs::copy truncates an existing `to`; a folder there makes it fail, as it should.
        let bytes = fs::copy(&from, &to).map_err(io_err("cannot copy hard-linked file to", &to))?;
        self.files.insert(rel);
        self.report.files += 1;
        self.report.bytes += bytes;
        Ok(())
    }

    /// Checks a symlink now (so refusals come early) and queues it for `create_symlinks`.
    fn symlink(&mut self, name: &str, target: &str) -> Result<(), ExtractError> {
        let parts = entry_components(name).map_err(|why| self.refuse(name, why))?;
        let Some((_, parent)) = parts.split_last() else {
            return Err(self.refuse(name, "a symlink cannot replace the destination folder itself".into()));
        };
        check_symlink_target(parent, target).map_err(|why| self.refuse(name, why))?;
        let rel: PathBuf = parts.iter().collect();
        self.files.remove(&rel);
        self.links.insert(rel, PendingLink { entry: name.to_owned(), target: target.to_owned() });
        Ok(())
    }

    /// Creates the queued symlinks, refusing any whose folder (or any folder above it) is a symlink.
    fn create_symlinks(&mut self) -> Result<(), ExtractError> {
        let links = std::mem::take(&mut self.links);
        for (rel, link) in &links {
            let mut prefix = PathBuf::new();
            let parent_parts: Vec<_> = rel.parent().map(|p| p.components().collect()).unwrap_or_default();
            for part in parent_parts {
                prefix.push(part);
                let here = self.tmp.join(&prefix);
                match fs::symlink_metadata(&here) {
                    Ok(meta) if meta.file_type().is_symlink() => {
                        return Err(self.refuse(&link.entry, format!("its folder {} is itself a symlink", prefix.display())));
                    }
                    Ok(meta) if !meta.is_dir() => {
                        return Err(self.corrupt(format!("entry {:?}: its folder {} is a file", link.entry, prefix.display())));
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) => return Err(io_err("cannot inspect", &here)(e)),
                }
            }
            let path = self.tmp.join(rel);
            self.create_parent(&path)?;
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => {
                    return Err(self.refuse(&link.entry, "a symlink would replace a folder of the same name".into()));
                }
                Ok(_) => fs::remove_file(&path).map_err(io_err("cannot replace", &path))?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("cannot inspect", &path)(e)),
            }
            self.make_symlink(&link.entry, &link.target, &path)?;
        }
        Ok(())
    }

    #[cfg(unix)]
    fn make_symlink(&self, _entry: &str, target: &str, path: &Path) -> Result<(), ExtractError> {
        std::os::unix::fs::symlink(target, path).map_err(io_err("cannot create symlink", path))
    }

    #[cfg(not(unix))]
    fn make_symlink(&self, entry: &str, _target: &str, _path: &Path) -> Result<(), ExtractError> {
        Err(self.corrupt(format!("entry {entry:?} is a symlink, which repro creates only on Unix")))
    }

    // --- tar --------------------------------------------------------------------------------

    fn tar<R: Read>(&mut self, reader: R) -> Result<(), ExtractError> {
        let mut archive = tar::Archive::new(EofTracker { inner: reader, hit_eof: false });
        let entries = archive.entries().map_err(|e| self.corrupt(format!("not a readable tar archive: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| self.corrupt(format!("cannot read the next tar entry: {e}")))?;
            self.tar_entry(&mut entry)?;
        }
        let mut rest = archive.into_inner();
        if rest.hit_eof {
            return Err(self.corrupt("the archive ends before its end-of-archive block (truncated download?)".into()));
        }
        // Read to the very end so a gzip trailer (length and CRC) is checked too.
        io::copy(&mut rest, &mut io::sink()).map_err(|e| self.corrupt(format!("after the last entry: {e}")))?;
        Ok(())
    }

    fn tar_entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), ExtractError> {
        let name = utf8(entry.path_bytes().into_owned()).map_err(|n| self.corrupt(format!("entry name {n:?} is not UTF-8")))?;
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Directory => self.make_dir(&name),
            // Old tar writers mark folders as regular entries whose name ends in a slash.
            tar::EntryType::Regular if name.ends_with('/') && entry.size() == 0 => self.make_dir(&name),
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.size();
                self.write_file(&name, entry, Some(size))
            }
            tar::EntryType::GNUSparse => self.write_file(&name, entry, None),
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = match entry.link_name_bytes() {
                    Some(t) => utf8(t.into_owned()).map_err(|t| self.corrupt(format!("entry {name:?}: link target {t:?} is not UTF-8")))?,
                    None => String::new(),
                };
                if kind == tar::EntryType::Symlink {
                    self.symlink(&name, &target)
                } else {
                    self.hard_link(&name, &target)
                }
            }
            // Device files and fifos have no place in a dataset: skip them, count nothing.
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => Ok(()),
            // pax global header: metadata only.
            tar::EntryType::XGlobalHeader => Ok(()),
            other => Err(self.corrupt(format!("entry {name:?} has unsupported tar type {other:?}"))),
        }
    }

    // --- zip --------------------------------------------------------------------------------

    fn zip(&mut self, file: File) -> Result<(), ExtractError> {
        let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(|e| self.corrupt(format!("not a readable zip archive: {e}")))?;
        for i in 0..zip.len() {
            let mut entry = zip.by_index(i).map_err(|e| self.corrupt(format!("zip entry #{i}: {e}")))?;
            let name = entry.name().to_owned();
            const S_IFMT: u32 = 0o170000;
            match entry.unix_mode().map(|m| m & S_IFMT) {
                Some(0o120000) => {
                    let mut target = String::new();
                    (&mut entry)
                        .take(MAX_ZIP_LINK_TARGET + 1)
                        .read_to_string(&mut target)
                        .map_err(|e| self.corrupt(format!("entry {name:?}: symlink target: {e}")))?;
                    if target.len() as u64 > MAX_ZIP_LINK_TARGET {
                        return Err(self.corrupt(format!("entry {name:?}: symlink target longer than {MAX_ZIP_LINK_TARGET} bytes")));
                    }
                    self.symlink(&name, &target)?;
                }
                // fifo, character device, block device, socket: skip, count nothing.
                Some(0o010000 | 0o020000 | 0o060000 | 0o140000) => {}
                Some(0o040000) => self.make_dir(&name)?,
                _ if entry.is_dir() => self.make_dir(&name)?,
                _ => {
                    let size = entry.size();
                    self.write_file(&name, &mut entry, Some(size))?;
                }
            }
        }
        Ok(())
    }
}

fn utf8(bytes: Vec<u8>) -> Result<String, String> {
    String::from_utf8(bytes).map_err(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use tar::{EntryType, Header};

    // --- archive builders ---------------------------------------------------------------------

    /// Appends an entry whose name and link target bytes go straight into the header, bypassing
    /// the tar crate's own path checks (which would refuse the hostile names we need).
    fn raw<W: Write>(b: &mut tar::Builder<W>, name: &str, kind: EntryType, link: &str, data: &[u8]) {
        let mut h = Header::new_gnu();
        {
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(if kind == EntryType::Directory { 0o755 } else { 0o644 });
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    fn file<W: Write>(b: &mut tar::Builder<W>, name: &str, data: &[u8]) {
        let mut h = Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(EntryType::Regular);
        b.append_data(&mut h, name, data).unwrap();
    }

    fn dir<W: Write>(b: &mut tar::Builder<W>, name: &str) {
        let mut h = Header::new_gnu();
        h.set_size(0);
        h.set_mode(0o755);
        h.set_entry_type(EntryType::Directory);
        b.append_data(&mut h, name, io::empty()).unwrap();
    }

    fn tar_file(path: &Path, fill: impl FnOnce(&mut tar::Builder<Vec<u8>>)) {
        let mut b = tar::Builder::new(Vec::new());
        fill(&mut b);
        fs::write(path, b.into_inner().unwrap()).unwrap();
    }

    fn tgz_file(path: &Path, fill: impl FnOnce(&mut tar::Builder<Vec<u8>>)) {
        let mut b = tar::Builder::new(Vec::new());
        fill(&mut b);
        let tar = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar).unwrap();
        fs::write(path, gz.finish().unwrap()).unwrap();
    }

    fn zip_file(path: &Path, fill: impl FnOnce(&mut zip::ZipWriter<File>, zip::write::SimpleFileOptions)) {
        let mut z = zip::ZipWriter::new(File::create(path).unwrap());
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        fill(&mut z, opts);
        z.finish().unwrap();
    }

    /// Deterministic, poorly compressible bytes.
    fn noise(n: usize, seed: u32) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    /// Neither `dest` nor any `*.partial-*` sibling may be left behind.
    fn assert_nothing_left(dest: &Path) {
        assert!(fs::symlink_metadata(dest).is_err(), "{} was left behind", dest.display());
        let parent = dest.parent().unwrap();
        for e in fs::read_dir(parent).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!name.contains(".partial-"), "temp folder {name} was left behind");
        }
    }

    fn refused(archive: &Path, kind: ArchiveKind, dest: &Path, entry: &str) {
        match extract(archive, kind, dest) {
            Err(ExtractError::Unsafe { entry: e, ref why, .. }) => assert_eq!(e, entry, "refused the wrong entry ({why})"),
            other => panic!("expected Unsafe for {entry:?}, got {other:?}"),
        }
        assert_nothing_left(dest);
    }

    fn corrupt(archive: &Path, kind: ArchiveKind, dest: &Path) -> String {
        let err = extract(archive, kind, dest).unwrap_err();
        assert!(matches!(err, ExtractError::Corrupt { .. }), "expected Corrupt, got {err:?}");
        assert_nothing_left(dest);
        err.to_string()
    }

    // --- happy paths ----------------------------------------------------------------------------

    #[test]
    fn kind_from_name() {
        assert_eq!(ArchiveKind::from_name("cifar-10-binary.tar.gz"), Some(ArchiveKind::TarGz));
        assert_eq!(ArchiveKind::from_name("imagenette2-160.TGZ"), Some(ArchiveKind::TarGz));
        assert_eq!(ArchiveKind::from_name("stl10_binary.tar"), Some(ArchiveKind::Tar));
        assert_eq!(ArchiveKind::from_name("tiny-imagenet-200.Zip"), Some(ArchiveKind::Zip));
        assert_eq!(ArchiveKind::from_name("train-images-idx3-ubyte.gz"), None);
        assert_eq!(ArchiveKind::from_name("tar"), None);
    }

    #[test]
    fn cifar10_layout_tar_gz_extracts_once() {
        let t = tempfile::tempdir().unwrap();
        let archive = t.path().join("cifar-10-binary.tar.gz");
        let batch = noise(2 * 3073, 1);
        let meta = b"airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n";
        tgz_file(&archive, |b| {
            dir(b, "cifar-10-batches-bin/");
            file(b, "cifar-10-batches-bin/data_batch_1.bin", &batch);
            file(b, "cifar-10-batches-bin/batches.meta.txt", meta);
        });
        let dest = t.path().join("cifar-10-binary.tar.gz.extracted");
        assert!(!is_extracted(&dest));
        let report = extract(&archive, ArchiveKind::TarGz, &dest).unwrap();
        assert_eq!(report, ExtractReport { files: 2, bytes: (2 * 3073 + meta.len()) as u64 });
        assert_eq!(fs::read(dest.join("cifar-10-batches-bin/data_batch_1.bin")).unwrap(), batch);
        assert_eq!(fs::read(dest.join("cifar-10-batches-bin/batches.meta.txt")).unwrap(), meta);
        assert!(is_extracted(&dest));
        assert_eq!(fs::read_to_string(dest.join(MARKER)).unwrap(), "cifar-10-binary.tar.gz");
        assert_nothing_left(&t.path().join("no-such-dest")); // no partial siblings

        let mtime = fs::metadata(dest.join(MARKER)).unwrap().modified().unwrap();
        let again = extract(&archive, ArchiveKind::TarGz, &dest).unwrap();
        assert_eq!(again, ExtractReport::default(), "second call must do no work");
        assert_eq!(fs::metadata(dest.join(MARKER)).unwrap().modified().unwrap(), mtime);
    }

    #[test]
    fn no_op_when_complete_even_if_archive_is_gone() {
        let t = tempfile::tempdir().unwrap();
        let archive = t.path().join("x.tar");
        tar_file(&archive, |b| file(b, "f", b"1"));
        let dest = t.path().join("out");
        extract(&archive, ArchiveKind::Tar, &dest).unwrap();
        fs::remove_file(&archive).unwrap();
        assert_eq!(extract(&archive, ArchiveKind::Tar, &dest).unwrap(), ExtractReport::default());
    }

    #[test]
    fn tar_nested_folders_long_names_and_internal_symlink() {
        let t = tempfile::tempdir().unwrap();
        let archive = t.path().join("stl10_binary.tar");
        let long = format!("deep/{}/{}.bin", "d".repeat(80), "f".repeat(60)); // > 100 bytes: GNU long name
        tar_file(&archive, |b| {
            file(b, "./b/file", b"target");
            file(b, "a/x/y/z.txt", b"zzz");
            file(b, &long, b"long");
            raw(b, "a/link", EntryType::Symlink, "../b/file", b"");
            raw(b, "a/x/up", EntryType::Symlink, "..", b"");
            raw(b, "./", EntryType::Directory, "", b"");
        });
        let dest = t.path().join("out");
        let report = extract(&archive, ArchiveKind::Tar, &dest).unwrap();
        assert_eq!(report, ExtractReport { files: 3, bytes: 13 });
        assert_eq!(fs::read(dest.join("a/x/y/z.txt")).unwrap(), b"zzz");
        assert_eq!(fs::read(dest.join(&long)).unwrap(), b"long");
        assert_eq!(fs::read_link(dest.join("a/link")).unwrap(), Path::new("../b/file"));
        assert_eq!(fs::read(dest.join("a/link")).unwrap(), b"target");
        assert!(dest.join("a/x/up/x/y/z.txt").is_file());
        assert!(is_extracted(&dest));
    }

    #[test]
    fn tar_hard_link_to_earlier_file_is_copied() {
        let t = tempfile::tempdir().unwrap();
        let archive = t.path().join("h.tar");
        tar_file(&archive, |b| {
            file(b, "a/orig", b"hello");
            raw(b, "b/copy", EntryType::Link, "a/orig", b"");
        });
        let dest = t.path().join("out");
        assert_eq!(extract(&archive, ArchiveKind::Tar, &dest).unwrap(), ExtractReport { files: 2, bytes: 10 });
        assert_eq!(fs::read(dest.join("b/copy")).unwrap(), b"hello");
    }

    #[test]
    fn devices_and_fifos_are_skipped() {
        let t = tempfile::tempdir().unwrap();
        let archive = t.path().join("d.tar");
        tar_file(&archive, |b| {
            raw(b, "dev/fifo", EntryType::Fifo, "", b"");
            raw(b, "dev/tty", EntryType::Char, "", b"");
            raw(b, "dev/sda", EntryType::Block, "", b"");
            file(b, "ok", b"1");
        });
        let dest = t.path().join("out");
        assert_eq!(extract(&archive, ArchiveKind::Tar, &dest).unwrap(), ExtractReport { files: 1, bytes: 1 });
        assert!(!dest.join("dev/fifo").exists() && !dest.join("dev/tty").exists() && !dest.join("dev/sda").exists());
    }

    #[test]
    fn zip_happy_path_with_folders_and_safe_symlink() {
        let t = tempfile::tempdir().unwrap();
        let archive = t.path().join("tiny-imagenet-200.zip");
        let img = noise(5000, 7);
        zip_file(&archive, |z, o| {
            z.add_directory("tiny-imagenet-200/", o).unwrap();
            z.start_file("tiny-imagenet-200/wnids.txt", o).unwrap();
            z.write_all(b"n01443537\n").unwrap();
            z.start_file("tiny-imagenet-200/train/n01443537/images/n01443537_0.JPEG", o).unwrap();
            z.write_all(&img).unwrap();
            z.add_symlink("tiny-imagenet-200/ids", "wnids.txt", o).unwrap();
        });
        let dest = t.path().join("out");
        let report = extract(&archive, ArchiveKind::Zip, &dest).unwrap();
        assert_eq!(report, ExtractReport { files: 2, bytes: 10 + 5000 });
        assert_eq!(fs::read(dest.join("tiny-imagenet-200/train/n01443537/images/n01443537_0.JPEG")).unwrap(), img);
        assert_eq!(fs::read(dest.join("tiny-imagenet-200/ids")).unwrap(), b"n01443537\n");
        assert!(is_extracted(&dest));
    }

    #[test]
    fn stale_dest_without_marker_is_replaced() {
        let t = tempfile::tempdir().unwrap();
        let archive = t.path().join("imagenette2-160.tgz");
        tgz_file(&archive, |b| file(b, "imagenette2-160/train/a.JPEG", b"jpeg"));
        let dest = t.path().join("out");
        fs::create_dir_all(dest.join("imagenette2-160/train")).unwrap();
        fs::write(dest.join("imagenette2-160/train/half-written.JPEG"), b"jp").unwrap();
        let report = extract(&archive, ArchiveKind::TarGz, &dest).unwrap();
        assert_eq!(report, ExtractReport { files: 1, bytes: 4 });
        assert!(!dest.join("imagenette2-160/train/half-written.JPEG").exists());
        assert!(is_extracted(&dest));
    }

    #[test]
    fn marker_of_another_archive_means_stale() {
        let t = tempfile::tempdir().unwrap();
        let archive = t.path().join("new.tar");
        tar_file(&archive, |b| file(b, "f", b"new"));
        let dest = t.path().join("out");
        fs::create_dir_all(&dest).unwrap();
        fs::write(dest.join(MARKER), "old.tar").unwrap();
        assert_eq!(extract(&archive, ArchiveKind::Tar, &dest).unwrap().files, 1);
        assert_eq!(fs::read_to_string(dest.join(MARKER)).unwrap(), "new.tar");
    }

    // --- refusals -------------------------------------------------------------------------------

    #[test]
    fn refuses_hostile_tar_names() {
        let t = tempfile::tempdir().unwrap();
        let dest = t.path().join("out");
        for (i, name) in ["/etc/x", "../evil", "a/../../evil", "a/../b", "C:/evil", "..\\evil", ""].iter().enumerate() {
            let archive = t.path().join(format!("n{i}.tar.gz"));
            tgz_file(&archive, |b| {
                file(b, "fine/first", b"ok");
                raw(b, name, EntryType::Regular, "", b"evil");
            });
            refused(&archive, ArchiveKind::TarGz, &dest, name);
        }
        assert!(!t.path().join("evil").exists() && !t.path().parent().unwrap().join("evil").exists());
    }

    #[test]
    fn refuses_escaping_links() {
        let t = tempfile::tempdir().unwrap();
        let dest = t.path().join("out");
        let cases: [(&str, EntryType, &str); 6] = [
            ("a/passwd", EntryType::Symlink, "/etc/passwd"),
            ("a/link", EntryType::Symlink, "../../outside"),
            ("top", EntryType::Symlink, ".."),
            ("a/l", EntryType::Symlink, "b/../../x"),
            ("a/hard", EntryType::Link, "../outside"),
            ("a/hard2", EntryType::Link, "/etc/passwd"),
        ];
        for (i, (name, kind, target)) in cases.iter().enumerate() {
            let archive = t.path().join(format!("l{i}.tar"));
            tar_file(&archive, |b| {
                file(b, "a/f", b"x");
                raw(b, name, *kind, target, b"");
            });
            refused(&archive, ArchiveKind::Tar, &dest, name);
        }
    }

    #[test]
    fn refuses_writing_through_or_stacking_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let dest = t.path().join("out");
        // A safe-looking link, then a file "through" it: the file lands in a real folder first,
        // and the link may not replace that folder.
        let a = t.path().join("through.tar");
        tar_file(&a, |b| {
            raw(b, "lnk", EntryType::Symlink, "sub", b"");
            file(b, "lnk/evil", b"x");
        });
        refused(&a, ArchiveKind::Tar, &dest, "lnk");
        // A chain where each link alone looks inside, but together they climb out.
        let c = t.path().join("chain.tar");
        tar_file(&c, |b| {
            raw(b, "a/b/d", EntryType::Symlink, "../..", b"");
            raw(b, "a/b/d/l", EntryType::Symlink, "../../../x", b"");
        });
        refused(&c, ArchiveKind::Tar, &dest, "a/b/d/l");
    }

    #[test]
    fn hard_link_to_unknown_file_is_corrupt() {
        let t = tempfile::tempdir().unwrap();
        let archive = t.path().join("h.tar");
        tar_file(&archive, |b| raw(b, "copy", EntryType::Link, "later", b""));
        let msg = corrupt(&archive, ArchiveKind::Tar, &t.path().join("out"));
        assert!(msg.contains("not an earlier file"), "{msg}");
    }

    #[test]
    fn refuses_hostile_zip_entries() {
        let t = tempfile::tempdir().unwrap();
        let dest = t.path().join("out");
        let a = t.path().join("evil.zip");
        zip_file(&a, |z, o| {
            z.start_file("ok.txt", o).unwrap();
            z.write_all(b"fine").unwrap();
            z.start_file("../evil.txt", o).unwrap();
            z.write_all(b"evil").unwrap();
        });
        refused(&a, ArchiveKind::Zip, &dest, "../evil.txt");
        let b = t.path().join("abs.zip");
        zip_file(&b, |z, o| {
            z.start_file("/tmp/evil.txt", o).unwrap();
            z.write_all(b"evil").unwrap();
        });
        refused(&b, ArchiveKind::Zip, &dest, "/tmp/evil.txt");
        let c = t.path().join("link.zip");
        zip_file(&c, |z, o| {
            z.add_symlink("d/link", "../../outside", o).unwrap();
        });
        refused(&c, ArchiveKind::Zip, &dest, "d/link");
    }

    // --- corruption -----------------------------------------------------------------------------

    #[test]
    fn truncated_tar_gz_is_corrupt() {
        let t = tempfile::tempdir().unwrap();
        let archive = t.path().join("cifar-10-binary.tar.gz");
        tgz_file(&archive, |b| {
            file(b, "cifar-10-batches-bin/data_batch_1.bin", &noise(2 * 3073, 3));
            file(b, "cifar-10-batches-bin/batches.meta.txt", b"airplane\n");
        });
        let bytes = fs::read(&archive).unwrap();
        fs::write(&archive, &bytes[..bytes.len() / 2]).unwrap();
        corrupt(&archive, ArchiveKind::TarGz, &t.path().join("out"));
    }

    #[test]
    fn tar_gz_with_bad_trailer_is_corrupt() {
        let t = tempfile::tempdir().unwrap();
        let archive = t.path().join("x.tgz");
        tgz_file(&archive, |b| file(b, "f", b"data"));
        let mut bytes = fs::read(&archive).unwrap();
        let n = bytes.len();
        bytes[n - 8] ^= 0xff; // CRC32 in the gzip trailer
        fs::write(&archive, &bytes).unwrap();
        corrupt(&archive, ArchiveKind::TarGz, &t.path().join("out"));
    }

    #[test]
    fn truncated_plain_tar_is_corrupt() {
        let t = tempfile::tempdir().unwrap();
        let dest = t.path().join("out");
        let full = t.path().join("full.tar");
        tar_file(&full, |b| {
            file(b, "a", b"first");
            file(b, "b", &noise(3000, 5));
        });
        let bytes = fs::read(&full).unwrap();
        // Cut at an entry boundary (after a's header + data block) and in the middle of b's data.
        for (i, cut) in [1024, 1024 + 512 + 700].iter().enumerate() {
            let p = t.path().join(format!("cut{i}.tar"));
            fs::write(&p, &bytes[..*cut]).unwrap();
            corrupt(&p, ArchiveKind::Tar, &dest);
        }
    }

    #[test]
    fn garbage_and_empty_archives_are_corrupt() {
        let t = tempfile::tempdir().unwrap();
        let dest = t.path().join("out");
        let g = t.path().join("garbage.tar");
        fs::write(&g, vec![b'A'; 2048]).unwrap();
        corrupt(&g, ArchiveKind::Tar, &dest);
        let e = t.path().join("empty.tar");
        fs::write(&e, b"").unwrap();
        corrupt(&e, ArchiveKind::Tar, &dest);
        let z = t.path().join("garbage.zip");
        fs::write(&z, noise(1000, 9)).unwrap();
        corrupt(&z, ArchiveKind::Zip, &dest);
        let gz = t.path().join("plain.tar.gz");
        tar_file(&gz, |b| file(b, "f", b"not gzipped"));
        corrupt(&gz, ArchiveKind::TarGz, &dest);
    }

    #[test]
    fn corrupt_zip_data_is_corrupt() {
        let t = tempfile::tempdir().unwrap();
        let archive = t.path().join("x.zip");
        let data = noise(4000, 11);
        zip_file(&archive, |z, o| {
            z.start_file("f.bin", o.compression_method(zip::CompressionMethod::Stored)).unwrap();
            z.write_all(&data).unwrap();
        });
        let mut bytes = fs::read(&archive).unwrap();
        let at = bytes.windows(16).position(|w| w == &data[100..116]).unwrap();
        bytes[at] ^= 0xff; // CRC no longer matches
        fs::write(&archive, &bytes).unwrap();
        let msg = corrupt(&archive, ArchiveKind::Zip, &t.path().join("out"));
        assert!(msg.contains("f.bin"), "{msg}");
    }

    #[test]
    fn missing_archive_is_io_error_naming_it() {
        let t = tempfile::tempdir().unwrap();
        let archive = t.path().join("nope.tar");
        let err = extract(&archive, ArchiveKind::Tar, &t.path().join("out")).unwrap_err();
        assert!(matches!(err, ExtractError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("nope.tar"), "{err}");
        assert_nothing_left(&t.path().join("out"));
    }

    #[test]
    fn name_checks() {
        assert_eq!(entry_components("./a//b/./c").unwrap(), ["a", "b", "c"]);
        assert!(entry_components("./").unwrap().is_empty());
        for bad in ["", "/x", "\\x", "C:x", "c:\\x", "a/..", "a\\..\\..\\x", "a\0b"] {
            assert!(entry_components(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_symlink_target(&["a"], "../b/file").is_ok());
        assert!(check_symlink_target(&[], "b/./c").is_ok());
        for bad in ["", "/etc/passwd", "../..", "b/../c", "C:/x", "\\\\server\\share"] {
            assert!(check_symlink_target(&["a"], bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(hard_link_target("a/../b/f").unwrap(), Path::new("b/f"));
        assert!(hard_link_target("a/../../f").is_err());
    }

    #[test]
    fn unsafe_message_names_entry_and_advice() {
        let t = tempfile::tempdir().unwrap();
        let archive = t.path().join("x.tar");
        tar_file(&archive, |b| raw(b, "../evil", EntryType::Regular, "", b"e"));
        let started = Instant::now();
        let msg = extract(&archive, ArchiveKind::Tar, &t.path().join("out")).unwrap_err().to_string();
        assert!(started.elapsed().as_secs() < 5);
        assert!(msg.contains("\"../evil\"") && msg.contains("x.tar") && msg.contains("fetch it again"), "{msg}");
    }
}
