//! Decoding of on-disk image datasets into [`ImageSet`] (N×3×H×W `u8`, channel-first, RGB).
//!
//! Owns two layouts:
//! * ImageFolder trees `root/<class>/**/<file>` ([`decode_image_folder`]), following torchvision
//!   `datasets.ImageFolder` (torchvision/datasets/folder.py: `find_classes` sorts class folder
//!   names, index = position; `make_dataset` lists files class by class, sorted; `pil_loader` does
//!   `Image.convert("RGB")`, i.e. grayscale is replicated and alpha is dropped, not composited;
//!   EXIF orientation is not applied).
//! * Tiny-ImageNet-200 as extracted from `tiny-imagenet-200.zip` (cs231n.stanford.edu)
//!   ([`decode_tiny_imagenet`]): class index = position of the wnid in the *sorted* list of
//!   `wnids.txt` (the order an ImageFolder over `train/` would give), not the file order.
//!
//! Resizing ([`Resize::ShorterSide`]) follows torchvision `Resize(s)` + `CenterCrop(size)`
//! (torchvision/transforms/functional.py `_compute_resized_output_size`:
//! long side = `int(size * long / short)`; `center_crop`: offset = `int(round((L - size) / 2))`,
//! Python round-half-to-even), resampling with the `image` crate's Triangle (bilinear, widened
//! when downscaling, i.e. antialiased like PIL's BILINEAR); pixel values can differ from PIL by
//! rounding. Deviations from torchvision: hidden entries (name starting with `.`) are skipped,
//! including hidden class folders; files are recognised by extension (jpg/jpeg/png,
//! case-insensitive) but decoded by content sniffing.
//! Decoding runs on the global rayon pool; output order is deterministic.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use image::imageops::FilterType;
use image::{ImageFormat, ImageReader, RgbImage};
use rayon::prelude::*;

use super::ImageSet;

/// How images become fixed-size arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resize {
    /// Must already be size×size, else an error naming the file and its dims.
    Exact,
    /// Shorter side resized to this many pixels (bilinear/triangle filter), then centre crop
    /// size×size (torchvision `Resize(s)` + `CenterCrop(size)`; s = size keeps the whole short side).
    ShorterSide(u32),
}

/// Maximum directory depth below a class folder (guards against symlink cycles).
const MAX_DEPTH: usize = 32;

/// Decodes an ImageFolder tree `root/<class>/**/<file>` (extensions jpg, jpeg, png,
/// case-insensitive; other files ignored; hidden files and folders ignored; symlinks followed).
///
/// Class index = position of the class folder name in sorted (byte/code-point) order, as
/// torchvision ImageFolder. If `classes` is `Some`, only those folder names are used, with
/// index = position in THAT list; a listed class with no folder, a duplicate, or an empty list
/// is an error. A class folder holding no image is an error (torchvision does the same).
///
/// Returns the images (RGB, c = 3, h = w = `size`) and the class names in index order. Images are
/// ordered by class index, then by path within the class folder; decoding runs in parallel.
pub fn decode_image_folder(
    root: &Path,
    classes: Option<&[String]>,
    size: u32,
    resize: Resize,
) -> Result<(ImageSet, Vec<String>)> {
    let names: Vec<String> = match classes {
        Some(list) => {
            if list.is_empty() {
                bail!("empty class list for image folder {}", root.display());
            }
            let mut seen = HashSet::new();
            for name in list {
                if !seen.insert(name.as_str()) {
                    bail!(
                        "class {name:?} listed twice for image folder {}",
                        root.display()
                    );
                }
                let dir = root.join(name);
                if !dir.is_dir() {
                    bail!("class {name:?} has no folder {}", dir.display());
                }
            }
            list.to_vec()
        }
        None => find_classes(root)?,
    };

    let mut paths = Vec::new();
    let mut labels = Vec::new();
    for (idx, name) in names.iter().enumerate() {
        let dir = root.join(name);
        let mut files = Vec::new();
        walk_images(&dir, 0, &mut files)?;
        if files.is_empty() {
            bail!(
                "class folder {} holds no .jpg/.jpeg/.png file",
                dir.display()
            );
        }
        files.sort();
        let label = u32::try_from(idx).context("too many classes")?;
        labels.extend(std::iter::repeat_n(label, files.len()));
        paths.extend(files);
    }
    let set = decode_files(&paths, labels, size, resize)?;
    Ok((set, names))
}

