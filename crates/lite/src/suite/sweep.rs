//! Sweeps: a target's `sweep:` block (dotted keys → lists of values, a grid by default, `mode: zip`
//! to pair the lists position by position) expanded into one target per point. A point is the
//! target with each key set to its value; its id is the sweep's id and the values,
//! `er_byol@batch_size=64,momentum=0.99`, stable under reordering nothing but the YAML itself.
//! Keys are named by their last segment, or by their whole path where two would read the same.

use anyhow::{anyhow, bail, Result};
use serde_yaml::Value;

use super::spec::SweepPoint;

/// Keys a sweep may not set: they name or describe the target, or are the sweep itself.
const NOT_SWEPT: [&str; 5] = ["id", "description", "expected", "sweep", "method"];

/// A sweep's keys and, per point, the values (in key order).
#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    pub keys: Vec<Vec<String>>,
    pub points: Vec<Vec<Value>>,
}

impl Sweep {
    /// Reads a `sweep:` mapping; `at` names it in errors (`target er_byol: sweep`).
    pub fn parse(v: &Value, at: &str) -> Result<Self> {
        let Value::Mapping(m) = v else {
            bail!("{at}: expected a mapping of dotted keys to lists, e.g. {{train.batch_size: [64, 128]}}, found {}", kind(v));
        };
        let mut zip = false;
        let mut keys = Vec::new();
        let mut lists = Vec::new();
        for (k, values) in m {
            let Some(k) = k.as_str() else { bail!("{at}: keys are dotted paths such as train.batch_size, found {}", kind(k)) };
            if k == "mode" {
                zip = match values.as_str() {
                    Some("grid") => false,
                    Some("zip") => true,
                    _ => bail!("{at}.mode: expected grid (every combination, the default) or zip (the lists paired position by position), found {values:?}"),
                };
                continue;
            }
            let path: Vec<String> = k.split('.').map(str::to_owned).collect();
            if path.iter().any(String::is_empty) {
                bail!("{at}: {k:?} is not a dotted key such as train.batch_size");
            }
            if NOT_SWEPT.contains(&path[0].as_str()) {
                bail!("{at}: {k:?} cannot be swept ({} names or describes the target; write another target instead)", path[0]);
            }
            let Value::Sequence(list) = values else {
                bail!("{at}.{k}: expected a list of values, e.g. [64, 128], found {}", kind(values));
            };
            if list.is_empty() {
                bail!("{at}.{k}: the list is empty; give at least one value");
            }
            for v in list {
                label(v).map_err(|e| anyhow!("{at}.{k}: {e}"))?;
            }
            if keys.contains(&path) {
                bail!("{at}: {k:?} is given twice");
            }
            keys.push(path);
            lists.push(list.clone());
        }
        if keys.is_empty() {
            bail!("{at}: no keys to sweep; e.g. sweep: {{train.batch_size: [64, 128]}}");
        }
        let points = if zip {
            let n = lists[0].len();
            if let Some((i, l)) = lists.iter().enumerate().find(|(_, l)| l.len() != n) {
                bail!("{at}: mode zip pairs the lists position by position, but {} has {} values and {} has {n}", keys[i].join("."), l.len(), keys[0].join("."));
            }
            (0..n).map(|i| lists.iter().map(|l| l[i].clone()).collect()).collect()
        } else {
            lists.iter().fold(vec![Vec::new()], |acc: Vec<Vec<Value>>, list| {
                acc.iter().flat_map(|prefix| list.iter().map(move |v| prefix.iter().cloned().chain([v.clone()]).collect())).collect()
            })
        };
        let mut seen = std::collections::BTreeSet::new();
        for p in &points {
            let labels: Vec<String> = p.iter().map(|v| label(v).unwrap_or_default()).collect();
            if !seen.insert(labels.clone()) {
                bail!("{at}: the point {} appears twice; each value once per key", labels.join(", "));
            }
        }
        Ok(Self { keys, points })
    }

    /// The name each key shows in ids and tables: its last segment, or its dotted path where
    /// another key ends the same way.
    pub fn names(&self) -> Vec<String> {
        let last = |k: &Vec<String>| k.last().cloned().unwrap_or_default();
        self.keys.iter().map(|k| if self.keys.iter().filter(|o| last(o) == last(k)).count() > 1 { k.join(".") } else { last(k) }).collect()
    }

    /// Point `i` of the sweep of target `of`: its id and where it sits.
    pub fn point(&self, of: &str, i: usize) -> (String, SweepPoint) {
        let values: Vec<(String, String)> = self.keys.iter().zip(&self.points[i]).map(|(k, v)| (k.join("."), label(v).unwrap_or_default())).collect();
        let shown: Vec<String> = self.names().iter().zip(&values).map(|(n, (_, v))| format!("{n}={v}")).collect();
        (format!("{of}@{}", shown.join(",")), SweepPoint { of: of.to_owned(), values })
    }
}

