//! couplet's `MultiHeadAttention` against PyTorch 2.13.0's `torch.nn.MultiheadAttention
//! (batch_first=True)` (fixtures written by `scripts/fixtures/attention.py`): outputs, head-
//! averaged weights and gradients wrt the inputs, on both the fused path (`need_weights`
//! false, libtorch's `scaled_dot_product_attention`) and the explicit one; then the cases
//! where couplet differs on purpose (fully masked rows give zeros), dropout, and errors.

#[path = "../../tests/common/mod.rs"]
mod common;

use common::{assert_close, load_fixture, Fixture};
use couplet_attention::{AttentionMasks, MultiHeadAttention, MultiHeadAttentionConfig};
use couplet_modules::{Error, Mode, Module, Store};
use tch::{Device, Kind, Tensor};

const TOL: f64 = 1e-5;
const E: i64 = 8;

fn randn(shape: &[i64]) -> Tensor {
    Tensor::randn(shape, (Kind::Float, Device::Cpu))
}

fn has_nan(t: &Tensor) -> bool {
    t.isnan().any().int64_value(&[]) != 0
}

fn max_abs(t: &Tensor) -> f64 {
    t.abs().max().double_value(&[])
}

/// A module of case `prefix` with the fixture's PyTorch weights.
fn torch_module(store: &Store, fx: &Fixture, prefix: &str) -> MultiHeadAttention {
    let get = |k: &str| fx.get(&format!("{prefix}.{k}"));
    let (kdim, vdim) = (get("key").size()[2], get("value").size()[2]);
    let config = MultiHeadAttentionConfig::new(E, 2).with_kdim(kdim).with_vdim(vdim);
    let mha = MultiHeadAttention::new(&store.root(), config).unwrap();
    mha.load_torch(
        &get("q_weight"),
        &get("k_weight"),
        &get("v_weight"),
        Some(&get("in_bias")),
        &get("out_weight"),
        Some(&get("out_bias")),
    )
    .unwrap();
    mha
}

fn check_case(prefix: &str, causal: bool) {
    let fx = load_fixture("attention");
    let get = |k: &str| fx.get(&format!("{prefix}.{k}"));
    let store = Store::cpu();
    let mha = torch_module(&store, &fx, prefix);
    let attend = fx.keys().contains(&format!("{prefix}.attend")).then(|| get("attend"));
    for need_weights in [true, false] {
        let leaf = |k: &str| get(k).copy().set_requires_grad(true);
        let (q, k, v) = (leaf("query"), leaf("key"), leaf("value"));
        let masks = AttentionMasks { key_mask: attend.as_ref(), causal, need_weights };
        let (out, weights) = mha.forward_t(&q, &k, &v, &masks, Mode::Train).unwrap();
        assert_close(&out, &get("out"), TOL);
        match weights {
            Some(w) => assert_close(&w, &get("weights"), TOL),
            None => assert!(!need_weights, "{prefix}: weights asked for"),
        }
        (&out * get("r")).sum(Kind::Float).backward();
        assert_close(&q.grad(), &get("grad.query"), TOL);
        assert_close(&k.grad(), &get("grad.key"), TOL);
        assert_close(&v.grad(), &get("grad.value"), TOL);
    }
}

#[test]
fn matches_pytorch_without_a_mask() {
    check_case("plain", false);
}

#[test]
fn key_mask_is_pytorch_key_padding_mask_negated() {
    let fx = load_fixture("attention");
    // The fixture saved `!key_padding_mask`: rows keep 3 and 2 keys.
    let attend = fx.get("padding.attend");
    assert_eq!(attend.kind(), Kind::Bool);
    assert_eq!(attend.sum(Kind::Int64).int64_value(&[]), 5);
    check_case("padding", false);
}

#[test]
fn causal_matches_pytorch_attn_mask() {
    check_case("causal", true);
    check_case("causal_padding", true);
}

#[test]
fn kdim_and_vdim_match_pytorch_separate_projections() {
    check_case("kvdim", false);
}

