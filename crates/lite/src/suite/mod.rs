//! Reading suite files: YAML → [`SuiteSpec`] with file/line/key-path errors, the `defaults:` merge
//! and `--set KEY=VALUE` overrides. Produces one merged [`TargetSpec`] per target; `crate::plan`
//! validates them. Depends on serde only.

pub mod spec;
pub mod sweep;

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_yaml::{Mapping, Value};
pub use spec::{SuiteSpec, SweepPoint, TargetSpec};

/// A suite file after parsing and merging; targets are still unchecked.
#[derive(Debug, Clone)]
pub struct LoadedSuite {
    pub path: PathBuf,
    pub name: String,
    pub version: u32,
    pub description: Option<String>,
    /// Each target = defaults ⊕ target ⊕ overrides.
    pub targets: Vec<TargetSpec>,
}

/// One `--set` override. `targets.<id>.<path>` applies to one target, any other key to all.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub target: Option<String>,
    pub path: Vec<String>,
    pub value: Value,
    pub raw: String,
}

impl Override {
    /// Parses `KEY=VALUE`; VALUE is read as a YAML scalar or flow value (`2`, `0.1`, `[0.2, 1.0]`).
    pub fn parse(raw: &str) -> Result<Self> {
        let (key, value) = raw.split_once('=').ok_or_else(|| anyhow!("--set {raw:?}: expected KEY=VALUE, e.g. --set train.epochs=2"))?;
        let value: Value = serde_yaml::from_str(value).with_context(|| format!("--set {raw:?}: the value is not valid YAML"))?;
        let mut path: Vec<String> = key.split('.').map(str::to_owned).collect();
        if path.iter().any(String::is_empty) {
            bail!("--set {raw:?}: empty segment in key {key:?}; use dotted keys like train.lr=0.1");
        }
        let mut target = None;
        if path[0] == "targets" {
            if path.len() < 3 {
                bail!("--set {raw:?}: expected targets.<id>.<key>=VALUE");
            }
            target = Some(path[1].clone());
            path.drain(..2);
        } else if path[0] == "defaults" {
            path.remove(0);
            if path.is_empty() {
                bail!("--set {raw:?}: expected defaults.<key>=VALUE");
            }
        }
        Ok(Self { target, path, value, raw: raw.to_owned() })
    }
}

/// Parses a suite file, reporting the file, line and key path of the first problem.
pub fn parse_file(path: &Path) -> Result<SuiteSpec> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read suite file {}", path.display()))?;
    parse_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// Parses suite YAML text; the error names line, column and key path.
pub fn parse_str(text: &str) -> Result<SuiteSpec, String> {
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize::<_, SuiteSpec>(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let at = inner.location().map(|l| format!("line {}, column {}: ", l.line(), l.column())).unwrap_or_default();
        let msg = strip_location(&inner.to_string());
        if path == "." || path.is_empty() {
            format!("{at}{msg}")
        } else {
            format!("{at}at `{path}`: {msg}")
        }
    })
}

/// serde_yaml appends " at line L column C" to messages; we print the location first instead.
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// Loads a suite file and applies defaults and overrides.
pub fn load(path: &Path, overrides: &[Override]) -> Result<LoadedSuite> {
    let spec = parse_file(path)?;
    let name = match &spec.suite {
        Some(n) => n.clone(),
        None => {
            path.file_stem().and_then(|s| s.to_str()).ok_or_else(|| anyhow!("{}: cannot derive a suite name from the file name; add `suite: NAME`", path.display()))?.to_owned()
        }
    };
    let targets = merge_targets(&spec, overrides).map_err(|e| anyhow!("{}: {e:#}", path.display()))?;
    Ok(LoadedSuite { path: path.to_owned(), name, version: spec.version, description: spec.description, targets })
}

