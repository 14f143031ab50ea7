//! GroupNorm, InstanceNorm, Conv3d, Conv1dTranspose, CausalConv1d, DepthwiseConv2d and
//! SeparableConv2d against references computed with PyTorch (`scripts/fixtures/sonnet_extra.py`):
//! `nn.GroupNorm` and `nn.InstanceNorm2d`, TF-padded `F.conv3d`, conv1d_transpose as the
//! gradient of the forward convolution, left-padded `F.conv1d`, and TensorFlow's depthwise
//! formula evaluated one channel at a time. Channels-first layouts are checked against the
//! same (channels-last) expectations.

mod common;

use common::{assert_close, load_fixture, Fixture};
use couplet::{
    CausalConv1d, CausalConv1dConfig, Conv1dTranspose, Conv1dTransposeConfig, Conv3d, Conv3dConfig,
    DataFormat, DataFormat1d, DataFormat2d, DataFormat3d, DepthwiseConv2d, DepthwiseConv2dConfig, GroupNorm,
    GroupNormConfig, InstanceNorm, Padding, SeparableConv2d, SeparableConv2dConfig, Store,
};
use tch::Tensor;

const TOL: f64 = 1e-5;

fn set(var: &Tensor, value: &Tensor) {
    let mut v = var.shallow_clone();
    tch::no_grad(|| v.copy_(value));
}

fn load(fx: &Fixture, prefix: &str, w: &Tensor, b: Option<&Tensor>) {
    set(w, &fx.get(&format!("{prefix}/w")));
    set(b.expect("module has a bias"), &fx.get(&format!("{prefix}/b")));
}

/// Channels-last `[B, .., C]` to channels-first `[B, C, ..]`, and back.
fn to_first(x: &Tensor) -> Tensor {
    x.movedim([x.dim() as i64 - 1], [1])
}
fn to_last(x: &Tensor) -> Tensor {
    x.movedim([1], [x.dim() as i64 - 1])
}

#[test]
fn group_norm_and_instance_norm_match_pytorch() {
    let fx = load_fixture("sonnet_extra");
    let x = fx.get("group_norm/x");
    for format in [DataFormat::ChannelsLast, DataFormat::ChannelsFirst] {
        let store = Store::cpu();
        let gn = GroupNorm::new(
            &store.root(),
            GroupNormConfig::new(3).with_num_channels(6).with_data_format(format),
        )
        .unwrap();
        set(gn.scale().unwrap().unwrap(), &fx.get("group_norm/scale"));
        set(gn.offset().unwrap().unwrap(), &fx.get("group_norm/offset"));
        let inorm =
            InstanceNorm::new(&store.root(), GroupNormConfig::default().with_data_format(format)).unwrap();
        let (y, yi) = match format {
            DataFormat::ChannelsLast => (gn.forward(&x).unwrap(), {
                let _ = inorm.forward(&x).unwrap();
                set(inorm.norm().scale().unwrap().unwrap(), &fx.get("instance_norm/scale"));
                set(inorm.norm().offset().unwrap().unwrap(), &fx.get("instance_norm/offset"));
                inorm.forward(&x).unwrap()
            }),
            DataFormat::ChannelsFirst => (to_last(&gn.forward(&to_first(&x)).unwrap()), {
                let _ = inorm.forward(&to_first(&x)).unwrap();
                set(inorm.norm().scale().unwrap().unwrap(), &fx.get("instance_norm/scale"));
                set(inorm.norm().offset().unwrap().unwrap(), &fx.get("instance_norm/offset"));
                to_last(&inorm.forward(&to_first(&x)).unwrap())
            }),
        };
        println!("{format:?}");
        assert_close(&y, &fx.get("group_norm/y"), TOL);
        assert_close(&yi, &fx.get("instance_norm/y"), TOL);
    }
}

#[test]
fn conv3d_matches_pytorch_in_both_layouts() {
    let fx = load_fixture("sonnet_extra");
    let x = fx.get("conv3d/x");
    for (case, stride, rate, padding) in [
        ("same_s1", 1, 1, Padding::Same),
        ("same_s2", 2, 1, Padding::Same),
        ("valid_r2", 1, 2, Padding::Valid),
    ] {
        let prefix = format!("conv3d/{case}");
        for format in [DataFormat3d::Ndhwc, DataFormat3d::Ncdhw] {
            let store = Store::cpu();
            let config = Conv3dConfig::new(4, [2, 3, 2])
                .with_stride(stride)
                .with_rate(rate)
                .with_padding(padding)
                .with_data_format(format)
                .with_input_channels(3);
            let conv = Conv3d::new(&store.root(), config).unwrap();
            load(&fx, &prefix, conv.w().unwrap(), conv.b().unwrap());
            let y = match format {
                DataFormat3d::Ndhwc => conv.forward(&x).unwrap(),
                DataFormat3d::Ncdhw => to_last(&conv.forward(&to_first(&x)).unwrap()),
            };
            println!("conv3d {case} {format:?}");
            assert_close(&y, &fx.get(&format!("{prefix}/y")), TOL);
        }
    }
}

