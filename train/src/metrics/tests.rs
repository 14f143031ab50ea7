//! Hand-worked values, streaming and reset, and typed errors of every metric (the sklearn
//! comparisons are in `train/tests/metrics_sklearn.rs`).

use super::*;
use couplet_modules::Error;
use tch::{Device, Kind, Tensor};

fn ids(v: &[i64]) -> Tensor {
    Tensor::from_slice(v)
}

fn floats(v: &[f32]) -> Tensor {
    Tensor::from_slice(v)
}

fn empty(r: Result<f64>) {
    match r {
        Err(Error::InvalidArgument { message, .. }) => {
            assert!(message.starts_with("empty evaluation"), "{message}")
        }
        other => panic!("expected an empty-evaluation error, got {other:?}"),
    }
}

#[test]
fn mean_weights_and_resets() {
    let mut m = Mean::new("loss");
    empty(m.result());
    m.update(&floats(&[1.0, 2.0, 3.0]), None).unwrap();
    m.update_value(10.0, 2.0).unwrap();
    // (1 + 2 + 3 + 2 * 10) / 5.
    assert_eq!(m.result().unwrap(), 26.0 / 5.0);
    m.reset();
    m.update(&floats(&[1.0, 3.0]), Some(&floats(&[3.0, 1.0]))).unwrap();
    assert_eq!(m.result().unwrap(), 1.5);
    assert_eq!(m.name(), "loss");
    assert!(m.update(&floats(&[f32::NAN]), None).unwrap_err().to_string().contains("flat index 0"));
    assert!(matches!(m.update(&floats(&[1.0]), Some(&floats(&[1.0, 2.0]))), Err(Error::Shape { .. })));
    assert!(m.update(&floats(&[1.0]), Some(&floats(&[-1.0]))).is_err());
    assert!(m.update(&ids(&[1]), None).is_err());
    assert!(m.update_value(1.0, f64::INFINITY).is_err());
    assert_eq!(m.result().unwrap(), 1.5, "failed updates add nothing");
}

#[test]
fn accuracy_from_ids_or_logits() {
    let mut a = Accuracy::new();
    a.update(&ids(&[1, 2, 3, 4]), &ids(&[1, 2, 0, 4])).unwrap();
    assert_eq!(a.result().unwrap(), 0.75);
    // Logits [2, 3]: argmax 2 and 0; labels 2 and 1.
    let logits = floats(&[0.1, 0.2, 0.9, 0.5, 0.1, 0.3]).reshape([2, 3]);
    a.update(&logits, &ids(&[2, 1])).unwrap();
    assert_eq!(a.result().unwrap(), 4.0 / 6.0);
    a.reset();
    empty(a.result());
    let e = a.update(&floats(&[0.1, 0.2]), &ids(&[1, 2, 3])).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e}");
    assert!(a.update(&ids(&[1]), &floats(&[1.0])).unwrap_err().to_string().contains("integer class ids"));
}

#[test]
fn top_k_counts_labels_among_the_k_largest() {
    let logits = floats(&[0.1, 0.5, 0.4, 0.0, 0.9, 0.05, 0.05, 0.0, 0.3, 0.2, 0.1, 0.4]).reshape([3, 4]);
    // Row 0 top-2 {1, 2}; row 1 {0, 1}... row 1 is [0.9, 0.05, 0.05, 0.0] -> {0, 1 or 2}; row 2 {3, 0}.
    let mut t = TopKAccuracy::new(2).unwrap();
    t.update(&logits, &ids(&[2, 3, 0])).unwrap();
    assert_eq!(t.result().unwrap(), 2.0 / 3.0);
    let mut t1 = TopKAccuracy::new(1).unwrap();
    t1.update(&logits, &ids(&[1, 0, 0])).unwrap();
    assert_eq!(t1.result().unwrap(), 2.0 / 3.0);
    assert!(matches!(TopKAccuracy::new(0), Err(Error::Config { .. })));
    let mut t5 = TopKAccuracy::new(5).unwrap();
    assert!(matches!(t5.update(&logits, &ids(&[0, 0, 0])), Err(Error::Shape { .. })));
    assert!(t.update(&logits, &ids(&[0, 4, 0])).unwrap_err().to_string().contains("[0, 4)"));
}

