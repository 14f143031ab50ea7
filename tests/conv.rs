//! Conv1d, Conv2d and Conv2dTranspose against references computed with PyTorch
//! (`scripts/fixtures/conv.py`): TF-style asymmetric SAME padding, VALID, strides, dilation,
//! and conv2d_transpose as the gradient of the forward convolution. Both channels-last and
//! channels-first layouts are checked against the same (channels-last) expectations.

mod common;

use common::{assert_close, load_fixture, Fixture};
use couplet::{
    Conv1d, Conv1dConfig, Conv2d, Conv2dConfig, Conv2dTranspose, Conv2dTransposeConfig, DataFormat1d,
    DataFormat2d, Padding, Store,
};
use tch::Tensor;

const TOL: f64 = 1e-5;

/// `(case, stride, rate, padding)` shared by the Conv1d and Conv2d fixtures.
const CASES: [(&str, i64, i64, Padding); 6] = [
    ("same_s1", 1, 1, Padding::Same),
    ("same_s2", 2, 1, Padding::Same),
    ("valid_s1", 1, 1, Padding::Valid),
    ("valid_s2", 2, 1, Padding::Valid),
    ("same_r2", 1, 2, Padding::Same),
    ("valid_r2", 1, 2, Padding::Valid),
];

/// Copies the fixture's `w` and `b` into the module's variables.
fn load(fx: &Fixture, prefix: &str, w: &Tensor, b: Option<&Tensor>) {
    let (mut w, mut b) = (w.shallow_clone(), b.expect("module has a bias").shallow_clone());
    tch::no_grad(|| {
        w.copy_(&fx.get(&format!("{prefix}/w")));
        b.copy_(&fx.get(&format!("{prefix}/b")));
    });
}

#[test]
fn conv1d_matches_pytorch_in_both_layouts() {
    let fx = load_fixture("conv");
    let x = fx.get("conv1d/x");
    for (case, stride, rate, padding) in CASES {
        let prefix = format!("conv1d/{case}");
        let expected = fx.get(&format!("{prefix}/y"));
        for format in [DataFormat1d::Nwc, DataFormat1d::Ncw] {
            let store = Store::cpu();
            let config = Conv1dConfig::new(2, 4)
                .with_stride(stride)
                .with_rate(rate)
                .with_padding(padding)
                .with_data_format(format)
                .with_input_channels(3);
            let conv = Conv1d::new(&store.root(), config).unwrap();
            load(&fx, &prefix, conv.w().unwrap(), conv.b().unwrap());
            let y = match format {
                DataFormat1d::Nwc => conv.forward(&x).unwrap(),
                DataFormat1d::Ncw => conv.forward(&x.permute([0, 2, 1])).unwrap().permute([0, 2, 1]),
            };
            println!("conv1d {case} {format:?}");
            assert_close(&y, &expected, TOL);
        }
    }
}

#[test]
fn conv2d_matches_pytorch_in_both_layouts() {
    let fx = load_fixture("conv");
    let x = fx.get("conv2d/x");
    for (case, stride, rate, padding) in CASES {
        let prefix = format!("conv2d/{case}");
        let expected = fx.get(&format!("{prefix}/y"));
        for format in [DataFormat2d::Nhwc, DataFormat2d::Nchw] {
            let store = Store::cpu();
            let config = Conv2dConfig::new(2, [4, 3])
                .with_stride(stride)
                .with_rate(rate)
                .with_padding(padding)
                .with_data_format(format)
                .with_input_channels(3);
            let conv = Conv2d::new(&store.root(), config).unwrap();
            load(&fx, &prefix, conv.w().unwrap(), conv.b().unwrap());
            let y = match format {
                DataFormat2d::Nhwc => conv.forward(&x).unwrap(),
                DataFormat2d::Nchw => conv.forward(&x.permute([0, 3, 1, 2])).unwrap().permute([0, 2, 3, 1]),
            };
            println!("conv2d {case} {format:?}");
            assert_close(&y, &expected, TOL);
        }
    }
}

#[test]
fn conv2d_transpose_matches_the_gradient_of_the_forward_convolution() {
    let fx = load_fixture("conv");
    let x = fx.get("conv2d_transpose/x");
    // (case, padding, output_shape; None = the default size)
    let cases = [
        ("same", Padding::Same, None),
        ("valid", Padding::Valid, None),
        ("same_out5", Padding::Same, Some([5, 5])),
        ("valid_out_max", Padding::Valid, Some([8, 9])),
    ];
    for (case, padding, output_shape) in cases {
        let prefix = format!("conv2d_transpose/{case}");
        let expected = fx.get(&format!("{prefix}/y"));
        for format in [DataFormat2d::Nhwc, DataFormat2d::Nchw] {
            let store = Store::cpu();
            let mut config = Conv2dTransposeConfig::new(2, [3, 4])
                .with_stride(2)
                .with_padding(padding)
                .with_data_format(format)
                .with_input_channels(3);
            config.output_shape = output_shape;
            let conv = Conv2dTranspose::new(&store.root(), config).unwrap();
            load(&fx, &prefix, conv.w().unwrap(), conv.b().unwrap());
            let y = match format {
                DataFormat2d::Nhwc => conv.forward(&x).unwrap(),
                DataFormat2d::Nchw => conv.forward(&x.permute([0, 3, 1, 2])).unwrap().permute([0, 2, 3, 1]),
            };
            println!("conv2d_transpose {case} {format:?}");
            assert_close(&y, &expected, TOL);
        }
    }
}

#[test]
fn fixture_has_every_case() {
    let keys = load_fixture("conv").keys();
    // 3 inputs + 3 tensors for each of 6 + 6 + 4 cases.
    assert_eq!(keys.len(), 3 + 3 * 16, "{keys:?}");
}
