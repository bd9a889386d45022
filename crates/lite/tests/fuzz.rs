//! Hostile input, by machine: property tests (proptest) that feed mutated suites, `--set` values and
//! `datasets.lock` files to the real loaders. Each must return a result, never panic, and an error
//! must name the file or flag it came from. Cases per property: `PROPTEST_CASES` (256 unless set);
//! a failing input proptest finds is written to `proptest-regressions/fuzz.txt` and replayed first
//! on every later run (commit it), and the ones found so far are kept as named tests below.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Text fragments that matter to YAML and to repro's schema.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    ": ",
    "- ",
    "\n",
    "  ",
    ",",
    "#",
    "\"",
    "'",
    "&a ",
    "*a",
    "<<: *a",
    "!!str ",
    "!!binary ",
    "~",
    "null",
    "true",
    "-1",
    "0",
    "1e309",
    "-1e309",
    ".nan",
    ".inf",
    "18446744073709551616",
    "4294967296",
    "0.0",
    "1.0e-300",
    "\u{feff}",
    "\u{0}",
    "é",
    "id",
    "method",
    "train",
    "epochs",
    "batch_size",
    "seeds",
    "lr",
    "eval",
    "knn",
    "linear",
    "sweep",
    "targets",
    "defaults",
    "dataset",
    "backbone",
    "width",
    "expected",
    "metric",
    "files",
    "sha256",
    "size",
    "sources",
    "format",
    "classes",
    "image_size",
    "mean",
    "std",
    "decompressed",
];

/// One edit of a text: replace `len` bytes at `at` (fractions of the length) with `insert`.
#[derive(Debug, Clone)]
struct Edit {
    at: f64,
    len: usize,
    insert: String,
}

fn edit() -> impl Strategy<Value = Edit> {
    let insert = prop_oneof![
        4 => proptest::sample::select(TOKENS).prop_map(str::to_owned),
        1 => "\\PC{0,12}",
        1 => Just(String::new()),
    ];
    (0.0..1.0f64, 0usize..40, insert).prop_map(|(at, len, insert)| Edit { at, len, insert })
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut s = text.to_owned();
    for e in edits {
        let mut i = (e.at * s.len() as f64) as usize;
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        let mut j = (i + e.len).min(s.len());
        while !s.is_char_boundary(j) {
            j += 1;
        }
        s.replace_range(i..j, &e.insert);
    }
    s
}

fn suite_texts() -> Vec<(String, String)> {
    ["smoke", "quickstart", "cifar10", "imagenet100", "tiny_imagenet"]
        .iter()
        .filter_map(|n| std::fs::read_to_string(root().join(format!("suites/{n}.yaml"))).ok().map(|t| (n.to_string(), t)))
        .collect()
}

/// Loads `text` as a suite (with `set`) against the shipped lock; panics only if the loader does.
fn load_suite(text: &str, set: &[String]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.yaml");
    std::fs::write(&path, text).unwrap();
    if let Err(e) = repro_lite::validate::load_plan(&root().join("datasets.lock"), &path, set) {
        let msg = format!("{e:#}");
        assert!(msg.contains("s.yaml") || msg.contains("--set"), "an error must name the suite file or the flag: {msg}");
    }
}

fn load_lock(text: &str) {
    let origin = Path::new("fuzzed.lock");
    match repro_lite::lock::Lock::parse(text, origin) {
        Ok(lock) => {
            for name in lock.datasets.keys() {
                // Whatever parsed must be usable without a panic.
                let _ = lock.info(name);
                if let Ok(entry) = lock.get(name) {
                    let _ = entry.content_hash();
                }
            }
        }
        Err(e) => {
            let msg = format!("{e:#}");
            assert!(msg.contains("fuzzed.lock"), "an error must name the lock file: {msg}");
        }
    }
}

proptest! {
    #[test]
    fn mutated_suites_are_refused_or_planned(which in 0usize..5, edits in proptest::collection::vec(edit(), 1..6)) {
        let texts = suite_texts();
        let (_, text) = &texts[which % texts.len()];
        load_suite(&apply(text, &edits), &[]);
    }

    #[test]
    fn hostile_set_overrides_are_refused_or_applied(
        key in proptest::sample::select(&["train.epochs", "train.seeds", "train.lr", "eval.knn.k", "targets.cim.train.batch_size", "backbone.width", "train.on_divergence", "data.train_subset", "defaults", "targets..x", "a.b.c"][..]),
        value in prop_oneof![proptest::sample::select(TOKENS).prop_map(str::to_owned), "\\PC{0,16}", Just("[0, -1, 2]".to_owned()), Just("{action: restart, lr_factor: 2}".to_owned())],
    ) {
        let texts = suite_texts();
        let quick = texts.iter().find(|(n, _)| n == "quickstart").map(|(_, t)| t.clone()).unwrap_or_default();
        load_suite(&quick, &[format!("{key}={value}")]);
    }

    #[test]
    fn mutated_locks_are_refused_or_usable(edits in proptest::collection::vec(edit(), 1..6)) {
        let text = std::fs::read_to_string(root().join("datasets.lock")).unwrap();
        load_lock(&apply(&text, &edits));
    }

    #[test]
    fn arbitrary_text_is_never_a_panic(text in "\\PC{0,200}") {
        load_suite(&text, &[]);
        load_lock(&text);
    }
}

/// Exponential aliases ("billion laughs") must not exhaust memory or time.
#[test]
fn alias_bombs_are_refused() {
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 0..9 {
        bomb += &format!(
            "{}: &{} [*{}, *{}, *{}, *{}, *{}, *{}, *{}, *{}, *{}, *{}]\n",
            (b'b' + i) as char,
            (b'b' + i) as char,
            (b'a' + i) as char,
            (b'a' + i) as char,
            (b'a' + i) as char,
            (b'a' + i) as char,
            (b'a' + i) as char,
            (b'a' + i) as char,
            (b'a' + i) as char,
            (b'a' + i) as char,
            (b'a' + i) as char,
            (b'a' + i) as char
        );
    }
    let started = std::time::Instant::now();
    load_suite(&bomb, &[]);
    load_lock(&bomb);
    assert!(started.elapsed().as_secs() < 30);
}

/// The mutations start from valid inputs: each shipped suite plans against the shipped lock.
#[test]
fn the_unmutated_inputs_are_valid() {
    let texts = suite_texts();
    assert_eq!(texts.len(), 5);
    for (name, text) in &texts {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.yaml");
        std::fs::write(&path, text).unwrap();
        let (plan, _) = repro_lite::validate::load_plan(&root().join("datasets.lock"), &path, &[]).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert!(!plan.targets.is_empty());
    }
    let lock = std::fs::read_to_string(root().join("datasets.lock")).unwrap();
    assert!(repro_lite::lock::Lock::parse(&lock, Path::new("datasets.lock")).is_ok());
}