#[test]
fn fully_masked_query_rows_give_zeros_not_nan() {
    tch::manual_seed(1);
    let store = Store::cpu();
    let mha = MultiHeadAttention::new(&store.root(), MultiHeadAttentionConfig::new(E, 2)).unwrap();
    for var in mha.variables().unwrap().iter().filter(|v| v.name().ends_with("/b")) {
        tch::no_grad(|| var.tensor().shallow_clone().copy_(&randn(&[E])));
    }
    let mask = Tensor::from_slice(&[true, true, false, true, false, false, false, false]).view([2, 4]);
    for need_weights in [true, false] {
        let q = randn(&[2, 3, E]).set_requires_grad(true);
        let kv = randn(&[2, 4, E]).set_requires_grad(true);
        let masks = AttentionMasks { key_mask: Some(&mask), causal: false, need_weights };
        let (out, weights) = mha.forward_t(&q, &kv, &kv, &masks, Mode::Eval).unwrap();
        // Row 1 attends nothing: an exact zero output (not the output bias, not NaN).
        assert_eq!(max_abs(&out.get(1)), 0.0);
        assert!(max_abs(&out.get(0)) > 0.0);
        if let Some(w) = &weights {
            assert_eq!(max_abs(&w.get(1)), 0.0);
            // Row 0 weights sum to 1 over its three keys and are 0 at the masked key.
            assert_close(
                &w.get(0).sum_dim_intlist(-1, false, Kind::Float),
                &Tensor::ones([3], (Kind::Float, Device::Cpu)),
                1e-6,
            );
            assert_eq!(max_abs(&w.get(0).select(1, 2)), 0.0);
        }
        // Row 0 is what a batch of row 0 alone gives.
        let alone = AttentionMasks { key_mask: Some(&mask.narrow(0, 0, 1)), causal: false, need_weights };
        let (out0, _) = mha
            .forward_t(&q.narrow(0, 0, 1), &kv.narrow(0, 0, 1), &kv.narrow(0, 0, 1), &alone, Mode::Eval)
            .unwrap();
        assert_close(&out.narrow(0, 0, 1), &out0, 1e-6);
        // Gradients are finite everywhere, and zero for the fully masked row's inputs.
        out.sum(Kind::Float).backward();
        assert!(!has_nan(&q.grad()) && !has_nan(&kv.grad()), "NaN gradient (need_weights {need_weights})");
        assert_eq!(max_abs(&q.grad().get(1)), 0.0);
        assert_eq!(max_abs(&kv.grad().get(1)), 0.0);
        for var in mha.variables().unwrap() {
            assert!(!has_nan(&var.tensor().grad()), "{}", var.name());
        }
    }
}

#[test]
fn causal_with_the_first_key_masked_zeroes_only_the_first_query() {
    let store = Store::cpu();
    let mha = MultiHeadAttention::new(&store.root(), MultiHeadAttentionConfig::new(E, 4)).unwrap();
    let x = randn(&[1, 3, E]);
    let mask = Tensor::from_slice(&[false, true, true]).view([1, 3]);
    for need_weights in [true, false] {
        let masks = AttentionMasks { key_mask: Some(&mask), causal: true, need_weights };
        let (out, w) = mha.forward_t(&x, &x, &x, &masks, Mode::Eval).unwrap();
        assert!(!has_nan(&out));
        assert_eq!(max_abs(&out.get(0).get(0)), 0.0);
        assert!(max_abs(&out.get(0).get(1)) > 0.0 && max_abs(&out.get(0).get(2)) > 0.0);
        if let Some(w) = w {
            // Query 1 attends only key 1; query 2 keys 1 and 2.
            let w = Vec::<f32>::try_from(w.flatten(0, -1)).unwrap();
            assert_eq!(&w[..5], &[0.0, 0.0, 0.0, 0.0, 1.0]);
            assert_eq!(w[6], 0.0);
            assert!((w[7] + w[8] - 1.0).abs() < 1e-6);
        }
    }
}