/// Tiny-ImageNet-200 as extracted from `tiny-imagenet-200.zip`: `root` is the `tiny-imagenet-200`
/// folder with `wnids.txt`, `train/<wnid>/images/*.JPEG` and `val/images/*.JPEG` labelled by
/// `val/val_annotations.txt` (tab-separated: file, wnid, x0, y0, x1, y1; boxes ignored).
///
/// Class index = position of the wnid in the *sorted* list of `wnids.txt`'s wnids (the file order
/// is not sorted; sorting matches ImageFolder over `train/`). Train images are ordered by class
/// index then file path; val images follow the annotation file's line order. Images must be
/// 64×64 (grayscale ones become RGB). `test/` (unlabelled) is not read.
///
/// Returns (train, val, sorted wnids). Errors: duplicate or missing wnids, a wnid folder missing or
/// empty, an annotation naming an unknown wnid or a missing file, a val image without annotation,
/// a non-64×64 image, any unreadable/undecodable file.
pub fn decode_tiny_imagenet(root: &Path) -> Result<(ImageSet, ImageSet, Vec<String>)> {
    const SIZE: u32 = 64;
    let wnids_path = root.join("wnids.txt");
    let text = fs::read_to_string(&wnids_path)
        .with_context(|| format!("reading {}", wnids_path.display()))?;
    let mut wnids: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if wnids.is_empty() {
        bail!("{} lists no wnid", wnids_path.display());
    }
    wnids.sort();
    if let Some(w) = wnids.windows(2).find(|w| w[0] == w[1]) {
        bail!("{} lists wnid {} twice", wnids_path.display(), w[0]);
    }
    let index: HashMap<&str, u32> = wnids
        .iter()
        .enumerate()
        .map(|(i, w)| Ok((w.as_str(), u32::try_from(i)?)))
        .collect::<Result<_>>()?;

    // Train split.
    let mut train_paths = Vec::new();
    let mut train_labels = Vec::new();
    for (i, wnid) in wnids.iter().enumerate() {
        let dir = root.join("train").join(wnid).join("images");
        if !dir.is_dir() {
            bail!("wnid {wnid}: folder {} missing", dir.display());
        }
        let mut files = Vec::new();
        walk_images(&dir, MAX_DEPTH, &mut files)?; // depth MAX_DEPTH: this folder only
        if files.is_empty() {
            bail!("wnid {wnid}: folder {} holds no image", dir.display());
        }
        files.sort();
        let label = u32::try_from(i).context("too many wnids")?;
        train_labels.extend(std::iter::repeat_n(label, files.len()));
        train_paths.extend(files);
    }

    // Val split.
    let val_dir = root.join("val").join("images");
    let ann_path = root.join("val").join("val_annotations.txt");
    let ann =
        fs::read_to_string(&ann_path).with_context(|| format!("reading {}", ann_path.display()))?;
    let mut val_paths = Vec::new();
    let mut val_labels = Vec::new();
    let mut annotated = HashSet::new();
    for (lineno, line) in ann.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let mut fields = line.split('\t');
        let (file, wnid) = match (fields.next(), fields.next()) {
            (Some(f), Some(w)) if !f.is_empty() && !w.is_empty() => (f, w.trim()),
            _ => bail!(
                "{} line {}: expected `file<TAB>wnid<TAB>x0<TAB>y0<TAB>x1<TAB>y1`, got {line:?}",
                ann_path.display(),
                lineno + 1
            ),
        };
        let label = *index.get(wnid).ok_or_else(|| {
            anyhow!(
                "{} line {}: unknown wnid {wnid} (not in {})",
                ann_path.display(),
                lineno + 1,
                wnids_path.display()
            )
        })?;
        if !annotated.insert(file.to_owned()) {
            bail!(
                "{} line {}: {file} annotated twice",
                ann_path.display(),
                lineno + 1
            );
        }
        let path = val_dir.join(file);
        if !path.is_file() {
            bail!(
                "{} line {}: image {} missing",
                ann_path.display(),
                lineno + 1,
                path.display()
            );
        }
        val_paths.push(path);
        val_labels.push(label);
    }
    let mut on_disk = Vec::new();
    walk_images(&val_dir, MAX_DEPTH, &mut on_disk)?;
    on_disk.sort();
    for p in &on_disk {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if !annotated.contains(name) {
            bail!(
                "val image {} has no line in {}",
                p.display(),
                ann_path.display()
            );
        }
    }
    if val_paths.is_empty() {
        bail!("{} annotates no image", ann_path.display());
    }

    let train = decode_files(&train_paths, train_labels, SIZE, Resize::Exact)?;
    let val = decode_files(&val_paths, val_labels, SIZE, Resize::Exact)?;
    Ok((train, val, wnids))
}

