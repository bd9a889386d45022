//! `repro eval` takes any single-input encoder ONNX file, whatever its input and output names and
//! without repro's metadata (as a file exported from PyTorch elsewhere would be).

mod common;

use common::*;
use repro::export::graph::{Dim, GraphBuilder};
use repro::nn::resnet::ResNet;
use repro::plan::{ResnetDepth, ResnetStem};

#[test]
fn eval_accepts_foreign_names_and_no_metadata() {
    let sb = Sandbox::new();
    sb.lock_with_sources("datasets.lock", &format!("file://{DEBIAN_DIR}"));
    tch::manual_seed(0);
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let net = ResNet::new(&vs.root(), 1, ResnetDepth::R18, ResnetStem::Cifar, 2, false);
    let mut g = GraphBuilder::new();
    net.emit_onnx(&mut g, "input.1", "features").unwrap();
    let model = g
        .finish(("input.1", &[Dim::Named("batch"), Dim::Fixed(1), Dim::Fixed(28), Dim::Fixed(28)]), ("features", &[Dim::Named("batch"), Dim::Fixed(16)]), &[], "elsewhere")
        .unwrap();
    std::fs::write(sb.path("foreign.onnx"), prost::Message::encode_to_vec(&model)).unwrap();
    let o = sb.repro(&["eval", "foreign.onnx", "--dataset", "fashion_mnist", "--json", "--linear-epochs", "1", "--linear-train-subset", "2000"]);
    assert_exit(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["embedding_dim"], 16);
    let knn = v["metrics"]["knn_top1@k20_t0.07_cosine_bankall"].as_f64().unwrap();
    assert!(knn > 30.0, "random width-2 features still classify Fashion-MNIST well above chance: {knn}");
    // Defaults are recorded with the numbers, never silent.
    assert_eq!(v["protocol"]["knn"]["k"], 20);
    assert_eq!(v["preprocess"]["mean"][0].as_f64().unwrap() as f32, 0.2860f32);

    // A file that is not ONNX is a clear error, exit 2.
    sb.write("junk.onnx", "not a model");
    let o = sb.repro(&["eval", "junk.onnx", "--dataset", "fashion_mnist"]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("junk.onnx"), "{}", stderr(&o));
}
