//! `Linear`, `LayerNorm` and `BatchNorm` against PyTorch 2.13.0 (`torch.nn.Linear`,
//! `nn.LayerNorm`, `nn.BatchNorm1d/2d`): fixtures written by `scripts/fixtures/modules.py`.

mod common;

use common::{assert_close, load_fixture, Fixture};
use couplet::{
    BatchNorm, BatchNormConfig, DataFormat, LayerNorm, LayerNormConfig, Linear, LinearConfig, Mode, Store,
};
use tch::{Kind, Tensor};

const TOL: f64 = 1e-5;

/// Writes `value` into a variable's storage, outside the autograd graph.
fn assign(variable: &Tensor, value: &Tensor) {
    tch::no_grad(|| {
        let mut v = variable.shallow_clone();
        v.f_copy_(value).unwrap();
    });
}

fn sum_of_squares(y: &Tensor) -> Tensor {
    (y * y).sum(Kind::Float)
}

fn check_linear(fx: &Fixture, case: &str) {
    let store = Store::cpu();
    let lin = Linear::new(&store.root(), LinearConfig::new(3).with_input_size(4)).unwrap();
    // couplet's `w [I, O]` is PyTorch's `weight [O, I]` transposed.
    assign(lin.w().unwrap(), &fx.get("linear.weight").tr());
    assign(lin.b().unwrap().unwrap(), &fx.get("linear.bias"));
    let y = lin.forward(&fx.get(&format!("linear.{case}.x"))).unwrap();
    assert_close(&y, &fx.get(&format!("linear.{case}.y")), TOL);
    sum_of_squares(&y).backward();
    assert_close(&lin.w().unwrap().grad(), &fx.get(&format!("linear.{case}.grad_weight")).tr(), TOL);
    assert_close(&lin.b().unwrap().unwrap().grad(), &fx.get(&format!("linear.{case}.grad_bias")), TOL);
}

#[test]
fn linear_matches_pytorch_on_rank_2_and_rank_3_inputs() {
    let fx = load_fixture("modules");
    check_linear(&fx, "rank2");
    check_linear(&fx, "rank3");
}

fn check_layer_norm(fx: &Fixture, case: &str, ln: &LayerNorm) {
    let key = |k: &str| fx.get(&format!("layer_norm.{case}.{k}"));
    assign(ln.scale().unwrap().unwrap(), &key("weight"));
    assign(ln.offset().unwrap().unwrap(), &key("bias"));
    let x = key("x").set_requires_grad(true);
    let y = ln.forward(&x).unwrap();
    assert_close(&y, &key("y"), TOL);
    sum_of_squares(&y).backward();
    assert_close(&x.grad(), &key("grad_x"), TOL);
    assert_close(&ln.scale().unwrap().unwrap().grad(), &key("grad_weight"), TOL);
    assert_close(&ln.offset().unwrap().unwrap().grad(), &key("grad_bias"), TOL);
}

#[test]
fn layer_norm_over_the_last_dimension_matches_pytorch() {
    let fx = load_fixture("modules");
    let store = Store::cpu();
    let ln = LayerNorm::new(&store.root(), LayerNormConfig::new().with_normalized_shape(&[5])).unwrap();
    check_layer_norm(&fx, "last", &ln);
}

#[test]
fn layer_norm_over_the_last_two_dimensions_matches_pytorch() {
    let fx = load_fixture("modules");
    let store = Store::cpu();
    // Lazy: the first call creates `[3, 4]` variables, then PyTorch's values are copied in.
    let ln = LayerNorm::new(&store.root(), LayerNormConfig::new().with_num_axes(2)).unwrap();
    let _ = ln.forward(&fx.get("layer_norm.last2.x")).unwrap();
    assert_eq!(ln.normalized_shape(), Some(&[3i64, 4][..]));
    check_layer_norm(&fx, "last2", &ln);
}

/// Runs PyTorch's two training steps and the evaluation step through a `BatchNorm` with
/// `data_format`, transposing PyTorch's channels-first tensors for channels last.
fn check_batch_norm(fx: &Fixture, case: &str, data_format: DataFormat) {
    let key = |k: &str| fx.get(&format!("{case}.{k}"));
    let to_format = |t: Tensor| match data_format {
        DataFormat::ChannelsFirst => t,
        DataFormat::ChannelsLast => t.movedim([1], [t.dim() as i64 - 1]),
    };
    let store = Store::cpu();
    let bn = BatchNorm::new(&store.root(), BatchNormConfig::new().with_data_format(data_format)).unwrap();
    // PyTorch's defaults are couplet's: eps 1e-5, momentum 0.1 = decay_rate 0.9.
    let _ = bn.forward_t(&to_format(key("train1.x")), Mode::Eval).unwrap();
    assign(bn.scale().unwrap().unwrap(), &key("weight"));
    assign(bn.offset().unwrap().unwrap(), &key("bias"));
    for step in ["train1", "train2"] {
        let x = to_format(key(&format!("{step}.x"))).detach().set_requires_grad(true);
        let y = bn.forward_t(&x, Mode::Train).unwrap();
        assert_close(&y, &to_format(key(&format!("{step}.y"))), TOL);
        assert_close(bn.moving_mean().unwrap(), &key(&format!("{step}.running_mean")), TOL);
        assert_close(bn.moving_variance().unwrap(), &key(&format!("{step}.running_var")), TOL);
        if step == "train1" {
            sum_of_squares(&y).backward();
            assert_close(&x.grad(), &to_format(key("train1.grad_x")), TOL);
            assert_close(&bn.scale().unwrap().unwrap().grad(), &key("train1.grad_weight"), TOL);
            assert_close(&bn.offset().unwrap().unwrap().grad(), &key("train1.grad_bias"), TOL);
        }
    }
    let y = bn.forward_t(&to_format(key("eval.x")), Mode::Eval).unwrap();
    assert_close(&y, &to_format(key("eval.y")), TOL);
    assert_close(bn.moving_mean().unwrap(), &key("train2.running_mean"), TOL);
}

#[test]
fn batch_norm_1d_matches_pytorch_in_training_and_evaluation() {
    let fx = load_fixture("modules");
    check_batch_norm(&fx, "bn1d", DataFormat::ChannelsFirst);
    check_batch_norm(&fx, "bn1d", DataFormat::ChannelsLast);
}

#[test]
fn batch_norm_2d_matches_pytorch_in_training_and_evaluation() {
    let fx = load_fixture("modules");
    check_batch_norm(&fx, "bn2d", DataFormat::ChannelsFirst);
}

#[test]
fn batch_norm_2d_channels_last_matches_pytorch_on_transposed_inputs() {
    let fx = load_fixture("modules");
    check_batch_norm(&fx, "bn2d", DataFormat::ChannelsLast);
}