/// Sorted names of the non-hidden sub-folders of `root` (torchvision `find_classes`).
fn find_classes(root: &Path) -> Result<Vec<String>> {
    let rd = fs::read_dir(root).with_context(|| format!("listing {}", root.display()))?;
    let mut names = Vec::new();
    for entry in rd {
        let entry = entry.with_context(|| format!("listing {}", root.display()))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name
            .to_str()
            .ok_or_else(|| anyhow!("class folder {} is not UTF-8", path.display()))?;
        if name.starts_with('.') {
            continue;
        }
        // fs::metadata follows symlinks, like os.scandir(...).is_dir().
        let meta = fs::metadata(&path).with_context(|| format!("stat {}", path.display()))?;
        if meta.is_dir() {
            names.push(name.to_owned());
        }
    }
    if names.is_empty() {
        bail!("no class folder in {}", root.display());
    }
    names.sort();
    Ok(names)
}

fn is_image_name(name: &str) -> bool {
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => {
            ext.eq_ignore_ascii_case("jpg")
                || ext.eq_ignore_ascii_case("jpeg")
                || ext.eq_ignore_ascii_case("png")
        }
        _ => false,
    }
}

/// Appends image files under `dir` (recursively, following symlinks, skipping hidden entries).
/// Recursion stops at `MAX_DEPTH`: starting at `MAX_DEPTH` lists `dir` only.
fn walk_images(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<()> {
    let rd = fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in rd {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let meta = fs::metadata(&path).with_context(|| format!("stat {}", path.display()))?;
        if meta.is_dir() {
            if depth < MAX_DEPTH {
                walk_images(&path, depth + 1, out)?;
            }
        } else if meta.is_file() && is_image_name(&name) {
            out.push(path);
        }
    }
    Ok(())
}

/// Decodes the image files at `paths` in parallel into one channel-first RGB [`ImageSet`] of
/// size×size images.
fn decode_files(paths: &[PathBuf], labels: Vec<u32>, size: u32, resize: Resize) -> Result<ImageSet> {
    decode_parallel(paths, labels, size, |path, dst| {
        let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        decode_buffer(&path.display().to_string(), ImageFormat::from_path(path).ok(), &bytes, size, resize, dst)
    })
}

/// Decodes in-memory image files (`(name for errors, bytes)`, e.g. read from a tar stream) in
/// parallel into one channel-first RGB [`ImageSet`] of size×size images, in the given order.
pub fn decode_memory(items: &[(String, Vec<u8>)], labels: Vec<u32>, size: u32, resize: Resize) -> Result<ImageSet> {
    decode_parallel(items, labels, size, |(name, bytes), dst| decode_buffer(name, ImageFormat::from_path(name).ok(), bytes, size, resize, dst))
}

/// One RGB size×size image per item, labelled by `labels`, each written into its slot of the
/// pixel buffer by `decode_one` on the rayon pool; the output order is the items' order.
fn decode_parallel<T: Sync>(items: &[T], labels: Vec<u32>, size: u32, decode_one: impl Fn(&T, &mut [u8]) -> Result<()> + Sync) -> Result<ImageSet> {
    if items.len() != labels.len() {
        bail!("{} images but {} labels", items.len(), labels.len());
    }
    let mut pixels = alloc(items.len(), size)?;
    let per = pixels.len() / items.len().max(1);
    pixels.par_chunks_mut(per.max(1)).zip(items.par_iter()).try_for_each(|(dst, item)| decode_one(item, dst))?;
    Ok(ImageSet { n: items.len(), c: 3, h: size as usize, w: size as usize, pixels: pixels.into(), labels })
}

/// A zeroed buffer for `n` RGB images of size×size, with overflow checks.
fn alloc(n: usize, size: u32) -> Result<Vec<u8>> {
    if size == 0 {
        bail!("image size must be > 0");
    }
    let s = size as usize;
    let total = 3usize
        .checked_mul(s)
        .and_then(|v| v.checked_mul(s))
        .and_then(|v| v.checked_mul(n))
        .ok_or_else(|| anyhow!("{n} images of {size}×{size} overflow memory"))?;
    Ok(vec![0u8; total])
}

/// Decodes one encoded image, converts to RGB8, resizes/crops and writes CHW bytes into `dst`.
/// `hint` is the format implied by the file name, used when content sniffing finds none.
fn decode_buffer(name: &str, hint: Option<ImageFormat>, bytes: &[u8], size: u32, resize: Resize, dst: &mut [u8]) -> Result<()> {
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().with_context(|| format!("reading {name}"))?;
    if reader.format().is_none() {
        if let Some(fmt) = hint {
            reader.set_format(fmt);
        }
    }
    let img = reader.decode().with_context(|| format!("decoding {name}"))?.into_rgb8();
    let (w, h) = img.dimensions();
    match resize {
        Resize::Exact => {
            if (w, h) != (size, size) {
                bail!("{name} is {w}×{h} (w×h), expected {size}×{size}");
            }
            write_chw(&img, 0, 0, size, dst);
        }
        Resize::ShorterSide(short) => {
            let short = short.max(size);
            let (nw, nh) = shorter_side_dims(w, h, short);
            let (nw, nh) = (nw.max(size), nh.max(size));
            let resized = if (nw, nh) == (w, h) { img } else { image::imageops::resize(&img, nw, nh, FilterType::Triangle) };
            write_chw(&resized, crop_offset(nw, size), crop_offset(nh, size), size, dst);
        }
    }
    Ok(())
}

/// A cheap fingerprint of a folder tree of images: sha256 over every image file's relative path,
/// size and modification time (sorted). A changed, added or removed file changes it; no image is read.
pub fn fingerprint(root: &Path) -> Result<String> {
    let mut files = Vec::new();
    walk_images(root, 0, &mut files)?;
    files.sort();
    let mut lines = String::new();
    for f in &files {
        let meta = fs::metadata(f).with_context(|| format!("stat {}", f.display()))?;
        let mtime = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
        let rel = f.strip_prefix(root).unwrap_or(f);
        lines.push_str(&format!("{}\t{}\t{mtime}\n", rel.display(), meta.len()));
    }
    Ok(format!("{} files, sha256 {}", files.len(), crate::util::sha256_hex(lines.as_bytes())))
}

/// torchvision `_compute_resized_output_size` for an int size: (new_w, new_h).
fn shorter_side_dims(w: u32, h: u32, size: u32) -> (u32, u32) {
    let (short, long) = if w <= h { (w, h) } else { (h, w) };
    let short = u64::from(short.max(1));
    let new_long = (u64::from(size) * u64::from(long) / short).min(u64::from(u32::MAX)) as u32;
    if w <= h {
        (size, new_long)
    } else {
        (new_long, size)
    }
}

/// torchvision `center_crop` offset: `int(round((len - size) / 2.0))`, half to even.
fn crop_offset(len: u32, size: u32) -> u32 {
    let d = len.saturating_sub(size);
    let lo = d / 2;
    if d % 2 == 1 && lo % 2 == 1 {
        lo + 1
    } else {
        lo
    }
}

/// Copies the size×size window at (x0, y0) of an HWC RGB image into `dst` as CHW.
fn write_chw(img: &RgbImage, x0: u32, y0: u32, size: u32, dst: &mut [u8]) {
    let s = size as usize;
    let iw = img.width() as usize;
    let raw = img.as_raw();
    let (r, rest) = dst.split_at_mut(s * s);
    let (g, b) = rest.split_at_mut(s * s);
    for y in 0..s {
        let row = ((y0 as usize + y) * iw + x0 as usize) * 3;
        let src = &raw[row..row + 3 * s];
        let o = y * s;
        for (x, px) in src.chunks_exact(3).enumerate() {
            r[o + x] = px[0];
            g[o + x] = px[1];
            b[o + x] = px[2];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma, Rgb, Rgba, RgbaImage};
    use std::time::Instant;

    fn rgb(w: u32, h: u32, seed: u8) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            Rgb([
                seed.wrapping_add(x as u8),
                seed.wrapping_mul(3).wrapping_add(y as u8),
                seed,
            ])
        })
    }

    fn save(img: &RgbImage, path: &Path, fmt: ImageFormat) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        img.save_with_format(path, fmt).unwrap();
    }

    /// root/{cat,ant,bee}: ant=2, bee=3 (one in a nested folder), cat=2; mixed formats.
    fn build_folder(root: &Path, size: u32) {
        save(
            &rgb(size, size, 1),
            &root.join("cat/a.JPEG"),
            ImageFormat::Jpeg,
        );
        save(
            &rgb(size, size, 2),
            &root.join("cat/b.png"),
            ImageFormat::Png,
        );
        save(
            &rgb(size, size, 3),
            &root.join("ant/x.jpg"),
            ImageFormat::Jpeg,
        );
        let rgba = RgbaImage::from_fn(size, size, |x, _| Rgba([200, 10, x as u8, 7]));
        rgba.save_with_format(root.join("ant/y.PNG"), ImageFormat::Png)
            .unwrap();
        save(
            &rgb(size, size, 4),
            &root.join("bee/p.jpeg"),
            ImageFormat::Jpeg,
        );
        save(
            &rgb(size, size, 5),
            &root.join("bee/sub/deep/q.png"),
            ImageFormat::Png,
        );
        let gray = GrayImage::from_fn(size, size, |x, y| Luma([(x * 7 + y * 3) as u8]));
        gray.save_with_format(root.join("bee/gray.jpg"), ImageFormat::Jpeg)
            .unwrap();
        fs::write(root.join("bee/notes.txt"), b"not an image").unwrap();
        fs::write(root.join("cat/.hidden.jpg"), b"garbage").unwrap();
        fs::create_dir_all(root.join(".git")).unwrap();
    }

    fn px(set: &ImageSet, i: usize, ch: usize, y: usize, x: usize) -> u8 {
        set.pixels[((i * set.c + ch) * set.h + y) * set.w + x]
    }

    #[test]
    fn image_folder_labels_counts_gray_rgba() {
        let dir = tempfile::tempdir().unwrap();
        build_folder(dir.path(), 16);
        let (set, names) = decode_image_folder(dir.path(), None, 16, Resize::Exact).unwrap();
        assert_eq!(names, ["ant", "bee", "cat"]);
        assert_eq!((set.n, set.c, set.h, set.w), (7, 3, 16, 16));
        assert_eq!(set.pixels.len(), 7 * 3 * 16 * 16);
        assert_eq!(set.labels, [0, 0, 1, 1, 1, 2, 2]);
        // bee sorted by path: gray.jpg, p.jpeg, sub/deep/q.png -> index 2 is the grayscale one.
        for y in 0..16 {
            for x in 0..16 {
                let r = px(&set, 2, 0, y, x);
                assert_eq!(r, px(&set, 2, 1, y, x));
                assert_eq!(r, px(&set, 2, 2, y, x));
            }
        }
        // RGBA PNG (ant/y.PNG, index 1): alpha dropped, colour kept exactly (lossless).
        assert_eq!(px(&set, 1, 0, 3, 5), 200);
        assert_eq!(px(&set, 1, 1, 3, 5), 10);
        assert_eq!(px(&set, 1, 2, 3, 5), 5);
        // Lossless PNG check of channel-first layout (bee/sub/deep/q.png, index 4, seed 5).
        assert_eq!(px(&set, 4, 0, 2, 9), 5 + 9);
        assert_eq!(px(&set, 4, 1, 2, 9), 15 + 2);
        assert_eq!(px(&set, 4, 2, 2, 9), 5);
    }

    #[test]
    fn exact_rejects_wrong_size_naming_file() {
        let dir = tempfile::tempdir().unwrap();
        build_folder(dir.path(), 16);
        save(
            &rgb(17, 16, 9),
            &dir.path().join("cat/odd.png"),
            ImageFormat::Png,
        );
        let err = decode_image_folder(dir.path(), None, 16, Resize::Exact).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("odd.png") && msg.contains("17×16"), "{msg}");
    }

    #[test]
    fn shorter_side_center_crop() {
        let dir = tempfile::tempdir().unwrap();
        // 40×20: columns 10..30 white, rest black -> after resize to 20×10 and crop offset 5,
        // the crop centre is white and the output is 10×10.
        let wide = RgbImage::from_fn(40, 20, |x, _| {
            if (10..30).contains(&x) {
                Rgb([255, 255, 255])
            } else {
                Rgb([0, 0, 0])
            }
        });
        save(&wide, &dir.path().join("a/wide.png"), ImageFormat::Png);
        let tall = RgbImage::from_fn(20, 40, |_, y| {
            if (10..30).contains(&y) {
                Rgb([255, 0, 0])
            } else {
                Rgb([0, 0, 255])
            }
        });
        save(&tall, &dir.path().join("b/tall.png"), ImageFormat::Png);
        let (set, _) =
            decode_image_folder(dir.path(), None, 10, Resize::ShorterSide(10)).unwrap();
        assert_eq!((set.n, set.c, set.h, set.w), (2, 3, 10, 10));
        for y in 0..10 {
            for x in 3..7 {
                assert!(px(&set, 0, 1, y, x) > 240, "wide ({y},{x})");
            }
        }
        for y in 3..7 {
            assert!(px(&set, 1, 0, y, 5) > 240 && px(&set, 1, 2, y, 5) < 15);
        }
        // torchvision arithmetic.
        assert_eq!(shorter_side_dims(40, 20, 10), (20, 10));
        assert_eq!(shorter_side_dims(500, 375, 224), (298, 224));
        assert_eq!(crop_offset(298, 224), 37);
        assert_eq!(
            (
                crop_offset(13, 10),
                crop_offset(15, 10),
                crop_offset(11, 10)
            ),
            (2, 2, 0)
        );
    }

    #[test]
    fn class_subset_order_and_missing() {
        let dir = tempfile::tempdir().unwrap();
        build_folder(dir.path(), 8);
        let list = vec!["cat".to_string(), "ant".to_string()];
        let (set, names) = decode_image_folder(dir.path(), Some(&list), 8, Resize::Exact).unwrap();
        assert_eq!(names, list);
        assert_eq!(set.labels, [0, 0, 1, 1]);
        let bad = vec!["ant".to_string(), "dog".to_string()];
        let msg = format!(
            "{:#}",
            decode_image_folder(dir.path(), Some(&bad), 8, Resize::Exact).unwrap_err()
        );
        assert!(msg.contains("dog"), "{msg}");
    }

    #[test]
    fn corrupt_jpeg_names_file() {
        let dir = tempfile::tempdir().unwrap();
        build_folder(dir.path(), 16);
        let mut buf = Vec::new();
        rgb(16, 16, 3)
            .write_to(&mut Cursor::new(&mut buf), ImageFormat::Jpeg)
            .unwrap();
        buf.truncate(buf.len() / 3);
        fs::write(dir.path().join("ant/broken.jpg"), &buf).unwrap();
        let msg = format!(
            "{:#}",
            decode_image_folder(dir.path(), None, 16, Resize::Exact).unwrap_err()
        );
        assert!(
            msg.contains("decoding") && msg.contains("broken.jpg"),
            "{msg}"
        );
    }

    /// wnids.txt unsorted (n02, n01); 3 train each; 4 val (one grayscale).
    fn build_tiny(root: &Path) {
        fs::create_dir_all(root).unwrap();
        fs::write(root.join("wnids.txt"), "n02000002\nn01000001\n").unwrap();
        for (k, w) in ["n01000001", "n02000002"].iter().enumerate() {
            for i in 0..3 {
                let p = root.join(format!("train/{w}/images/{w}_{i}.JPEG"));
                save(&rgb(64, 64, (k * 10 + i) as u8), &p, ImageFormat::Jpeg);
            }
            fs::write(root.join(format!("train/{w}/{w}_boxes.txt")), "x").unwrap();
        }
        let vi = root.join("val/images");
        for i in 0..3 {
            save(
                &rgb(64, 64, 50 + i as u8),
                &vi.join(format!("val_{i}.JPEG")),
                ImageFormat::Jpeg,
            );
        }
        GrayImage::from_fn(64, 64, |x, _| Luma([x as u8 * 4]))
            .save_with_format(vi.join("val_3.JPEG"), ImageFormat::Jpeg)
            .unwrap();
        fs::write(
            root.join("val/val_annotations.txt"),
            "val_0.JPEG\tn02000002\t0\t0\t10\t10\nval_1.JPEG\tn01000001\t1\t2\t3\t4\n\
             val_2.JPEG\tn01000001\t0\t0\t63\t63\nval_3.JPEG\tn02000002\t5\t5\t6\t6\n",
        )
        .unwrap();
    }

    #[test]
    fn tiny_imagenet_layout() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tiny-imagenet-200");
        build_tiny(&root);
        let (train, val, wnids) = decode_tiny_imagenet(&root).unwrap();
        assert_eq!(wnids, ["n01000001", "n02000002"]);
        assert_eq!((train.n, train.c, train.h, train.w), (6, 3, 64, 64));
        assert_eq!(train.labels, [0, 0, 0, 1, 1, 1]);
        assert_eq!((val.n, val.c), (4, 3));
        assert_eq!(val.labels, [1, 0, 0, 1]);
        for y in 0..64 {
            for x in 0..64 {
                assert_eq!(px(&val, 3, 0, y, x), px(&val, 3, 1, y, x));
                assert_eq!(px(&val, 3, 0, y, x), px(&val, 3, 2, y, x));
            }
        }
    }

    #[test]
    fn tiny_imagenet_errors() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tiny-imagenet-200");
        build_tiny(&root);
        let ann = root.join("val/val_annotations.txt");
        let good = fs::read_to_string(&ann).unwrap();
        fs::write(
            &ann,
            good.replace("val_1.JPEG\tn01000001", "val_1.JPEG\tn09999999"),
        )
        .unwrap();
        let msg = format!("{:#}", decode_tiny_imagenet(&root).unwrap_err());
        assert!(msg.contains("n09999999"), "{msg}");

        fs::write(&ann, format!("{good}val_9.JPEG\tn01000001\t0\t0\t1\t1\n")).unwrap();
        let msg = format!("{:#}", decode_tiny_imagenet(&root).unwrap_err());
        assert!(
            msg.contains("val_9.JPEG") && msg.contains("missing"),
            "{msg}"
        );

        fs::write(&ann, &good).unwrap();
        save(
            &rgb(64, 63, 1),
            &root.join("train/n02000002/images/n02000002_9.JPEG"),
            ImageFormat::Jpeg,
        );
        let msg = format!("{:#}", decode_tiny_imagenet(&root).unwrap_err());
        assert!(
            msg.contains("n02000002_9.JPEG") && msg.contains("64×63"),
            "{msg}"
        );

        fs::remove_dir_all(root.join("train/n02000002")).unwrap();
        let msg = format!("{:#}", decode_tiny_imagenet(&root).unwrap_err());
        assert!(
            msg.contains("n02000002") && msg.contains("missing"),
            "{msg}"
        );
    }

    /// Throughput report, not an assertion: run with `--nocapture` to see it.
    #[test]
    fn decode_speed_report() {
        let dir = tempfile::tempdir().unwrap();
        let n = 2000;
        (0..n).into_par_iter().for_each(|i| {
            let p = dir.path().join(format!("c{}/img_{i}.jpg", i % 10));
            let img = RgbImage::from_fn(64, 64, |x, y| {
                Rgb([
                    (x * 4) as u8,
                    (y * 4) as u8,
                    ((x ^ y) as u8).wrapping_add(i as u8),
                ])
            });
            save(&img, &p, ImageFormat::Jpeg);
        });
        let t = Instant::now();
        let (set, _) = decode_image_folder(dir.path(), None, 64, Resize::Exact).unwrap();
        let dt = t.elapsed().as_secs_f64();
        let t2 = Instant::now();
        let (set2, _) =
            decode_image_folder(dir.path(), None, 56, Resize::ShorterSide(64)).unwrap();
        let dt2 = t2.elapsed().as_secs_f64();
        assert_eq!((set.n, set2.n), (n, n));
        eprintln!(
            "decode speed: {n} 64x64 JPEGs, Exact {:.0} images/s ({dt:.3}s); resize->56 {:.0} images/s ({dt2:.3}s); rayon threads {}",
            n as f64 / dt,
            n as f64 / dt2,
            rayon::current_num_threads()
        );
    }
}
