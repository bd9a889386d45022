//! Pure loss functions on tensors with their named terms; one file per method, same stem as the
//! method and the YAML `method:` word. Every loss checks its inputs with [`check_pair`] (tch would
//! panic on a shape error) and returns a [`Loss`].

pub mod amdim;
pub mod barlow_twins;
pub mod byol;
pub mod corinfomax;
pub mod dino;
pub mod emi;
pub mod er;
pub mod mae;
pub mod simclr;
pub mod vicreg;

use anyhow::{bail, Result};
use tch::Tensor;

/// A loss and its named terms (for logging and `repro loss`).
#[derive(Debug)]
pub struct Loss {
    pub total: Tensor,
    pub terms: Vec<(&'static str, Tensor)>,
}

/// Two views' embeddings must be 2-D, of one shape, with at least `min_batch` rows.
pub fn check_pair(method: &str, z1: &Tensor, z2: &Tensor, min_batch: i64) -> Result<()> {
    let (s1, s2) = (z1.size(), z2.size());
    if s1.len() != 2 || s2.len() != 2 {
        bail!("{method}: embeddings must be 2-D [N, D]; got z1 {s1:?}, z2 {s2:?}");
    }
    if s1 != s2 {
        bail!("{method}: z1 and z2 must have the same shape; got {s1:?} and {s2:?}");
    }
    if s1[0] < min_batch {
        bail!("{method}: batch size must be at least {min_batch}; got N = {}", s1[0]);
    }
    if s1[1] < 1 {
        bail!("{method}: embeddings have D = 0 features");
    }
    Ok(())
}

/// Rows scaled to unit L2 norm (F.normalize: the norm is clamped at 1e-12).
pub fn l2_normalize(z: &Tensor) -> Tensor {
    z / z.square().sum_dim_intlist(1, true, z.kind()).sqrt().clamp_min(1e-12)
}

/// The off-diagonal entries of a square matrix, flattened.
pub fn off_diagonal(m: &Tensor) -> Tensor {
    let d = m.size()[0];
    let mask = Tensor::eye(d, (tch::Kind::Bool, m.device())).logical_not();
    m.masked_select(&mask)
}

#[cfg(test)]
pub(crate) mod testing {
    use tch::{Kind, Tensor};

    /// z[i][j] = sin(0.7·i + 1.3·j + s), rows L2-normalised, float32: the inputs of
    /// tests/fixtures/losses/*_golden.py.
    pub fn fixed(n: i64, d: i64, s: f64) -> Tensor {
        let v: Vec<f64> = (0..n).flat_map(|i| (0..d).map(move |j| (0.7 * i as f64 + 1.3 * j as f64 + s).sin())).collect();
        super::l2_normalize(&Tensor::from_slice(&v).reshape([n, d])).to_kind(Kind::Float)
    }

    /// Full-rank inputs: z[i][j] = sin(0.37·i·(j+1) + 1.1·j + s), rows L2-normalised, float32.
    pub fn fixed2(n: i64, d: i64, s: f64) -> Tensor {
        let v: Vec<f64> = (0..n).flat_map(|i| (0..d).map(move |j| (0.37 * i as f64 * (j + 1) as f64 + 1.1 * j as f64 + s).sin())).collect();
        super::l2_normalize(&Tensor::from_slice(&v).reshape([n, d])).to_kind(Kind::Float)
    }

    pub fn value(t: &Tensor) -> f64 {
        t.double_value(&[])
    }

    pub fn term(l: &super::Loss, name: &str) -> f64 {
        value(&l.terms.iter().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("no term {name}")).1)
    }

    /// Asserts l(a, b) = l(b, a) on two fixed inputs, and that a batch of one is refused.
    pub fn symmetric_and_refuses_one(f: impl Fn(&Tensor, &Tensor) -> anyhow::Result<super::Loss>) {
        let (a, b) = (fixed2(16, 6, 0.0), fixed2(16, 6, 2.0));
        let (ab, ba) = (value(&f(&a, &b).expect("loss").total), value(&f(&b, &a).expect("loss").total));
        assert!((ab - ba).abs() < 1e-4 * ab.abs().max(1.0), "{ab} vs {ba}");
        let e = f(&fixed(1, 6, 0.0), &fixed(1, 6, 0.0)).expect_err("a batch of one").to_string();
        assert!(e.contains("N = 1"), "{e}");
    }

    /// Optimises a linear map of fixed inputs for `steps` SGD steps; returns (loss at step 1, last).
    pub fn descends(steps: usize, lr: f64, f: impl Fn(&Tensor, &Tensor) -> super::Loss) -> (f64, f64) {
        let _rng = crate::rng_lock();
        tch::manual_seed(0);
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let w = vs.root().randn("w", &[16, 8], 0.0, 0.5);
        let x1 = Tensor::randn([32, 16], tch::kind::FLOAT_CPU);
        let x2 = &x1 + Tensor::randn([32, 16], tch::kind::FLOAT_CPU) * 0.3;
        let mut opt = tch::nn::OptimizerConfig::build(tch::nn::Sgd::default(), &vs, lr).expect("sgd");
        let (mut first, mut last) = (0.0, 0.0);
        for step in 0..steps {
            let l = f(&x1.matmul(&w), &x2.matmul(&w));
            last = value(&l.total);
            if step == 0 {
                first = last;
            }
            opt.backward_step(&l.total);
        }
        (first, last)
    }
}
