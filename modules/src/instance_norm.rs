//! `InstanceNorm`: normalisation over each channel of each example (Ulyanov et al. 2016;
//! Sonnet v2's `snt.InstanceNorm`, PyTorch's `nn.InstanceNorm*d` with `affine=True`).

use crate::error::Result;
use crate::group_norm::{GroupNorm, GroupNormConfig};
use crate::module::{Forward, Mode, Module};
use crate::store::Scope;
use tch::Tensor;

/// Instance normalisation: a [`GroupNorm`] with one group per channel, so each example's
/// channel is normalised over its positions: `x [B, .., C]` (or `[B, C, ..]` channels first)
/// to `x`'s shape, `y = (x - mean) / sqrt(var + eps) · scale[c] + offset[c]`. As Sonnet v2
/// (which derives it from `GroupNorm`), and as PyTorch's `nn.InstanceNorm*d(affine=True,
/// track_running_stats=False)`: there are no moving statistics, so training and evaluation
/// agree. Configured by a [`GroupNormConfig`] whose `groups` is ignored; variables `scale` and
/// `offset` `[C]` in the scope `instance_norm`.
pub struct InstanceNorm {
    norm: GroupNorm,
}

impl std::fmt::Debug for InstanceNorm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceNorm").field("norm", &self.norm).finish()
    }
}

impl InstanceNorm {
    /// Builds an `InstanceNorm` in a new child scope `instance_norm` (or `instance_norm_1`,
    /// …) of `parent`.
    ///
    /// # Errors
    /// The [`GroupNorm::new`] configuration errors (but for `groups`, which is not used).
    pub fn new(parent: &Scope, config: GroupNormConfig) -> Result<Self> {
        Ok(InstanceNorm { norm: GroupNorm::with_groups(parent, "instance_norm", config, None)? })
    }

    /// The underlying group normalisation (scale, offset, channel count).
    pub fn norm(&self) -> &GroupNorm {
        &self.norm
    }

    /// Normalises `x [B, .., C]` (rank >= 2), giving `x`'s shape.
    ///
    /// # Errors
    /// As [`GroupNorm::forward`].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.norm.forward(x)
    }
}

impl Module for InstanceNorm {
    fn scope(&self) -> &Scope {
        self.norm.scope()
    }
    fn is_built(&self) -> bool {
        self.norm.is_built()
    }
}

impl Forward for InstanceNorm {
    fn forward_t(&self, x: &Tensor, _mode: Mode) -> Result<Tensor> {
        self.forward(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use tch::{Device, Kind};

    #[test]
    fn each_channel_of_each_example_is_normalised() {
        let store = Store::with_kind(Device::Cpu, Kind::Double).unwrap();
        let norm = InstanceNorm::new(&store.root(), GroupNormConfig::default().with_eps(0.0)).unwrap();
        assert_eq!(norm.name(), "instance_norm");
        let x = Tensor::randn([2, 5, 3], (Kind::Double, Device::Cpu)) * 4.0 + 1.0;
        let y = norm.forward(&x).unwrap();
        let mean = y.mean_dim([1i64].as_slice(), false, Kind::Double);
        let var = y.var_dim([1i64].as_slice(), false, false);
        assert!(mean.abs().max().double_value(&[]) < 1e-12);
        assert!((var - 1.0).abs().max().double_value(&[]) < 1e-12);
        let names: Vec<String> = norm.variables().unwrap().iter().map(|v| v.name().to_string()).collect();
        assert_eq!(names, ["instance_norm/scale", "instance_norm/offset"]);
    }
}