/// defaults ⊕ target ⊕ global overrides ⊕ target-scoped overrides, for every target.
pub fn merge_targets(spec: &SuiteSpec, overrides: &[Override]) -> Result<Vec<TargetSpec>> {
    let ids: Vec<Option<&str>> = spec.targets.iter().map(|t| t.id.as_deref()).collect();
    for o in overrides {
        if let Some(t) = &o.target {
            if !ids.contains(&Some(t.as_str())) {
                let known: Vec<&str> = ids.iter().flatten().copied().collect();
                bail!("--set {:?}: no target with id {t:?} (targets: {})", o.raw, known.join(", "));
            }
        }
    }
    if spec.defaults.as_ref().is_some_and(|d| d.sweep.is_some()) {
        bail!("defaults.sweep: a sweep belongs to one target; move it into the target it varies");
    }
    let defaults = match &spec.defaults {
        Some(d) => serde_yaml::to_value(d)?,
        None => Value::Mapping(Mapping::new()),
    };
    let mut out = Vec::with_capacity(spec.targets.len());
    for (i, t) in spec.targets.iter().enumerate() {
        let mut merged = defaults.clone();
        deep_merge(&mut merged, serde_yaml::to_value(t)?);
        let label = t.id.clone().unwrap_or_else(|| format!("targets[{i}]"));
        // defaults ⊕ target ⊕ the sweep point ⊕ overrides: the user's --set has the last word,
        // except on a swept key, where it would make every point the same run.
        let points = match (sweep::take(&mut merged), &t.id) {
            (None, _) => vec![(label, None, merged)],
            (Some(_), None) => bail!("target {label}: a target with a sweep needs an id (its points are named after it)"),
            (Some(v), Some(id)) => {
                let s = sweep::Sweep::parse(&v, &format!("target {id}: sweep"))?;
                let scoped = |o: &&Override| o.target.is_none() || o.target.as_deref() == Some(id.as_str());
                if let Some(o) = overrides.iter().filter(scoped).find(|o| s.keys.iter().any(|k| k.starts_with(&o.path) || o.path.starts_with(k))) {
                    bail!("--set {:?}: target {id} sweeps {}; a --set on it would make every point the same run (select points with --target {id}@...)", o.raw, o.path.join("."));
                }
                sweep::expand(&merged, &s, id).into_iter().map(|(id, p, v)| (id, Some(p), v)).collect()
            }
        };
        for (label, point, mut merged) in points {
            for o in overrides.iter().filter(|o| o.target.is_none()) {
                set_path(&mut merged, &o.path, o.value.clone());
            }
            for o in overrides.iter().filter(|o| o.target.as_deref() == t.id.as_deref() && o.target.is_some()) {
                set_path(&mut merged, &o.path, o.value.clone());
            }
            let after = if point.is_some() { "after applying defaults, the sweep point and --set" } else { "after applying defaults and --set" };
            let mut spec: TargetSpec = serde_path_to_error::deserialize(merged).map_err(|e| {
                let path = e.path().to_string();
                anyhow!("target {label}: at `{path}` ({after}): {}", e.into_inner())
            })?;
            spec.sweep_point = point;
            out.push(spec);
        }
    }
    Ok(out)
}

/// Recursively merges `over` into `base`; mappings merge key by key, anything else replaces.
/// A `null` in `over` keeps the base value (serialised `None`s are nulls).
/// The keys that name a variant (`backbone.arch`, `train.optimizer.name`, `head.name`, ...).
const TAGS: [&str; 2] = ["arch", "name"];