/// How a value shows in an id: numbers and booleans as YAML writes them, words as they are, a list
/// of those joined by `_`.
fn label(v: &Value) -> Result<String> {
    let word = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c));
    match v {
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::String(s) if word(s) => Ok(s.clone()),
        Value::String(s) => bail!("the value {s:?} cannot name a folder; use letters, digits, '.', '_', '+' and '-'"),
        Value::Sequence(items) if !items.is_empty() && items.iter().all(|i| !matches!(i, Value::Sequence(_) | Value::Mapping(_))) => {
            Ok(items.iter().map(label).collect::<Result<Vec<_>>>()?.join("_"))
        }
        other => bail!("expected numbers, words, booleans or lists of them, found {}; sweep the fields of a mapping one by one (e.g. train.optimizer.momentum)", kind(other)),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Removes the `sweep` key of a merged target and returns its value.
pub fn take(merged: &mut Value) -> Option<Value> {
    match merged {
        Value::Mapping(m) => m.remove(Value::String("sweep".into())).filter(|v| !v.is_null()),
        _ => None,
    }
}

/// `merged` as one target per point: its id, where it sits, and the target with the point's keys
/// and its id set.
pub fn expand(merged: &Value, sweep: &Sweep, of: &str) -> Vec<(String, SweepPoint, Value)> {
    (0..sweep.points.len())
        .map(|i| {
            let mut v = merged.clone();
            for (k, x) in sweep.keys.iter().zip(&sweep.points[i]) {
                super::set_path(&mut v, k, x.clone());
            }
            let (id, point) = sweep.point(of, i);
            if let Value::Mapping(m) = &mut v {
                m.insert(Value::String("id".into()), Value::String(id.clone()));
            }
            (id, point, v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sweep(text: &str) -> Result<Sweep> {
        Sweep::parse(&serde_yaml::from_str(text).unwrap(), "target t: sweep")
    }

    #[test]
    fn grid_and_zip_points_and_ids() {
        let s = sweep("{train.batch_size: [64, 128], method_params.head.momentum: [0.9, 0.99, 0.996]}").unwrap();
        assert_eq!(s.points.len(), 6);
        assert_eq!(s.point("er_byol", 0).0, "er_byol@batch_size=64,momentum=0.9");
        assert_eq!(s.point("er_byol", 5).0, "er_byol@batch_size=128,momentum=0.996");
        let (_, p) = s.point("er_byol", 4);
        assert_eq!(p.values, vec![("train.batch_size".into(), "128".into()), ("method_params.head.momentum".into(), "0.99".into())]);
        let z = sweep("{mode: zip, train.batch_size: [64, 128], train.lr: [0.1, 0.2]}").unwrap();
        assert_eq!(z.points.len(), 2);
        assert_eq!(z.point("a", 1).0, "a@batch_size=128,lr=0.2");
        // Keys ending the same way are named by their whole path; lists join with `_`.
        let s = sweep("{train.lr: [0.1], eval.linear.lr: [1.0]}").unwrap();
        assert_eq!(s.names(), ["train.lr", "eval.linear.lr"]);
        let s = sweep("{augment.crop_scale: [[0.2, 1.0], [0.08, 1.0]]}").unwrap();
        assert_eq!(s.point("a", 1).0, "a@crop_scale=0.08_1.0");
    }

    #[test]
    fn bad_sweeps_are_explained() {
        let err = |t: &str| sweep(t).unwrap_err().to_string();
        assert!(err("[1, 2]").contains("expected a mapping of dotted keys"), "{}", err("[1, 2]"));
        assert!(err("{train.batch_size: 64}").contains("train.batch_size: expected a list"));
        assert!(err("{train.batch_size: []}").contains("the list is empty"));
        assert!(err("{id: [a, b]}").contains("cannot be swept"));
        assert!(err("{mode: diagonal, train.lr: [1]}").contains("expected grid"));
        assert!(
            err("{mode: zip, train.lr: [1, 2], train.epochs: [1]}").contains("train.epochs has 1 values and train.lr has 2"),
            "{}",
            err("{mode: zip, train.lr: [1, 2], train.epochs: [1]}")
        );
        assert!(err("{train.optimizer: [{name: sgd}]}").contains("sweep the fields of a mapping"));
        assert!(err("{train.precision: [\"a b\"]}").contains("cannot name a folder"));
        assert!(err("{train.lr: [0.1, 0.1]}").contains("appears twice"));
        assert!(err("{}").contains("no keys to sweep"));
    }
}
