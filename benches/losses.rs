//! Forward + backward time of each objective on CPU at its paper's batch size N and projector output
//! D (the ImageNet recipes, where the papers give them): CorInfoMax N 1536, D 512 (official README,
//! ImageNet-1k run); SimCLR N 4096, D 128 (arXiv 2002.05709); Barlow Twins N 2048, D 8192 (official
//! main.py defaults); VICReg N 2048, D 8192 (official main_vicreg.py); BYOL N 4096, D 256 (arXiv
//! 2006.07733); EMI N 512, D 128 (no recipe found: the harness's choice, unverified); ER N 4096, D 128
//! (the ER/EntRec ImageNet batch with a SimCLR head); AMDIM N 200, n_rkhs 1024 with 5×5 and 7×7 maps
//! (amdim-public train.py defaults). Embeddings are
//! random leaf tensors; the time covers the loss and its gradient with respect to them, not the
//! network. Run: `cargo bench --bench losses`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use repro::losses::{self, Loss};
use repro::plan;
use tch::{Kind, Tensor};

fn leaf(n: i64, d: i64) -> Tensor {
    Tensor::randn([n, d], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true)
}

fn run(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, name: &str, n: i64, d: i64, f: impl Fn(&Tensor, &Tensor) -> Loss) {
    let (z1, z2) = (leaf(n, d), leaf(n, d));
    g.bench_with_input(BenchmarkId::new(name, format!("N{n}_D{d}")), &(), |b, _| {
        b.iter(|| {
            let l = f(&z1, &z2);
            l.total.backward();
            for z in [&z1, &z2] {
                let mut g = z.grad();
                if g.defined() {
                    let _ = g.zero_(); // BYOL's target side has no gradient
                }
            }
        })
    });
}

fn bench(c: &mut Criterion) {
    repro::machine::tune_allocator(); // as the binary does at start-up
    tch::manual_seed(0);
    let mut g = c.benchmark_group("loss_fwd_bwd");
    g.sample_size(10);
    let cim = plan::CorInfoMaxParams { projector: vec![512], alpha: 2000.0, la_r: 0.1, la_mu: 0.1, r_ini: 1.0, eps: 1e-8, normalize: true };
    run(&mut g, "corinfomax", 1536, 512, |a, b| {
        let st = [losses::corinfomax::BranchState::new(512, 1.0, tch::Device::Cpu), losses::corinfomax::BranchState::new(512, 1.0, tch::Device::Cpu)];
        let o = losses::corinfomax::loss(a, b, &st, &cim);
        Loss { total: o.total, terms: vec![] }
    });
    run(&mut g, "simclr", 4096, 128, |a, b| losses::simclr::loss(a, b, &plan::SimclrParams { projector: vec![], temperature: 0.1 }).expect("simclr"));
    run(&mut g, "barlow_twins", 2048, 8192, |a, b| losses::barlow_twins::loss(a, b, &plan::BarlowTwinsParams { projector: vec![], lambda: 0.0051, scale: 1.0 }).expect("barlow"));
    run(&mut g, "vicreg", 2048, 8192, |a, b| losses::vicreg::loss(a, b, &plan::VicregParams { projector: vec![], sim_coeff: 25.0, std_coeff: 25.0, cov_coeff: 1.0 }).expect("vicreg"));
    run(&mut g, "byol", 4096, 256, |a, b| losses::byol::loss(a, &b.detach()).expect("byol"));
    run(&mut g, "er_sphere", 4096, 128, |a, b| {
        losses::er::loss(a, b, losses::er::Support::Sphere { kappa: 10.0 }, plan::ErReduction::Expectation).expect("er")
    });
    let maps = |s: i64| Tensor::randn([200, 1024, s, s], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
    let (a1, a5, a7, b1, b5, b7) = (leaf(200, 1024), maps(5), maps(7), leaf(200, 1024), maps(5), maps(7));
    let idx = Tensor::randint(25, [200], (Kind::Int64, tch::Device::Cpu));
    g.bench_with_input(BenchmarkId::new("amdim", "N200_D1024"), &(), |bch, _| {
        bch.iter(|| {
            let va = losses::amdim::Views { r1: &a1, r5: &a5, r7: &a7, source5: &idx };
            let vb = losses::amdim::Views { r1: &b1, r5: &b5, r7: &b7, source5: &idx };
            let l = losses::amdim::loss(&va, &vb, 20.0, 0.05).expect("amdim");
            l.total.backward();
            for z in [&a1, &a5, &a7, &b1, &b5, &b7] {
                let _ = z.grad().zero_();
            }
        })
    });
    run(&mut g, "emi", 512, 128, |a, b| losses::emi::loss(a, b, &plan::EmiParams { projector: vec![], eps: 1e-3, standardize: true }).expect("emi"));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
