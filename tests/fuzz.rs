//! Hostile input, by machine: property tests (proptest) that feed random and mutated IDX, CIFAR and
//! STL-10 files, tar and zip archives, and ONNX encoders to the real decoders, the extractor and
//! ONNX Runtime's loader with repro's metadata reader. Each must return a result, never panic or
//! crash, and a file's error must name the file; the extractor must write nothing outside its
//! destination. Cases per property:
//! `PROPTEST_CASES` (256 unless set); a failing input is written to `proptest-regressions/fuzz.txt`
//! and replayed first on later runs, and the ones found so far are kept as named tests below.

use std::io::Write;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use repro::data::{cifar, extract, idx, stl10};

/// Byte-level edits of a valid input: overwrite, insert, delete, truncate.
#[derive(Debug, Clone)]
enum Edit {
    Set(f64, u8),
    Insert(f64, Vec<u8>),
    Delete(f64, usize),
    Truncate(f64),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (0.0..1.0f64, any::<u8>()).prop_map(|(a, b)| Edit::Set(a, b)),
        1 => (0.0..1.0f64, proptest::collection::vec(any::<u8>(), 1..16)).prop_map(|(a, b)| Edit::Insert(a, b)),
        1 => (0.0..1.0f64, 1usize..64).prop_map(|(a, n)| Edit::Delete(a, n)),
        1 => (0.0..1.0f64).prop_map(Edit::Truncate),
    ]
}

fn mutate(bytes: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for e in edits {
        let at = |f: f64, len: usize| ((f * len as f64) as usize).min(len);
        match e {
            Edit::Set(f, v) if !b.is_empty() => {
                let i = at(*f, b.len() - 1);
                b[i] = *v;
            }
            Edit::Set(..) => {}
            Edit::Insert(f, v) => {
                let i = at(*f, b.len());
                b.splice(i..i, v.iter().copied());
            }
            Edit::Delete(f, n) => {
                let i = at(*f, b.len());
                let j = (i + n).min(b.len());
                b.drain(i..j);
            }
            Edit::Truncate(f) => b.truncate(at(*f, b.len())),
        }
    }
    b
}

fn idx_bytes(dims: &[u32], fill: u8) -> Vec<u8> {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend(d.to_be_bytes());
    }
    b.extend(std::iter::repeat_n(fill, dims.iter().map(|&d| d as usize).product()));
    b
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A decoder's error must name the file it is about (one of `files`).
fn names_its_file<T>(r: &anyhow::Result<T>, files: &[&Path]) {
    if let Err(e) = r {
        let said = format!("{e:#}");
        assert!(files.iter().any(|f| said.contains(&*f.display().to_string())), "the error names none of {files:?}: {said}");
    }
}

/// Every path under `root` (symlinks not followed).
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            out.push(p.clone());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            }
        }
    }
    out
}

/// Extracts `archive` (written as `name`) in a fresh folder and checks that nothing escaped: the
/// folder holds only the archive and the destination, and every symlink inside the destination
/// resolves inside it.
fn extract_confined(name: &str, kind: extract::ArchiveKind, archive: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join(name);
    std::fs::write(&a, archive).unwrap();
    let dest = dir.path().join("out");
    let _ = extract::extract(&a, kind, &dest);
    let mut top: Vec<String> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    top.sort();
    assert!(top.iter().all(|n| n == name || n == "out"), "the extraction left {top:?} beside its destination");
    let Ok(real_dest) = std::fs::canonicalize(&dest) else { return };
    for p in walk(&real_dest) {
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
            // By hand, not `canonicalize`: a link to a missing file outside must be caught too.
            let to = resolve(&p, 0);
            assert!(to.starts_with(&real_dest), "{} points outside the destination, to {}", p.display(), to.display());
        }
    }
}

/// Where `path` leads, following each symlink along it (at most 40 deep) and taking the rest,
/// which may not exist, by its words.
fn resolve(path: &Path, depth: usize) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::Normal(n) => {
                out.push(n);
                if depth < 40 {
                    if let Ok(to) = std::fs::read_link(&out) {
                        let base = out.parent().map(Path::to_owned).unwrap_or_default();
                        out = resolve(&base.join(to), depth + 1);
                    }
                }
            }
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Names that try to leave the destination or confuse the extractor.
const NAMES: &[&str] = &["a.txt", "d/b.bin", "../up", "/abs", "d/../../x", "./c", "d//e", ".", "", "d/", "..", "a/./../..", "é/ü", "x\\..\\y", "link", "d/link"];

#[derive(Debug, Clone)]
enum Entry {
    File(String, Vec<u8>),
    Dir(String),
    Symlink(String, String),
    Hardlink(String, String),
}

fn entry() -> impl Strategy<Value = Entry> {
    let name = || prop_oneof![3 => proptest::sample::select(NAMES).prop_map(str::to_owned), 1 => "[a-z./]{0,12}"];
    prop_oneof![
        3 => (name(), proptest::collection::vec(any::<u8>(), 0..64)).prop_map(|(n, b)| Entry::File(n, b)),
        1 => name().prop_map(Entry::Dir),
        2 => (name(), name()).prop_map(|(n, t)| Entry::Symlink(n, t)),
        1 => (name(), name()).prop_map(|(n, t)| Entry::Hardlink(n, t)),
    ]
}

