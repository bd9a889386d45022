//! Test-only records: targets from a small suite and runs with chosen metric values, so report and
//! gate are tested on doctored records without training anything.

use std::collections::BTreeMap;

use super::*;
use crate::plan::Target;

/// A suite with a `random_init` floor and a SimCLR target `m`, on the given seeds; `expected` is
/// YAML for `m`'s `expected:` list (may be empty).
pub fn targets(seeds: &[u64], expected: &str) -> Vec<Target> {
    let seeds = format!("{seeds:?}");
    let yaml = format!(
        "version: 1\ndefaults:\n  dataset: d\n  backbone: {{arch: resnet18, width: 2, zero_init_residual: false, stem: cifar}}\n  data: {{monitor_holdout: 1, monitor_bank: 1}}\n  augment: {{crop_scale: [1.0, 1.0], crop_ratio: [1.0, 1.0], hflip: 0.0, interpolation: bilinear}}\n  train: {{epochs: 1, batch_size: 2, seeds: {seeds}, lr: 0.1, optimizer: {{name: sgd, momentum: 0.9}}, schedule: {{name: warmup_cosine}}, weight_decay: 0.0, warmup_epochs: 0.0, min_lr: 0.0}}\n  eval: {{batch_size: 1, knn: {{k: 20, temperature: 0.07, distance: cosine}}, linear: {{epochs: 1, batch_size: 1, lr: 0.1, schedule: cosine_per_step, min_lr: 0.0, momentum: 0.0, weight_decay: 0.0, standardize: true}}}}\n  export: {{parity_tolerance: 1.0e-4, parity_images: 1}}\ntargets:\n  - id: floor\n    method: random_init\n  - id: m\n    method: simclr\n    method_params: {{projector: [4], temperature: 0.5}}\n    expected: [{expected}]\n"
    );
    let spec = crate::suite::parse_str(&yaml).expect("test suite parses");
    let merged = crate::suite::merge_targets(&spec, &[]).expect("test suite merges");
    crate::plan::build(&crate::suite::LoadedSuite { path: "t.yaml".into(), name: "t".into(), version: 1, description: None, targets: merged })
        .expect("test suite validates")
        .targets
}

/// The build the test records say made them.
pub fn build() -> BuildInfo {
    BuildInfo { version: "0.1.0".into(), git_commit: Some("feedfacefeedfacefeedfacefeedfacefeedface".into()), git_dirty: Some(false) }
}

/// A finished run of `t` at `seed` with k-NN and linear accuracies (and a monitor value), made by
/// [`build`].
pub fn run(t: &Target, position: usize, seed: u64, knn: f64, linear: f64) -> StoredRun {
    let keys = Keys::new(t, seed, "lock").expect("keys");
    let pct = |value: f64, kind| Metric { value, higher_is_better: true, unit: "%".into(), kind, protocol: None };
    let mut metrics = BTreeMap::new();
    metrics.insert(t.eval.knn.metric_name(), pct(knn, MetricKind::Eval));
    metrics.insert(t.eval.linear.metric_name(), pct(linear, MetricKind::Eval));
    metrics.insert("monitor_knn_top1@test".into(), pct(knn, MetricKind::Monitor));
    metrics.insert("train_images_per_s".into(), Metric { value: 100.0, higher_is_better: true, unit: "images/s".into(), kind: MetricKind::Speed, protocol: None });
    let build = build();
    let env = EnvRecord {
        schema_version: SCHEMA_VERSION,
        run_key: keys.run.clone(),
        machine: MachineRecord {
            repro_version: build.version,
            git_commit: build.git_commit,
            git_dirty: build.git_dirty,
            libtorch_version: None,
            libtorch_dir: None,
            cuda_devices: 0,
            cudnn: false,
            gpu: None,
            cuda_absent: Some("test".into()),
            onnxruntime_version: None,
            onnxruntime_providers: vec![],
            threads: 1,
            cpu: "test".into(),
        },
        device: "Cpu".into(),
        device_note: None,
        precision: "fp32".into(),
        deterministic: false,
        eval_provider: "CPUExecutionProvider".into(),
        seed,
        train_s: 1.0,
        eval_s: 1.0,
        wall_s: 2.0,
        train_images_per_s: 100.0,
        train_images: 10,
        onnx_parity_rel_diff: Some(0.0),
        finished_at: "unix:0".into(),
        divergence_restarts: Vec::new(),
    };
    StoredRun {
        dir: format!("/results/t/{}/seed-{seed}", t.id).into(),
        config: ConfigRecord { schema_version: SCHEMA_VERSION, suite: "t".into(), suite_version: 1, position, seed, keys: keys.clone(), target: t.clone() },
        metrics: Some(MetricsRecord { schema_version: SCHEMA_VERSION, run_key: keys.run, metrics }),
        env: Some(env),
        failure: None,
    }
}

/// Floor and method runs: (seed, floor k-NN, method k-NN); linear = k-NN − 5.
pub fn floor_and_method(values: &[(u64, f64, f64)]) -> Vec<StoredRun> {
    let seeds: Vec<u64> = values.iter().map(|v| v.0).collect();
    let t = targets(&seeds, "");
    let mut runs: Vec<StoredRun> = values.iter().map(|&(s, f, _)| run(&t[0], 0, s, f, f - 5.0)).collect();
    runs.extend(values.iter().map(|&(s, _, m)| run(&t[1], 1, s, m, m - 5.0)));
    runs
}
