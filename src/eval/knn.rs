//! Weighted k-NN classification of frozen embeddings (top-1 accuracy), plus the
//! input validation shared with `linear`.
//!
//! Protocol: solo-learn `solo/utils/knn.py` (`WeightedKNNClassifier`), the
//! InstDisc / DINO weighted vote. For each test row take its k nearest train rows;
//! every neighbour adds its weight to the score of its label; predict the argmax.
//! - `Cosine`: rows are L2-normalised (all-zero rows stay zero), similarity = dot
//!   product, weight = exp(sim / T). Weights of one test row are computed as
//!   exp((sim - max_sim) / T): the same vote up to a common factor, without overflow.
//! - `Euclidean`: weight = 1 / (d + 1e-5), d the Euclidean distance; like solo-learn
//!   (epsilon 1e-5) the temperature is not used (it is still validated).
//!
//! Ties: class-score ties go to the lowest class index; neighbours equidistant at the
//! k-th place are taken in train-row order. If k exceeds the number of train rows,
//! all train rows vote (solo-learn: `k = min(k, N)`).
//!
//! Cost: test rows go in chunks; a chunk's scores against all train rows come from one
//! matrix product (`Euclidean` ranks by x·y - |y|²/2), then one O(N) pass over the scores
//! keeps the k best; the chosen neighbours' similarities / distances are recomputed
//! exactly in f64 for the weights. Memory per worker is at most ~2^24 scores; test
//! chunks are spread over `std::thread::available_parallelism()` scoped threads.

use anyhow::{bail, ensure, Context, Result};
use ndarray::{linalg::general_mat_mul, s, Array1, Array2, ArrayView1, ArrayView2, Axis};

/// Similarity used to rank and weight neighbours.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Distance {
    Cosine,
    Euclidean,
}

/// k-NN settings: `k` neighbours, `temperature` (cosine only), `distance`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct KnnParams {
    pub k: usize,
    pub temperature: f32,
    pub distance: Distance,
}

impl KnnParams {
    /// A suite's k-NN protocol.
    pub fn of(k: &crate::plan::Knn) -> Self {
        let distance = match k.distance {
            crate::plan::Distance::Cosine => Distance::Cosine,
            crate::plan::Distance::Euclidean => Distance::Euclidean,
        };
        Self { k: k.k, temperature: k.temperature as f32, distance }
    }
}

/// solo-learn's epsilon in `1 / (d + eps)` for the Euclidean vote.
const EUCLID_EPS: f64 = 1e-5;
/// Upper bound on the scores held at once by one worker (chunk rows × train rows).
const MAX_SCORES: usize = 1 << 24;
/// Test rows per matrix product when the train set is small enough.
const MAX_CHUNK_ROWS: usize = 256;

/// Returns top-1 accuracy in percent (0..=100) of classifying each test row by a weighted vote of its k nearest train rows.
pub fn knn_top1(
    train: ArrayView2<f32>,
    train_labels: &[u32],
    test: ArrayView2<f32>,
    test_labels: &[u32],
    n_classes: usize,
    p: &KnnParams,
) -> Result<f64> {
    check_inputs("k-NN", train, train_labels, test, Some(test_labels), n_classes)?;
    let pred = knn_predict(train, train_labels, test, n_classes, p)?;
    let correct = pred.iter().zip(test_labels).filter(|(a, b)| a == b).count();
    Ok(100.0 * correct as f64 / test_labels.len() as f64)
}