#[test]
fn no_keys_at_all_gives_zeros() {
    let store = Store::cpu();
    let mha = MultiHeadAttention::new(&store.root(), MultiHeadAttentionConfig::new(E, 2)).unwrap();
    // A non-zero output bias: the zero rows are not just `context W + 0`.
    let bias = store.get("multi_head_attention/output/b").unwrap();
    let _ = tch::no_grad(|| bias.tensor().shallow_clone().fill_(1.0));
    let (q, kv) = (randn(&[2, 3, E]), randn(&[2, 0, E]));
    for need_weights in [true, false] {
        for causal in [true, false] {
            let masks = AttentionMasks { key_mask: None, causal, need_weights };
            let (out, w) = mha.forward_t(&q, &kv, &kv, &masks, Mode::Eval).unwrap();
            assert_eq!(out.size(), [2, 3, E]);
            assert_eq!(max_abs(&out), 0.0);
            if let Some(w) = w {
                assert_eq!(w.size(), [2, 3, 0]);
            }
        }
    }
}

#[test]
fn self_attention_takes_one_packed_projection_with_the_same_numbers() {
    tch::manual_seed(5);
    for bias in [true, false] {
        let store = Store::cpu();
        let mha = MultiHeadAttention::new(&store.root(), MultiHeadAttentionConfig::new(8, 2).with_bias(bias))
            .unwrap();
        let weights: Vec<Tensor> = store.variables().iter().map(|v| v.tensor().shallow_clone()).collect();
        let x = randn(&[2, 4, 8]);
        let mask = Tensor::from_slice(&[true, true, false, true, true, false, false, false]).view([2, 4]);
        for need_weights in [false, true] {
            let masks = AttentionMasks { key_mask: Some(&mask), causal: true, need_weights };
            // The same tensor three times takes the packed [E, 3E] product; copies do not.
            let packed = mha.forward_t(&x, &x, &x, &masks, Mode::Train).unwrap().0;
            let separate = mha.forward_t(&x, &x.copy(), &x.copy(), &masks, Mode::Train).unwrap().0;
            assert_close(&packed, &separate, 1e-6);
            // Gradients sum over rows in another order (one [E, 3E] product against three):
            // float rounding, measured up to 1.9e-6 over 300 seeds.
            let grads = |out: &Tensor| Tensor::run_backward(&[out.sum(Kind::Float)], &weights, false, false);
            for (a, b) in grads(&packed).iter().zip(grads(&separate).iter()) {
                assert_close(a, b, 1e-5);
            }
        }
    }
}

#[test]
fn fused_path_equals_explicit_path() {
    tch::manual_seed(2);
    let store = Store::cpu();
    let config = MultiHeadAttentionConfig::new(12, 3).with_kdim(5).with_vdim(7);
    let mha = MultiHeadAttention::new(&store.root(), config).unwrap();
    let (q, k, v) = (randn(&[3, 5, 12]), randn(&[3, 5, 5]), randn(&[3, 5, 7]));
    let mask = Tensor::rand([3, 5], (Kind::Float, Device::Cpu)).gt(0.4);
    for key_mask in [None, Some(&mask)] {
        for causal in [false, true] {
            let run = |need_weights| {
                let masks = AttentionMasks { key_mask, causal, need_weights };
                mha.forward_t(&q, &k, &v, &masks, Mode::Eval).unwrap().0
            };
            assert_close(&run(false), &run(true), 1e-5);
        }
    }
}

#[test]
fn dropout_only_in_train_mode() {
    tch::manual_seed(3);
    let store = Store::cpu();
    let mha = MultiHeadAttention::new(&store.root(), MultiHeadAttentionConfig::new(E, 2).with_dropout(0.5))
        .unwrap();
    let no_drop = MultiHeadAttention::new(&store.root(), MultiHeadAttentionConfig::new(E, 2)).unwrap();
    let (q, kv) = (randn(&[2, 3, E]), randn(&[2, 6, E]));
    for need_weights in [true, false] {
        let masks = AttentionMasks { key_mask: None, causal: false, need_weights };
        let run = |m: &MultiHeadAttention, mode| m.forward_t(&q, &kv, &kv, &masks, mode).unwrap();
        let (eval, eval_w) = run(&mha, Mode::Eval);
        assert_close(&run(&mha, Mode::Eval).0, &eval, 0.0);
        let (train, train_w) = run(&mha, Mode::Train);
        assert!(max_abs(&(&train - &eval)) > 1e-3, "dropout changed nothing (need_weights {need_weights})");
        // Two training calls draw different masks.
        assert!(max_abs(&(&run(&mha, Mode::Train).0 - &train)) > 1e-3);
        // Returned weights are the ones before dropout.
        if let (Some(e), Some(t)) = (eval_w, train_w) {
            assert_close(&t, &e, 1e-6);
        }
        // Dropout 0 in training is the evaluation result.
        assert_close(&run(&no_drop, Mode::Train).0, &run(&no_drop, Mode::Eval).0, 0.0);
    }
}