#[test]
fn conv1d_transpose_matches_the_gradient_of_the_forward_convolution() {
    let fx = load_fixture("sonnet_extra");
    let x = fx.get("conv1d_transpose/x");
    for (case, padding, out) in [
        ("same", Padding::Same, None),
        ("valid", Padding::Valid, None),
        ("same_out7", Padding::Same, Some(7)),
    ] {
        let prefix = format!("conv1d_transpose/{case}");
        for format in [DataFormat1d::Nwc, DataFormat1d::Ncw] {
            let store = Store::cpu();
            let mut config = Conv1dTransposeConfig::new(2, 3)
                .with_stride(2)
                .with_padding(padding)
                .with_data_format(format)
                .with_input_channels(3);
            if let Some(o) = out {
                config = config.with_output_shape(o);
            }
            let conv = Conv1dTranspose::new(&store.root(), config).unwrap();
            load(&fx, &prefix, conv.w().unwrap(), conv.b().unwrap());
            let y = match format {
                DataFormat1d::Nwc => conv.forward(&x).unwrap(),
                DataFormat1d::Ncw => to_last(&conv.forward(&to_first(&x)).unwrap()),
            };
            println!("conv1d_transpose {case} {format:?}");
            assert_close(&y, &fx.get(&format!("{prefix}/y")), TOL);
        }
    }
}

#[test]
fn causal_conv1d_matches_left_padded_pytorch() {
    let fx = load_fixture("sonnet_extra");
    let x = fx.get("causal_conv1d/x");
    for (case, stride, rate) in [("s1", 1, 1), ("r2", 1, 2), ("s2", 2, 1)] {
        let prefix = format!("causal_conv1d/{case}");
        for format in [DataFormat1d::Nwc, DataFormat1d::Ncw] {
            let store = Store::cpu();
            let config = CausalConv1dConfig::new(2, 3)
                .with_stride(stride)
                .with_rate(rate)
                .with_data_format(format)
                .with_input_channels(3);
            let conv = CausalConv1d::new(&store.root(), config).unwrap();
            load(&fx, &prefix, conv.conv().w().unwrap(), conv.conv().b().unwrap());
            let y = match format {
                DataFormat1d::Nwc => conv.forward(&x).unwrap(),
                DataFormat1d::Ncw => to_last(&conv.forward(&to_first(&x)).unwrap()),
            };
            println!("causal_conv1d {case} {format:?}");
            assert_close(&y, &fx.get(&format!("{prefix}/y")), TOL);
        }
    }
}

#[test]
fn depthwise_conv2d_matches_tensorflows_formula() {
    let fx = load_fixture("sonnet_extra");
    let x = fx.get("depthwise/x");
    for (case, stride, rate, padding) in [
        ("same_s1", 1, 1, Padding::Same),
        ("same_s2", 2, 1, Padding::Same),
        ("valid_r2", 1, 2, Padding::Valid),
    ] {
        let prefix = format!("depthwise/{case}");
        for format in [DataFormat2d::Nhwc, DataFormat2d::Nchw] {
            let store = Store::cpu();
            let config = DepthwiseConv2dConfig::new([3, 2])
                .with_channel_multiplier(2)
                .with_stride(stride)
                .with_rate(rate)
                .with_padding(padding)
                .with_data_format(format)
                .with_input_channels(3);
            let conv = DepthwiseConv2d::new(&store.root(), config).unwrap();
            load(&fx, &prefix, conv.w().unwrap(), conv.b().unwrap());
            let y = match format {
                DataFormat2d::Nhwc => conv.forward(&x).unwrap(),
                DataFormat2d::Nchw => to_last(&conv.forward(&to_first(&x)).unwrap()),
            };
            println!("depthwise {case} {format:?}");
            assert_close(&y, &fx.get(&format!("{prefix}/y")), TOL);
        }
    }
}

#[test]
fn separable_conv2d_matches_depthwise_then_pointwise() {
    let fx = load_fixture("sonnet_extra");
    let x = fx.get("depthwise/x");
    let store = Store::cpu();
    let config = SeparableConv2dConfig::new(5, [3, 2])
        .with_channel_multiplier(2)
        .with_stride(2)
        .with_input_channels(3);
    let conv = SeparableConv2d::new(&store.root(), config).unwrap();
    set(conv.depthwise().w().unwrap(), &fx.get("separable/w_dw"));
    set(conv.pointwise().w().unwrap(), &fx.get("separable/w_pw"));
    set(conv.pointwise().b().unwrap().unwrap(), &fx.get("separable/b"));
    assert_close(&conv.forward(&x).unwrap(), &fx.get("separable/y"), TOL);
}