/// Predicted class per test row (same semantics); knn_top1 is built on it.
pub fn knn_predict(
    train: ArrayView2<f32>,
    train_labels: &[u32],
    test: ArrayView2<f32>,
    n_classes: usize,
    p: &KnnParams,
) -> Result<Vec<u32>> {
    check_inputs("k-NN", train, train_labels, test, None, n_classes)?;
    ensure!(p.k >= 1, "k-NN: k = {}, expected k >= 1", p.k);
    ensure!(
        p.temperature.is_finite() && p.temperature > 0.0,
        "k-NN: temperature = {}, expected a finite value > 0",
        p.temperature
    );

    let normalised;
    let (tr, te, bias) = match p.distance {
        Distance::Cosine => {
            normalised = (l2_normalised(train), l2_normalised(test));
            (normalised.0.view(), normalised.1.view(), None)
        }
        Distance::Euclidean => {
            let half_sq = train.rows().into_iter().map(|r| -0.5 * sq_norm(r) as f32).collect();
            (train, test, Some(half_sq))
        }
    };
    let job = Job { tr, bias: bias.as_ref().map(|b: &Array1<f32>| b.view()), labels: train_labels, k: p.k.min(tr.nrows()), n_classes, p };

    let chunk = (MAX_SCORES / tr.nrows()).clamp(1, MAX_CHUNK_ROWS);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = threads.min(te.nrows().div_ceil(chunk)).max(1);
    let part_rows = te.nrows().div_ceil(workers);
    std::thread::scope(|s| {
        let handles: Vec<_> = te
            .axis_chunks_iter(Axis(0), part_rows)
            .map(|part| {
                let job = &job;
                s.spawn(move || job.predict(part, chunk))
            })
            .collect();
        let mut out = Vec::with_capacity(te.nrows());
        for h in handles {
            out.extend(h.join().map_err(|_| anyhow::anyhow!("k-NN: worker thread panicked"))??);
        }
        Ok(out)
    })
}

/// Everything a worker needs; `bias` (Euclidean) is added to each dot-product row before ranking.
struct Job<'a> {
    tr: ArrayView2<'a, f32>,
    bias: Option<ArrayView1<'a, f32>>,
    labels: &'a [u32],
    k: usize,
    n_classes: usize,
    p: &'a KnnParams,
}

impl Job<'_> {
    fn predict(&self, test: ArrayView2<f32>, chunk: usize) -> Result<Vec<u32>> {
        let n = self.tr.nrows();
        let mut best: Vec<(f32, usize)> = Vec::with_capacity(self.k + 1);
        let mut nbr = Vec::with_capacity(self.k);
        let mut votes = vec![0f64; self.n_classes];
        let mut out = Vec::with_capacity(test.nrows());
        let mut buf = Array2::<f32>::zeros((chunk.min(test.nrows()), n));
        for block in test.axis_chunks_iter(Axis(0), chunk) {
            let mut scores = buf.slice_mut(s![..block.nrows(), ..]);
            let beta = match &self.bias {
                Some(b) => {
                    scores.assign(b);
                    1.0
                }
                None => 0.0,
            };
            general_mat_mul(1.0, &block, &self.tr.t(), beta, &mut scores);
            let flat = scores.as_slice().context("k-NN: internal error, score matrix not contiguous")?;
            for (q, s) in block.rows().into_iter().zip(flat.chunks_exact(n)) {
                top_k(s, self.k, &mut best);
                nbr.clear();
                nbr.extend(best.iter().map(|&(_, j)| (j, self.exact_score(q, j))));
                votes.fill(0.0);
                match self.p.distance {
                    Distance::Cosine => {
                        let top = nbr.iter().fold(f64::NEG_INFINITY, |m, &(_, v)| m.max(v));
                        let t = f64::from(self.p.temperature);
                        for &(j, sim) in &nbr {
                            votes[self.labels[j] as usize] += ((sim - top) / t).exp();
                        }
                    }
                    Distance::Euclidean => {
                        for &(j, d) in &nbr {
                            votes[self.labels[j] as usize] += 1.0 / (d + EUCLID_EPS);
                        }
                    }
                }
                out.push(argmax(&votes));
            }
        }
        Ok(out)
    }

    /// Cosine: dot product of the (normalised) rows; Euclidean: distance. In f64.
    fn exact_score(&self, q: ArrayView1<f32>, j: usize) -> f64 {
        let y = self.tr.row(j);
        let pairs = q.iter().zip(y.iter()).map(|(&a, &b)| (f64::from(a), f64::from(b)));
        match self.p.distance {
            Distance::Cosine => pairs.map(|(a, b)| a * b).sum(),
            Distance::Euclidean => pairs.map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt(),
        }
    }
}