#[test]
fn variables_have_pinned_names() {
    let store = Store::cpu();
    let mha =
        MultiHeadAttention::new(&store.root(), MultiHeadAttentionConfig::new(E, 2).with_kdim(3).with_vdim(5))
            .unwrap();
    let vars: Vec<_> =
        mha.variables().unwrap().iter().map(|v| (v.name().to_string(), v.tensor().size())).collect();
    let want = [
        ("multi_head_attention/query/w", vec![E, E]),
        ("multi_head_attention/query/b", vec![E]),
        ("multi_head_attention/key/w", vec![3, E]),
        ("multi_head_attention/key/b", vec![E]),
        ("multi_head_attention/value/w", vec![5, E]),
        ("multi_head_attention/value/b", vec![E]),
        ("multi_head_attention/output/w", vec![E, E]),
        ("multi_head_attention/output/b", vec![E]),
    ];
    let want: Vec<_> = want.into_iter().map(|(n, s)| (n.to_string(), s)).collect();
    assert_eq!(vars, want);
    let no_bias =
        MultiHeadAttention::new(&store.root(), MultiHeadAttentionConfig::new(E, 2).with_bias(false)).unwrap();
    assert_eq!(no_bias.variables().unwrap().len(), 4);
    assert!(format!("{mha:?}").contains("multi_head_attention"));
    fn is_send<T: Send>() {}
    is_send::<MultiHeadAttention>();
}

fn config_error(config: MultiHeadAttentionConfig) -> String {
    let store = Store::cpu();
    let e = MultiHeadAttention::new(&store.root(), config).unwrap_err();
    assert!(matches!(e, Error::Config { .. }), "{e:?}");
    e.to_string()
}

#[test]
fn bad_configurations_are_config_errors() {
    assert_eq!(
        config_error(MultiHeadAttentionConfig::new(10, 3)),
        "multi_head_attention: bad configuration: num_heads (3) must divide embed_dim (10)"
    );
    assert_eq!(
        config_error(MultiHeadAttentionConfig::new(0, 1)),
        "multi_head_attention: bad configuration: embed_dim, num_heads, kdim and vdim must be > 0, got 0, 1, 0, 0"
    );
    assert_eq!(
        config_error(MultiHeadAttentionConfig::new(4, 2).with_kdim(-1)),
        "multi_head_attention: bad configuration: embed_dim, num_heads, kdim and vdim must be > 0, got 4, 2, -1, 4"
    );
    for (p, shown) in [(1.0, "1"), (-0.1, "-0.1"), (f64::NAN, "NaN")] {
        assert_eq!(
            config_error(MultiHeadAttentionConfig::new(4, 2).with_dropout(p)),
            format!("multi_head_attention: bad configuration: dropout must be in [0, 1), got {shown}")
        );
    }
}