#[test]
fn precision_recall_f1_by_hand() {
    // Scores > 0.5 predicted positive: predictions 1 1 0 0 1, labels 1 0 1 0 1:
    // tp 2, fp 1, fn 1, tn 1.
    let scores = floats(&[0.9, 0.6, 0.5, 0.1, 0.7]);
    let labels = ids(&[1, 0, 1, 0, 1]);
    let mut p = Precision::new(0.5).unwrap();
    let mut r = Recall::new(0.5).unwrap();
    let mut f = F1::new(0.5).unwrap();
    p.update(&scores, &labels).unwrap();
    r.update(&scores, &labels).unwrap();
    f.update(&scores, &labels).unwrap();
    assert_eq!(
        (p.result().unwrap(), r.result().unwrap(), f.result().unwrap()),
        (2.0 / 3.0, 2.0 / 3.0, 2.0 / 3.0)
    );
    // Bool predictions and labels; adds tp 0, fp 0, fn 1.
    p.update(&Tensor::from_slice(&[false]), &Tensor::from_slice(&[true])).unwrap();
    r.update(&Tensor::from_slice(&[false]), &Tensor::from_slice(&[true])).unwrap();
    assert_eq!((p.result().unwrap(), r.result().unwrap()), (2.0 / 3.0, 0.5));
    // No predicted positive: 0, as sklearn's zero_division=0.
    let mut none = Precision::new(0.5).unwrap();
    none.update(&floats(&[0.1]), &ids(&[1])).unwrap();
    assert_eq!(none.result().unwrap(), 0.0);
    none.reset();
    empty(none.result());
    assert!(p.update(&scores, &ids(&[1, 0, 2, 0, 1])).unwrap_err().to_string().contains("0/1"));
    assert!(matches!(p.update(&scores, &ids(&[1])), Err(Error::Shape { .. })));
    assert!(matches!(Recall::new(f64::NAN), Err(Error::Config { .. })));
    assert!(f.update(&floats(&[f32::NAN]), &ids(&[1])).is_err());
}

#[test]
fn auc_by_hand_with_ties() {
    // Positives 0.8, 0.4; negatives 0.4, 0.1: pairs (0.8 > 0.4), (0.8 > 0.1), (0.4 = 0.4: a
    // half), (0.4 > 0.1): 3.5 / 4.
    let mut a = Auc::new();
    a.update(&floats(&[0.8, 0.4]), &ids(&[1, 0])).unwrap();
    a.update(&floats(&[0.4, 0.1]), &ids(&[1, 0])).unwrap();
    assert_eq!(a.result().unwrap(), 0.875);
    a.reset();
    empty(a.result());
    a.update(&floats(&[0.3, 0.2]), &ids(&[1, 1])).unwrap();
    assert!(a.result().unwrap_err().to_string().contains("needs both classes"));
    assert!(a.update(&floats(&[f32::INFINITY]), &ids(&[1])).is_err());
}

#[test]
fn perplexity_of_uniform_logits_is_the_vocabulary_size() {
    let mut p = Perplexity::new();
    let logits = Tensor::zeros([2, 3, 7], (Kind::Float, Device::Cpu));
    let targets = Tensor::zeros([2, 3], (Kind::Int64, Device::Cpu));
    p.update(&logits, &targets, TokenMask::Lengths(&ids(&[3, 1]))).unwrap();
    assert!((p.result().unwrap() - 7.0).abs() < 1e-9);
    // A model that gives its targets probability 1/2 everywhere: perplexity 2.
    let mut q = Perplexity::new();
    q.update_nll(4.0 * std::f64::consts::LN_2, 4).unwrap();
    assert!((q.result().unwrap() - 2.0).abs() < 1e-12);
    q.reset();
    empty_tokens(q.result());
    assert!(q.update_nll(-1.0, 1).is_err());
    assert!(p
        .update(&logits, &targets.full_like(7), TokenMask::All)
        .unwrap_err()
        .to_string()
        .contains("[0, 7)"));
    assert!(matches!(
        p.update(&logits, &Tensor::zeros([2, 4], (Kind::Int64, Device::Cpu)), TokenMask::All),
        Err(Error::Shape { .. })
    ));
    let lengths = ids(&[4, 1]);
    let e =
        p.update(&logits, &Tensor::zeros([2, 3], (Kind::Int64, Device::Cpu)), TokenMask::Lengths(&lengths));
    assert!(e.unwrap_err().to_string().contains("lengths must be in [0, 3]"));
}

fn empty_tokens(r: Result<f64>) {
    assert!(r.unwrap_err().to_string().contains("empty evaluation: no tokens"));
}