/// Merges `over` into `base`, key by key. A mapping that names another variant than the base's
/// (a different `arch` or `name`) replaces it whole: the base's fields belong to the other variant.
fn deep_merge(base: &mut Value, over: Value) {
    let tag = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let other_variant = TAGS.iter().any(|k| matches!((tag(base, k), tag(&over, k)), (Some(a), Some(b)) if a != b));
    match (base, over) {
        (_, Value::Null) => {}
        (b, o) if other_variant => *b = o,
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => deep_merge(slot, v),
                    None => {
                        if !v.is_null() {
                            b.insert(k, v);
                        }
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

pub(crate) fn set_path(root: &mut Value, path: &[String], value: Value) {
    let mut cur = root;
    for key in path {
        if !cur.is_mapping() {
            *cur = Value::Mapping(Mapping::new());
        }
        let Value::Mapping(m) = cur else { return };
        cur = m.entry(Value::String(key.clone())).or_insert(Value::Null);
    }
    *cur = value;
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUITE: &str = "version: 1\ndefaults:\n  dataset: fashion_mnist\n  train: {epochs: 4, lr: 0.3}\ntargets:\n  - id: a\n    method: corinfomax\n    train: {epochs: 8}\n  - id: b\n    method: random_init\n";

    #[test]
    fn defaults_merge_and_target_wins() {
        let spec = parse_str(SUITE).unwrap();
        let t = merge_targets(&spec, &[]).unwrap();
        assert_eq!(t[0].train.as_ref().unwrap().epochs, Some(8));
        assert_eq!(t[0].train.as_ref().unwrap().lr, Some(0.3));
        assert_eq!(t[1].train.as_ref().unwrap().epochs, Some(4));
        assert_eq!(t[1].dataset.as_deref(), Some("fashion_mnist"));
    }

    #[test]
    fn another_variant_takes_none_of_the_defaults_fields() {
        let text = "version: 1\ndefaults:\n  backbone: {arch: resnet18, width: 8, zero_init_residual: true, stem: cifar}\ntargets:\n  - id: a\n    backbone: {width: 4}\n  - id: b\n    backbone: {arch: amdim, width: 16, n_rkhs: 64, n_depth: 1, use_bn: false}\n";
        let t = merge_targets(&parse_str(text).unwrap(), &[]).unwrap();
        let (a, b) = (t[0].backbone.as_ref().unwrap(), t[1].backbone.as_ref().unwrap());
        assert_eq!((a.width, a.zero_init_residual), (Some(4), Some(true)));
        assert_eq!((b.width, b.zero_init_residual, b.n_rkhs), (Some(16), None, Some(64)));
        let text = "version: 1\ndefaults:\n  train: {lr: 0.1, optimizer: {name: sgd, momentum: 0.9}}\ntargets:\n  - id: a\n    train: {optimizer: {name: adam, beta1: 0.8, beta2: 0.999, eps: 1.0e-8}}\n";
        let t = merge_targets(&parse_str(text).unwrap(), &[]).unwrap();
        let train = t[0].train.as_ref().unwrap();
        assert_eq!(train.lr, Some(0.1));
        let opt = train.optimizer.as_ref().unwrap();
        assert!(opt.get("momentum").is_none() && opt.get("beta1").is_some(), "{opt:?}");
    }

    #[test]
    fn overrides_global_then_scoped() {
        let spec = parse_str(SUITE).unwrap();
        let o = [Override::parse("train.epochs=1").unwrap(), Override::parse("targets.b.train.lr=0.05").unwrap()];
        let t = merge_targets(&spec, &o).unwrap();
        assert_eq!(t[0].train.as_ref().unwrap().epochs, Some(1));
        assert_eq!(t[1].train.as_ref().unwrap().epochs, Some(1));
        assert_eq!(t[0].train.as_ref().unwrap().lr, Some(0.3));
        assert_eq!(t[1].train.as_ref().unwrap().lr, Some(0.05));
    }

    #[test]
    fn sweeps_expand_after_defaults_and_before_overrides() {
        let text = "version: 1\ndefaults:\n  train: {epochs: 4, lr: 0.3, batch_size: 32}\ntargets:\n  - id: a\n    method: byol\n    sweep: {train.batch_size: [64, 128], method_params.momentum: [0.9, 0.99]}\n  - id: b\n    method: random_init\n";
        let spec = parse_str(text).unwrap();
        let t = merge_targets(&spec, &[Override::parse("train.epochs=1").unwrap()]).unwrap();
        let ids: Vec<&str> = t.iter().map(|t| t.id.as_deref().unwrap()).collect();
        assert_eq!(ids, ["a@batch_size=64,momentum=0.9", "a@batch_size=64,momentum=0.99", "a@batch_size=128,momentum=0.9", "a@batch_size=128,momentum=0.99", "b"]);
        let p = &t[2];
        let train = p.train.as_ref().unwrap();
        assert_eq!((train.batch_size, train.epochs, train.lr), (Some(128), Some(1), Some(0.3)));
        assert_eq!(p.method_params.as_ref().unwrap()["momentum"], Value::from(0.9));
        assert_eq!(p.sweep_point.as_ref().unwrap().of, "a");
        assert!(p.sweep.is_none() && t[4].sweep_point.is_none());
        // A --set on a swept key would collapse the sweep; an unknown swept key names the point.
        let e = merge_targets(&spec, &[Override::parse("targets.a.train.batch_size=8").unwrap()]).unwrap_err().to_string();
        assert!(e.contains("target a sweeps train.batch_size"), "{e}");
        let bad = text.replace("train.batch_size: [64, 128]", "train.batch_sise: [64]");
        let e = merge_targets(&parse_str(&bad).unwrap(), &[]).unwrap_err().to_string();
        assert!(e.contains("target a@batch_sise=64,momentum=0.9: at `train.batch_sise`"), "{e}");
        let e = merge_targets(&parse_str(&text.replace("defaults:\n", "defaults:\n  sweep: {train.lr: [1]}\n")).unwrap(), &[]).unwrap_err().to_string();
        assert!(e.contains("defaults.sweep"), "{e}");
    }

    #[test]
    fn unknown_key_names_line_and_path() {
        let text = "version: 1\ntargets:\n  - id: a\n    train:\n      epocs: 3\n";
        let err = parse_str(text).unwrap_err();
        assert!(err.contains("line 5"), "{err}");
        assert!(err.contains("targets[0].train"), "{err}");
        assert!(err.contains("epocs"), "{err}");
    }

    #[test]
    fn bad_override_is_explained() {
        assert!(Override::parse("train.epochs").unwrap_err().to_string().contains("KEY=VALUE"));
        let spec = parse_str(SUITE).unwrap();
        let e = merge_targets(&spec, &[Override::parse("targets.zz.train.lr=1").unwrap()]).unwrap_err();
        assert!(e.to_string().contains("no target with id \"zz\""), "{e}");
        let e = merge_targets(&spec, &[Override::parse("train.epochs=many").unwrap()]).unwrap_err();
        assert!(e.to_string().contains("train.epochs"), "{e}");
        let e = merge_targets(&spec, &[Override::parse("train.epocs=1").unwrap()]).unwrap_err();
        assert!(e.to_string().contains("epocs"), "{e}");
    }
}