#[test]
fn bad_inputs_are_shape_errors_naming_the_module() {
    let store = Store::cpu();
    let mha =
        MultiHeadAttention::new(&store.root(), MultiHeadAttentionConfig::new(E, 2).with_kdim(4)).unwrap();
    let (q, k, v) = (randn(&[2, 3, E]), randn(&[2, 5, 4]), randn(&[2, 5, E]));
    let none = AttentionMasks::default();
    let err = |q: &Tensor, k: &Tensor, v: &Tensor, m: &AttentionMasks| {
        let e = mha.forward_t(q, k, v, m, Mode::Eval).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }), "{e:?}");
        e.to_string()
    };
    assert_eq!(err(&q.get(0), &k, &v, &none), "multi_head_attention: query must be [B, L, 8], got [3, 8]");
    assert_eq!(
        err(&randn(&[2, 3, 4]), &k, &v, &none),
        "multi_head_attention: query must be [B, L, 8], got [2, 3, 4]"
    );
    assert_eq!(
        err(&q, &randn(&[3, 5, 4]), &v, &none),
        "multi_head_attention: key must be [2, L, 4], got [3, 5, 4]"
    );
    assert_eq!(
        err(&q, &randn(&[2, 5, E]), &v, &none),
        "multi_head_attention: key must be [2, L, 4], got [2, 5, 8]"
    );
    assert_eq!(
        err(&q, &k, &randn(&[2, 4, E]), &none),
        "multi_head_attention: value must be [2, 5, 8], got [2, 4, 8]"
    );
    assert_eq!(
        err(&q.to_kind(Kind::Double), &k, &v, &none),
        "multi_head_attention: query kind must be Float, got Double"
    );
    let wrong = Tensor::ones([2, 4], (Kind::Bool, Device::Cpu));
    let masks = AttentionMasks { key_mask: Some(&wrong), ..Default::default() };
    assert_eq!(
        err(&q, &k, &v, &masks),
        "multi_head_attention: key mask must be a bool tensor [2, 5], got Bool [2, 4]"
    );
    let float = Tensor::ones([2, 5], (Kind::Float, Device::Cpu));
    let masks = AttentionMasks { key_mask: Some(&float), causal: true, need_weights: true };
    assert_eq!(
        err(&q, &k, &v, &masks),
        "multi_head_attention: key mask must be a bool tensor [2, 5], got Float [2, 5]"
    );
}

#[test]
fn load_torch_checks_every_shape_before_copying() {
    let store = Store::cpu();
    let mha =
        MultiHeadAttention::new(&store.root(), MultiHeadAttentionConfig::new(4, 2).with_vdim(3)).unwrap();
    let before: Vec<Tensor> = mha.variables().unwrap().iter().map(|v| v.tensor().copy()).collect();
    let w = |o: i64, i: i64| randn(&[o, i]);
    let (b3, b1) = (randn(&[12]), randn(&[4]));
    let e = mha.load_torch(&w(4, 4), &w(4, 4), &w(4, 4), Some(&b3), &w(4, 4), Some(&b1)).unwrap_err();
    assert_eq!(e.to_string(), "multi_head_attention/value: PyTorch weight must be [4, 3], got [4, 4]");
    let e =
        mha.load_torch(&w(4, 4), &w(4, 4), &w(4, 3), Some(&randn(&[8])), &w(4, 4), Some(&b1)).unwrap_err();
    assert_eq!(e.to_string(), "multi_head_attention: in_proj_bias must be [12], got [8]");
    let e = mha.load_torch(&w(4, 4), &w(4, 4), &w(4, 3), None, &w(4, 4), Some(&b1)).unwrap_err();
    assert_eq!(e.to_string(), "multi_head_attention/query: PyTorch bias must be [4], got absent");
    let e =
        mha.load_torch(&w(4, 4), &w(4, 4), &w(4, 3), Some(&b3), &w(4, 4), Some(&randn(&[5]))).unwrap_err();
    assert_eq!(e.to_string(), "multi_head_attention/output: PyTorch bias must be [4], got [5]");
    // Nothing was copied by the failed calls.
    for (v, old) in mha.variables().unwrap().iter().zip(&before) {
        assert_close(v.tensor(), old, 0.0);
    }
    let no_bias =
        MultiHeadAttention::new(&store.root(), MultiHeadAttentionConfig::new(4, 2).with_bias(false)).unwrap();
    let e = no_bias.load_torch(&w(4, 4), &w(4, 4), &w(4, 4), Some(&b3), &w(4, 4), None).unwrap_err();
    assert_eq!(
        e.to_string(),
        "multi_head_attention_1/query: PyTorch bias must be absent (the module has no biases), got [4]"
    );
    no_bias.load_torch(&w(4, 4), &w(4, 4), &w(4, 4), None, &w(4, 4), None).unwrap();
}