/// A tar whose header names are written byte for byte (the tar crate's own path checks bypassed).
fn tar_of(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut h = tar::Header::new_gnu();
        let (name, link, data, kind): (&str, &str, &[u8], tar::EntryType) = match e {
            Entry::File(n, b) => (n, "", b, tar::EntryType::Regular),
            Entry::Dir(n) => (n, "", &[], tar::EntryType::Directory),
            Entry::Symlink(n, t) => (n, t, &[], tar::EntryType::Symlink),
            Entry::Hardlink(n, t) => (n, t, &[], tar::EntryType::Link),
        };
        let g = h.as_gnu_mut().unwrap();
        for (dst, src) in [(&mut g.name[..], name.as_bytes()), (&mut g.linkname[..], link.as_bytes())] {
            let n = src.len().min(dst.len());
            dst[..n].copy_from_slice(&src[..n]);
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.extend(std::iter::repeat_n(0u8, (512 - data.len() % 512) % 512));
    }
    out.extend([0u8; 1024]);
    out
}

fn zip_of(entries: &[Entry]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let o = zip::write::SimpleFileOptions::default();
    for e in entries {
        let _ = match e {
            Entry::File(n, b) => z.start_file(n.as_str(), o).and_then(|()| z.write_all(b).map_err(Into::into)),
            Entry::Dir(n) => z.add_directory(n.as_str(), o),
            Entry::Symlink(n, t) | Entry::Hardlink(n, t) => z.add_symlink(n.as_str(), t.as_str(), o),
        };
    }
    z.finish().map(|c| c.into_inner()).unwrap_or_default()
}

/// A small real encoder (CIFAR-stem ResNet-18, width 2) as `repro export` writes it.
fn encoder_bytes() -> Vec<u8> {
    use repro::nn::resnet::ResNet;
    use repro::plan::{ResnetDepth, ResnetStem};
    tch::manual_seed(0);
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let net = repro::nn::Encoder::Resnet(ResNet::new(&vs.root(), 1, ResnetDepth::R18, ResnetStem::Cifar, 2, false));
    let meta = vec![("repro.mean".to_owned(), "[0.2860]".to_owned()), ("repro.std".to_owned(), "[0.3530]".to_owned()), ("repro.image_size".to_owned(), "28".to_owned())];
    repro::export::encoder_onnx(&net, 1, &meta).unwrap()
}

/// Loads `bytes` with ONNX Runtime and reads repro's metadata from it; on success, embeds a batch.
fn load_encoder(bytes: &[u8]) {
    if let Ok(mut enc) = repro::eval::session::Encoder::from_bytes(bytes, false) {
        if let Ok(pre) = repro::eval::Preprocess::from_metadata(&enc, &[0.5], &[0.5]) {
            let set = repro::data::ImageSet { n: 2, c: 1, h: 28, w: 28, pixels: vec![128u8; 2 * 28 * 28].into(), labels: vec![0, 1] };
            let _ = repro::eval::embed(&mut enc, &set, &pre, 2);
        }
    }
}