#[test]
fn sequence_metrics_respect_lengths_and_masks() {
    // Predictions vs targets, [3, 4]; padding positions hold wrong ids on purpose.
    let predictions = ids(&[1, 2, 3, 9, 1, 2, 0, 0, 5, 6, 7, 8]).reshape([3, 4]);
    let targets = ids(&[1, 2, 3, 4, 1, 3, 0, 0, 5, 6, 7, 8]).reshape([3, 4]);
    let lengths = ids(&[3, 2, 4]);
    let mut exact = ExactSequenceMatch::new();
    let mut tokens = MaskedTokenAccuracy::new();
    exact.update(&predictions, &targets, TokenMask::Lengths(&lengths)).unwrap();
    tokens.update(&predictions, &targets, TokenMask::Lengths(&lengths)).unwrap();
    // Sequence 0 matches within its 3 steps; sequence 1 misses step 1; sequence 2 matches.
    assert_eq!(exact.result().unwrap(), 2.0 / 3.0);
    // 9 real tokens, 8 right.
    assert_eq!(tokens.result().unwrap(), 8.0 / 9.0);
    // Without a mask the padding counts.
    let mut all = ExactSequenceMatch::new();
    all.update(&predictions, &targets, TokenMask::All).unwrap();
    assert_eq!(all.result().unwrap(), 1.0 / 3.0);
    // A Bool mask equal to the lengths gives the same.
    let mask = Tensor::arange(4, (Kind::Int64, Device::Cpu)).unsqueeze(0).lt_tensor(&lengths.unsqueeze(1));
    let mut masked = MaskedTokenAccuracy::new();
    masked.update(&predictions, &targets, TokenMask::Mask(&mask)).unwrap();
    assert_eq!(masked.result().unwrap(), 8.0 / 9.0);
    // Logits [B, T, V] work as predictions.
    let logits = predictions.one_hot(10).to_kind(Kind::Float);
    let mut from_logits = ExactSequenceMatch::new();
    from_logits.update(&logits, &targets, TokenMask::Lengths(&lengths)).unwrap();
    assert_eq!(from_logits.result().unwrap(), 2.0 / 3.0);
    // Errors: 1-D targets, a mask of the wrong shape or kind, lengths of the wrong size.
    assert!(matches!(exact.update(&ids(&[1]), &ids(&[1]), TokenMask::All), Err(Error::Shape { .. })));
    let bad_mask = Tensor::ones([3, 3], (Kind::Bool, Device::Cpu));
    assert!(matches!(
        exact.update(&predictions, &targets, TokenMask::Mask(&bad_mask)),
        Err(Error::Shape { .. })
    ));
    let int_mask = Tensor::ones([3, 4], (Kind::Int64, Device::Cpu));
    assert!(exact
        .update(&predictions, &targets, TokenMask::Mask(&int_mask))
        .unwrap_err()
        .to_string()
        .contains("Bool"));
    assert!(matches!(
        exact.update(&predictions, &targets, TokenMask::Lengths(&ids(&[1, 2]))),
        Err(Error::Shape { .. })
    ));
    let neg = ids(&[1, -1, 2]);
    assert!(tokens.update(&predictions, &targets, TokenMask::Lengths(&neg)).is_err());
    exact.reset();
    empty(exact.result());
}

#[test]
fn metrics_are_send_and_usable_as_trait_objects() {
    let mut all: Vec<Box<dyn Metric>> = vec![
        Box::new(Mean::new("loss")),
        Box::new(Accuracy::new()),
        Box::new(TopKAccuracy::new(3).unwrap()),
        Box::new(Precision::new(0.5).unwrap()),
        Box::new(Recall::new(0.5).unwrap()),
        Box::new(F1::new(0.5).unwrap()),
        Box::new(Auc::new()),
        Box::new(Perplexity::new()),
        Box::new(ExactSequenceMatch::new()),
        Box::new(MaskedTokenAccuracy::new()),
    ];
    let names: Vec<&str> = all.iter().map(|m| m.name()).collect();
    assert_eq!(
        names,
        [
            "loss",
            "accuracy",
            "top_3_accuracy",
            "precision",
            "recall",
            "f1",
            "auc",
            "perplexity",
            "exact_match",
            "token_accuracy"
        ]
    );
    for m in &mut all {
        m.reset();
        assert!(m.result().is_err());
    }
}
