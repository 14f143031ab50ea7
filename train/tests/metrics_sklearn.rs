//! Streaming metrics against `sklearn.metrics` (fixtures from `scripts/fixtures/metrics.py`,
//! scikit-learn 1.9.1): the data fed in uneven batches, with a reset in between, must give
//! sklearn's figures over the whole set.

use couplet_train::metrics::{
    Accuracy, Auc, MaskedTokenAccuracy, Metric, Perplexity, Precision, Recall, TokenMask, TopKAccuracy, F1,
};
use serde_json::Value;
use tch::{Kind, Tensor};

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/metrics.json")).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(items) => items.iter().flat_map(floats).collect(),
        other => vec![other.as_f64().unwrap()],
    }
}

fn ints(v: &Value) -> Vec<i64> {
    floats(v).into_iter().map(|f| f as i64).collect()
}

fn near(name: &str, ours: f64, theirs: &Value) {
    let theirs = theirs.as_f64().unwrap();
    assert!((ours - theirs).abs() < 1e-12, "{name}: ours {ours}, sklearn {theirs}");
}

/// Batch boundaries that do not divide the data evenly.
const CUTS: [i64; 4] = [0, 7, 30, 31];

fn batches(n: i64) -> Vec<(i64, i64)> {
    let mut cuts: Vec<i64> = CUTS.iter().copied().filter(|&c| c < n).collect();
    cuts.push(n);
    cuts.windows(2).map(|w| (w[0], w[1] - w[0])).collect()
}

#[test]
fn accuracy_and_top_k_match_sklearn() {
    let f = &fixture()["multiclass"];
    let labels = Tensor::from_slice(&ints(&f["labels"]));
    let n = labels.size()[0];
    let logits = Tensor::from_slice(&floats(&f["logits"])).reshape([n, 5]).to_kind(Kind::Float);
    let mut accuracy = Accuracy::new();
    let mut top2 = TopKAccuracy::new(2).unwrap();
    let mut top3 = TopKAccuracy::new(3).unwrap();
    // A first evaluation that the reset forgets.
    accuracy.update(&logits.narrow(0, 0, 3), &Tensor::zeros([3], (Kind::Int64, tch::Device::Cpu))).unwrap();
    accuracy.reset();
    for (start, len) in batches(n) {
        let (x, y) = (logits.narrow(0, start, len), labels.narrow(0, start, len));
        accuracy.update(&x, &y).unwrap();
        top2.update(&x, &y).unwrap();
        top3.update(&x, &y).unwrap();
    }
    near("accuracy", accuracy.result().unwrap(), &f["accuracy"]);
    near("top_2", top2.result().unwrap(), &f["top_2_accuracy"]);
    near("top_3", top3.result().unwrap(), &f["top_3_accuracy"]);
    assert_eq!(top2.name(), "top_2_accuracy");
}

#[test]
fn precision_recall_f1_and_auc_match_sklearn() {
    let f = &fixture()["binary"];
    let scores = Tensor::from_slice(&floats(&f["scores"])).to_kind(Kind::Float);
    let labels = Tensor::from_slice(&ints(&f["labels"]));
    let n = scores.size()[0];
    let mut precision = Precision::new(0.5).unwrap();
    let mut recall = Recall::new(0.5).unwrap();
    let mut f1 = F1::new(0.5).unwrap();
    let mut auc = Auc::new();
    let mut never = Precision::new(1.0).unwrap();
    for (start, len) in batches(n) {
        let (s, y) = (scores.narrow(0, start, len), labels.narrow(0, start, len));
        precision.update(&s, &y).unwrap();
        recall.update(&s, &y).unwrap();
        f1.update(&s, &y).unwrap();
        // Bool labels are the same labels.
        auc.update(&s, &y.eq(1)).unwrap();
        never.update(&s, &y).unwrap();
    }
    near("precision", precision.result().unwrap(), &f["precision"]);
    near("recall", recall.result().unwrap(), &f["recall"]);
    near("f1", f1.result().unwrap(), &f["f1"]);
    near("auc", auc.result().unwrap(), &f["auc"]);
    near("precision_threshold_1", never.result().unwrap(), &f["precision_threshold_1"]);
}

#[test]
fn perplexity_and_masked_token_accuracy_match_sklearn() {
    let f = &fixture()["perplexity"];
    let logits = Tensor::from_slice(&floats(&f["logits"])).reshape([3, 4, 6]);
    let targets = Tensor::from_slice(&ints(&f["targets"])).reshape([3, 4]);
    let lengths = Tensor::from_slice(&ints(&f["lengths"]));
    let mut perplexity = Perplexity::new();
    let mut tokens = MaskedTokenAccuracy::new();
    // Two batches: sequences 0 and 1..3.
    for (start, len) in [(0, 1), (1, 2)] {
        let (x, y, l) =
            (logits.narrow(0, start, len), targets.narrow(0, start, len), lengths.narrow(0, start, len));
        perplexity.update(&x, &y, TokenMask::Lengths(&l)).unwrap();
        tokens.update(&x, &y, TokenMask::Lengths(&l)).unwrap();
    }
    near("perplexity", perplexity.result().unwrap(), &f["perplexity"]);
    near("token_accuracy", tokens.result().unwrap(), &f["token_accuracy"]);
    let mut all = Perplexity::new();
    all.update(&logits.to_kind(Kind::Float), &targets, TokenMask::All).unwrap();
    let theirs = f["perplexity_all"].as_f64().unwrap();
    // Float logits: within float rounding.
    assert!((all.result().unwrap() - theirs).abs() < 1e-5 * theirs, "{} vs {theirs}", all.result().unwrap());
}