proptest! {
    #[test]
    fn idx_parse_takes_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = idx::parse(&bytes);
    }

    #[test]
    fn idx_headers_with_any_dims_are_checked(dims in proptest::collection::vec(prop_oneof![0u32..4, Just(u32::MAX), Just(1 << 31), any::<u32>()], 0..5), body in 0usize..32, edits in proptest::collection::vec(edit(), 0..3)) {
        let mut b = vec![0, 0, 8, dims.len() as u8];
        for d in &dims {
            b.extend(d.to_be_bytes());
        }
        b.extend(std::iter::repeat_n(7u8, body));
        let b = mutate(&b, &edits);
        let _ = idx::parse(&b);
        // Through the file reader too, gzipped.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x-idx3-ubyte.gz");
        std::fs::write(&p, mutate(&gz(&b), &edits)).unwrap();
        names_its_file(&idx::read(&p), &[&p]);
    }

    #[test]
    fn idx_valid_files_mutated(edits in proptest::collection::vec(edit(), 1..6)) {
        let _ = idx::parse(&mutate(&idx_bytes(&[3, 4, 4], 9), &edits));
    }

    #[test]
    fn cifar_records_mutated(records in 0usize..3, fine in any::<bool>(), edits in proptest::collection::vec(edit(), 0..6)) {
        let record = if fine { 2 } else { 1 } + 3072;
        let mut b = Vec::new();
        for i in 0..records {
            b.push((i % 10) as u8);
            if fine {
                b.push(((i * 7) % 100) as u8);
            }
            b.extend(std::iter::repeat_n(i as u8, record - if fine { 2 } else { 1 }));
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("data_batch_1.bin");
        std::fs::write(&p, mutate(&b, &edits)).unwrap();
        names_its_file(&cifar::decode(&[&p], if fine { cifar::Labels::Fine } else { cifar::Labels::Only }), &[&p]);
        names_its_file(&cifar::decode(&[&p, &p], cifar::Labels::Coarse), &[&p]);
    }

    #[test]
    fn stl10_files_mutated(images in 0usize..3, edits in proptest::collection::vec(edit(), 0..6), label_edits in proptest::collection::vec(edit(), 0..3)) {
        let dir = tempfile::tempdir().unwrap();
        let (x, y) = (dir.path().join("train_X.bin"), dir.path().join("train_y.bin"));
        std::fs::write(&x, mutate(&vec![5u8; images * 3 * 96 * 96], &edits)).unwrap();
        std::fs::write(&y, mutate(&(0..images).map(|i| (i % 10) as u8 + 1).collect::<Vec<_>>(), &label_edits)).unwrap();
        names_its_file(&stl10::decode(&x, &y), &[&x, &y]);
        names_its_file(&stl10::decode_unlabeled(&x), &[&x]);
    }

    #[test]
    fn tar_archives_with_hostile_entries_stay_inside(entries in proptest::collection::vec(entry(), 1..6), edits in proptest::collection::vec(edit(), 0..2), gzipped in any::<bool>()) {
        let t = mutate(&tar_of(&entries), &edits);
        if gzipped {
            extract_confined("a.tar.gz", extract::ArchiveKind::TarGz, &gz(&t));
        } else {
            extract_confined("a.tar", extract::ArchiveKind::Tar, &t);
        }
    }

    #[test]
    fn zip_archives_with_hostile_entries_stay_inside(entries in proptest::collection::vec(entry(), 1..6), edits in proptest::collection::vec(edit(), 0..3)) {
        extract_confined("a.zip", extract::ArchiveKind::Zip, &mutate(&zip_of(&entries), &edits));
    }
}

proptest! {
    // ONNX Runtime builds a session per case: fewer cases than the decoders.
    #![proptest_config(ProptestConfig { cases: ProptestConfig::default().cases.div_ceil(4), ..ProptestConfig::default() })]

    #[test]
    fn mutated_encoders_load_or_are_refused(edits in proptest::collection::vec(edit(), 1..4)) {
        load_encoder(&mutate(&encoder_bytes(), &edits));
    }

    #[test]
    fn any_metadata_value_is_read_or_refused(mean in "\\PC{0,10}", std in prop_oneof![Just("[0.3530]".to_owned()), "[\\[\\]0-9.,e+-]{0,10}"]) {
        // Same-length replacement keeps the protobuf lengths valid, so the values reach repro's reader.
        let mut b = encoder_bytes();
        for (old, new) in [("[0.2860]", &mean), ("[0.3530]", &std)] {
            let mut v: Vec<u8> = new.as_bytes().to_vec();
            v.resize(old.len(), b' ');
            if let Some(i) = b.windows(old.len()).position(|w| w == old.as_bytes()) {
                b[i..i + old.len()].copy_from_slice(&v);
            }
        }
        load_encoder(&b);
    }
}

/// The mutations start from valid inputs: each decodes, extracts or loads as it should.
#[test]
fn the_unmutated_inputs_are_valid() {
    assert_eq!(idx::parse(&idx_bytes(&[3, 4, 4], 9)).unwrap().dims, vec![3, 4, 4]);
    let bytes = encoder_bytes();
    let mut enc = repro::eval::session::Encoder::from_bytes(&bytes, false).unwrap();
    let pre = repro::eval::Preprocess::from_metadata(&enc, &[0.5], &[0.5]).unwrap();
    assert_eq!((pre.mean.clone(), pre.std.clone()), (vec![0.2860], vec![0.3530]));
    let set = repro::data::ImageSet { n: 2, c: 1, h: 28, w: 28, pixels: vec![128u8; 2 * 28 * 28].into(), labels: vec![0, 1] };
    assert_eq!(repro::eval::embed(&mut enc, &set, &pre, 2).unwrap().nrows(), 2);
    let entries = [Entry::Dir("d".into()), Entry::File("d/b.bin".into(), vec![1, 2, 3]), Entry::Symlink("d/link".into(), "b.bin".into())];
    for (name, kind, archive) in [("a.tar", extract::ArchiveKind::Tar, tar_of(&entries)), ("a.zip", extract::ArchiveKind::Zip, zip_of(&entries))] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(name), &archive).unwrap();
        extract::extract(&dir.path().join(name), kind, &dir.path().join("out")).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(std::fs::read(dir.path().join("out/d/link")).unwrap(), vec![1, 2, 3], "{name}");
        extract_confined(name, kind, &archive);
    }
    // And a hostile one is refused.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.tar"), tar_of(&[Entry::File("../up".into(), vec![1])])).unwrap();
    assert!(extract::extract(&dir.path().join("a.tar"), extract::ArchiveKind::Tar, &dir.path().join("out")).is_err());
}