/// The `k` largest scores of `s` with their indices, best first; equal scores in index order (so a
/// tie at the k-th place goes to the earlier row). One pass: a score enters only when it beats the
/// current k-th, which after the first few thousand rows is rare (about k·ln(n/k) entries in all).
fn top_k(s: &[f32], k: usize, best: &mut Vec<(f32, usize)>) {
    use std::cmp::Ordering::Greater;
    let k = k.min(s.len());
    best.clear();
    best.extend(s[..k].iter().copied().zip(0..k));
    best.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let Some(&(mut worst, _)) = best.last() else { return };
    for (j, &v) in s.iter().enumerate().skip(k) {
        // `>=` first (cheap, vectorises); total_cmp then orders -0.0 below +0.0 as the sort does.
        if v >= worst && v.total_cmp(&worst) == Greater {
            let at = best.partition_point(|&(w, _)| w.total_cmp(&v) != std::cmp::Ordering::Less);
            best.insert(at, (v, j));
            best.pop();
            worst = best[k - 1].0;
        }
    }
}

/// Index of the largest value; ties go to the lowest index.
fn argmax(v: &[f64]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

fn sq_norm(r: ArrayView1<f32>) -> f64 {
    r.iter().map(|&v| f64::from(v) * f64::from(v)).sum()
}

/// Rows scaled to unit L2 norm; all-zero rows are left at zero.
fn l2_normalised(x: ArrayView2<f32>) -> Array2<f32> {
    let mut out = x.to_owned();
    for mut r in out.rows_mut() {
        let norm = sq_norm(r.view()).sqrt();
        if norm > 0.0 {
            r.mapv_inplace(|v| (f64::from(v) / norm) as f32);
        }
    }
    out
}

/// Shape, label and finiteness checks shared by the evaluation protocols; `ctx`
/// prefixes every message. `test_labels` is checked when given.
pub(crate) fn check_inputs(
    ctx: &str,
    train: ArrayView2<f32>,
    train_labels: &[u32],
    test: ArrayView2<f32>,
    test_labels: Option<&[u32]>,
    n_classes: usize,
) -> Result<()> {
    ensure!(n_classes >= 1, "{ctx}: n_classes = 0, expected n_classes >= 1");
    for (name, x) in [("train", train), ("test", test)] {
        ensure!(x.nrows() >= 1, "{ctx}: {name} has 0 rows, expected at least 1");
        ensure!(x.ncols() >= 1, "{ctx}: {name} has 0 features (columns), expected at least 1");
    }
    ensure!(
        test.ncols() == train.ncols(),
        "{ctx}: test has {} features (columns), expected {} (= train features)",
        test.ncols(),
        train.ncols()
    );
    let mut labelled = vec![("train", train, train_labels)];
    if let Some(t) = test_labels {
        labelled.push(("test", test, t));
    }
    for (name, x, labels) in labelled {
        ensure!(
            labels.len() == x.nrows(),
            "{ctx}: {name}_labels has {} entries, expected {} (= {name} rows)",
            labels.len(),
            x.nrows()
        );
        if let Some((i, &l)) = labels.iter().enumerate().find(|(_, &l)| l as usize >= n_classes) {
            bail!("{ctx}: {name}_labels[{i}] = {l}, expected < n_classes = {n_classes}");
        }
    }
    for (name, x) in [("train", train), ("test", test)] {
        for (i, r) in x.rows().into_iter().enumerate() {
            if let Some((j, v)) = r.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                bail!("{ctx}: {name} row {i} has non-finite value {v} at column {j}, expected finite values");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    fn params(k: usize, distance: Distance) -> KnnParams {
        KnnParams { k, temperature: 0.07, distance }
    }

    /// Brute force in f64: all distances, full sort, vote. Returns the prediction, or
    /// None where the answer hinges on a (near-)exact tie: at the k-th neighbour
    /// or between the two best class scores.
    fn oracle(tr: &Array2<f32>, lab: &[u32], q: ArrayView1<f32>, c: usize, p: &KnnParams) -> Option<u32> {
        let f = |r: ArrayView1<f32>| r.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>();
        let unit = |v: Vec<f64>| {
            let n = v.iter().map(|a| a * a).sum::<f64>().sqrt();
            if n > 0.0 { v.iter().map(|a| a / n).collect() } else { v }
        };
        let qv = f(q);
        let mut all: Vec<(f64, u32)> = tr
            .rows()
            .into_iter()
            .zip(lab)
            .map(|(r, &l)| {
                let key = match p.distance {
                    // sort key: smaller is nearer
                    Distance::Cosine => -unit(f(r)).iter().zip(unit(qv.clone())).map(|(a, b)| a * b).sum::<f64>(),
                    Distance::Euclidean => f(r).iter().zip(&qv).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt(),
                };
                (key, l)
            })
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0));
        let k = p.k.min(all.len());
        let near = |a: f64, b: f64| (a - b).abs() <= 1e-5 * (1.0 + a.abs().max(b.abs()));
        if k < all.len() && near(all[k - 1].0, all[k].0) {
            return None;
        }
        let mut votes = vec![0f64; c];
        for &(key, l) in &all[..k] {
            votes[l as usize] += match p.distance {
                Distance::Cosine => (-key / f64::from(p.temperature)).exp(),
                Distance::Euclidean => 1.0 / (key + 1e-5),
            };
        }
        let best = argmax(&votes) as usize;
        let runner_up = votes.iter().enumerate().filter(|&(i, _)| i != best).map(|(_, &v)| v).fold(f64::MIN, f64::max);
        if c > 1 && near(votes[best], runner_up) {
            return None;
        }
        Some(best as u32)
    }

    #[test]
    fn matches_brute_force_oracle() {
        for seed in 0..4u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let (n, m, d, c) = (150, 60, 3 + 5 * seed as usize, 4);
            let mut tr = Array2::from_shape_fn((n, d), |_| rng.random_range(-1.0f32..1.0));
            let mut lab: Vec<u32> = (0..n).map(|_| rng.random_range(0..c as u32)).collect();
            let mut te = Array2::from_shape_fn((m, d), |_| rng.random_range(-1.0f32..1.0));
            // duplicates: train rows repeated (same and other label), test rows equal to train rows
            for i in 0..10 {
                let src = tr.row(i).to_owned();
                tr.row_mut(n - 1 - i).assign(&src);
                lab[n - 1 - i] = if i % 2 == 0 { lab[i] } else { (lab[i] + 1) % c as u32 };
                te.row_mut(i).assign(&tr.row(20 + i));
            }
            for distance in [Distance::Cosine, Distance::Euclidean] {
                for k in [1, 5, 20, n + 3] {
                    let p = params(k, distance);
                    let got = knn_predict(tr.view(), &lab, te.view(), c, &p).unwrap();
                    let mut compared = 0;
                    for (i, q) in te.rows().into_iter().enumerate() {
                        if let Some(want) = oracle(&tr, &lab, q, c, &p) {
                            assert_eq!(got[i], want, "seed {seed} {distance:?} k {k} row {i}");
                            compared += 1;
                        }
                    }
                    assert!(compared >= m * 8 / 10, "only {compared}/{m} rows free of ties");
                }
            }
        }
    }

    #[test]
    fn chunking_and_threads_do_not_change_predictions() {
        let mut rng = StdRng::seed_from_u64(9);
        let tr = Array2::from_shape_fn((300, 8), |_| rng.random_range(-1.0f32..1.0));
        let lab: Vec<u32> = (0..300).map(|i| (i % 3) as u32).collect();
        let te = Array2::from_shape_fn((700, 8), |_| rng.random_range(-1.0f32..1.0));
        for distance in [Distance::Cosine, Distance::Euclidean] {
            let p = params(7, distance);
            let all = knn_predict(tr.view(), &lab, te.view(), 3, &p).unwrap();
            let half = knn_predict(tr.view(), &lab, te.slice(s![350.., ..]), 3, &p).unwrap();
            assert_eq!(&all[350..], &half[..]);
        }
    }

    #[test]
    fn one_pass_top_k_equals_a_full_sort_with_ties() {
        // Scores from a few values so ties at the k-th place are common; a full sort by (score desc,
        // index asc) is the reference.
        let mut x = 12345u64;
        let mut best = Vec::new();
        for n in [1usize, 5, 20, 21, 300] {
            let s: Vec<f32> = (0..n)
                .map(|_| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ((x >> 33) % 7) as f32 - 3.0
                })
                .collect();
            for k in [1usize, 3, 20, 400] {
                let mut want: Vec<(f32, usize)> = s.iter().copied().zip(0..).collect();
                want.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                want.truncate(k);
                top_k(&s, k, &mut best);
                assert_eq!(best, want, "n {n}, k {k}");
            }
        }
    }

    #[test]
    fn tiny_known_answer() {
        // Two clusters on a line; class 0 near 0, class 1 near 10.
        let tr = array![[0.0f32], [1.0], [2.0], [9.0], [10.0]];
        let lab = [0, 0, 0, 1, 1];
        let te = array![[0.5f32], [8.0], [5.4]];
        let p = params(3, Distance::Euclidean);
        // 5.4: neighbours 2 (d 3.4, class 0), 9 (3.6, class 1), 1 (4.4, class 0) -> class 0
        assert_eq!(knn_predict(tr.view(), &lab, te.view(), 2, &p).unwrap(), vec![0, 1, 0]);
        // k=2 for 5.4: 1/3.4 (class 0) vs 1/3.6 (class 1) -> class 0; for 8.0 -> class 1
        let acc = knn_top1(tr.view(), &lab, te.view(), &[0, 1, 1], 2, &params(2, Distance::Euclidean)).unwrap();
        assert!((acc - 200.0 / 3.0).abs() < 1e-9, "{acc}");
        // Cosine: direction matters, not length; a zero test row ties -> class 0.
        let tr = array![[1.0f32, 0.0], [5.0, 0.1], [0.0, 1.0]];
        let te = array![[100.0f32, 1.0], [0.1, 3.0], [0.0, 0.0]];
        let got = knn_predict(tr.view(), &[1, 1, 2], te.view(), 3, &params(1, Distance::Cosine)).unwrap();
        assert_eq!(got, vec![1, 2, 1]);
        // k beyond N: all rows vote; weights exp(sim/T) make the nearest direction win.
        let got = knn_predict(tr.view(), &[1, 1, 2], te.view(), 3, &params(99, Distance::Cosine)).unwrap();
        assert_eq!(got, vec![1, 2, 1]);
    }

    #[test]
    fn validation_errors_name_the_bad_value() {
        let tr = array![[0.0f32, 1.0], [1.0, 0.0]];
        let te = array![[0.5f32, 0.5]];
        let ok = params(1, Distance::Cosine);
        let err = |r: Result<f64>| r.unwrap_err().to_string();
        let run = |tr: ArrayView2<f32>, tl: &[u32], te: ArrayView2<f32>, el: &[u32], c, p: &KnnParams| {
            err(knn_top1(tr, tl, te, el, c, p))
        };
        assert!(run(tr.view(), &[0, 1], te.view(), &[0], 2, &params(0, Distance::Cosine)).contains("k = 0"));
        for t in [0.0, -1.0, f32::NAN, f32::INFINITY] {
            let p = KnnParams { temperature: t, ..ok };
            assert!(run(tr.view(), &[0, 1], te.view(), &[0], 2, &p).contains(&format!("temperature = {t}")));
        }
        let wide = array![[0.5f32, 0.5, 0.5]];
        assert!(run(tr.view(), &[0, 1], wide.view(), &[0], 2, &ok).contains("test has 3 features"));
        assert!(run(tr.view(), &[0], te.view(), &[0], 2, &ok).contains("train_labels has 1 entries, expected 2"));
        assert!(run(tr.view(), &[0, 1], te.view(), &[0, 0], 2, &ok).contains("test_labels has 2 entries, expected 1"));
        assert!(run(tr.view(), &[0, 5], te.view(), &[0], 2, &ok).contains("train_labels[1] = 5"));
        assert!(run(tr.view(), &[0, 1], te.view(), &[2], 2, &ok).contains("test_labels[0] = 2"));
        assert!(run(tr.view(), &[0, 1], te.view(), &[0], 0, &ok).contains("n_classes = 0"));
        let empty = Array2::<f32>::zeros((0, 2));
        assert!(run(empty.view(), &[], te.view(), &[0], 2, &ok).contains("train has 0 rows"));
        assert!(run(tr.view(), &[0, 1], empty.view(), &[], 2, &ok).contains("test has 0 rows"));
        let bad = array![[0.0f32, 1.0], [1.0, f32::NAN]];
        assert!(run(bad.view(), &[0, 1], te.view(), &[0], 2, &ok).contains("train row 1 has non-finite value NaN"));
        let bad = array![[f32::INFINITY, 0.5]];
        assert!(run(tr.view(), &[0, 1], bad.view(), &[0], 2, &ok).contains("test row 0 has non-finite value inf"));
    }
}
