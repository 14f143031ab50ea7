//! `GroupNorm`: normalisation over groups of channels of each example (Wu & He 2018;
//! Sonnet v2's `snt.GroupNorm`, PyTorch's `nn.GroupNorm`).

use crate::batch_norm::DataFormat;
use crate::error::{Error, Result, TorchContext};
use crate::init::Initializer;
use crate::module::{Forward, Mode, Module};
use crate::regularizer::Regularizer;
use crate::store::Scope;
use crate::util::{build_once, check_defined, check_keys};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::OnceLock;
use tch::Tensor;

/// Configuration of a [`GroupNorm`] module.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupNormConfig {
    /// Number of channel groups `G` (> 0); the channel count must be a multiple of it.
    /// Default 1 (one group: layer normalisation over channels and positions).
    pub groups: i64,
    /// Number of channels `C`. `Some(C)` creates the variables at construction; `None`
    /// (default) takes `C` from the first input.
    pub num_channels: Option<i64>,
    /// Where the channels are. Default [`DataFormat::ChannelsLast`] (`[B, .., C]`, Sonnet's
    /// default; PyTorch's `nn.GroupNorm` is channels first).
    pub data_format: DataFormat,
    /// Whether to multiply by the learned per-channel `scale` (γ). Default `true`.
    pub create_scale: bool,
    /// Whether to add the learned per-channel `offset` (β). Default `true`.
    pub create_offset: bool,
    /// Added to the variance before the square root (finite, >= 0). Default `1e-5`
    /// (Sonnet v2 and PyTorch).
    pub eps: f64,
    /// Initializers by variable name (`"scale"`, `"offset"`). Defaults: ones, zeros.
    pub initializers: BTreeMap<String, Initializer>,
    /// Regularizers by variable name (`"scale"`, `"offset"`). Default none.
    pub regularizers: BTreeMap<String, Regularizer>,
}

impl Default for GroupNormConfig {
    fn default() -> Self {
        GroupNormConfig {
            groups: 1,
            num_channels: None,
            data_format: DataFormat::ChannelsLast,
            create_scale: true,
            create_offset: true,
            eps: 1e-5,
            initializers: BTreeMap::new(),
            regularizers: BTreeMap::new(),
        }
    }
}

impl GroupNormConfig {
    /// A config with `groups` groups and every other field at its default.
    pub fn new(groups: i64) -> Self {
        GroupNormConfig { groups, ..Default::default() }
    }
    /// Sets the channel count, so the variables are created at construction.
    pub fn with_num_channels(mut self, num_channels: i64) -> Self {
        self.num_channels = Some(num_channels);
        self
    }
    /// Sets where the channels are.
    pub fn with_data_format(mut self, data_format: DataFormat) -> Self {
        self.data_format = data_format;
        self
    }
    /// Sets whether the learned `scale` is used.
    pub fn with_create_scale(mut self, create_scale: bool) -> Self {
        self.create_scale = create_scale;
        self
    }
    /// Sets whether the learned `offset` is used.
    pub fn with_create_offset(mut self, create_offset: bool) -> Self {
        self.create_offset = create_offset;
        self
    }
    /// Sets `eps`.
    pub fn with_eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }
    /// Overrides the initializer of variable `name` (`"scale"` or `"offset"`).
    pub fn with_initializer(mut self, name: &str, init: Initializer) -> Self {
        self.initializers.insert(name.to_string(), init);
        self
    }
    /// Attaches a regularizer to variable `name` (`"scale"` or `"offset"`).
    pub fn with_regularizer(mut self, name: &str, regularizer: Regularizer) -> Self {
        self.regularizers.insert(name.to_string(), regularizer);
        self
    }
}

struct GroupNormVars {
    channels: i64,
    scale: Option<Tensor>,
    offset: Option<Tensor>,
}

/// Group normalisation: the `C` channels of `x [B, .., C]` (or `[B, C, ..]` channels first)
/// are split into `G` groups of `C / G` consecutive channels; each example's group (its
/// channels at every position) is normalised to zero mean and unit biased variance, then each
/// channel is scaled and shifted: `y = (x - mean) / sqrt(var + eps) · scale[c] + offset[c]`.
/// `scale` and `offset` are `[C]`. `y` has `x`'s shape. The same in training and evaluation
/// (no moving statistics). Runs libtorch's fused `group_norm`.
pub struct GroupNorm {
    scope: Scope,
    config: GroupNormConfig,
    /// `None`: one group per channel (instance normalisation).
    groups: Option<i64>,
    vars: OnceLock<GroupNormVars>,
}

impl std::fmt::Debug for GroupNorm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupNorm").field("scope", &self.scope.path()).field("config", &self.config).finish()
    }
}

impl GroupNorm {
    /// Builds a `GroupNorm` in a new child scope `group_norm` (or `group_norm_1`, …) of
    /// `parent`.
    ///
    /// # Errors
    /// [`Error::Config`] if `groups` or `num_channels` is not positive, `num_channels` is not
    /// a multiple of `groups`, `eps` is negative or not finite, or an initializer/regularizer
    /// key names no variable of the module.
    pub fn new(parent: &Scope, config: GroupNormConfig) -> Result<Self> {
        Self::named(parent, "group_norm", config)
    }

    /// Like [`GroupNorm::new`] with the child scope named `name`.
    pub fn named(parent: &Scope, name: &str, config: GroupNormConfig) -> Result<Self> {
        if config.groups <= 0 {
            let scope = parent.child(name)?;
            return Err(Error::config(scope.path(), format!("groups must be > 0, got {}", config.groups)));
        }
        let groups = Some(config.groups);
        Self::with_groups(parent, name, config, groups)
    }

    /// A `GroupNorm` with `groups` groups, or one per channel for `None` (`config.groups`
    /// unused then).
    pub(crate) fn with_groups(
        parent: &Scope,
        name: &str,
        config: GroupNormConfig,
        groups: Option<i64>,
    ) -> Result<Self> {
        let scope = parent.child(name)?;
        let module = scope.path();
        if let Some(c) = config.num_channels {
            if c <= 0 || groups.is_some_and(|g| c % g != 0) {
                return Err(Error::config(
                    module,
                    format!("num_channels must be > 0 and a multiple of groups {groups:?}, got {c}"),
                ));
            }
        }
        if !(config.eps.is_finite() && config.eps >= 0.0) {
            return Err(Error::config(module, format!("eps must be finite and >= 0, got {}", config.eps)));
        }
        let mut valid = Vec::new();
        if config.create_scale {
            valid.push("scale");
        }
        if config.create_offset {
            valid.push("offset");
        }
        check_keys(module, "initializers", config.initializers.keys(), &valid)?;
        check_keys(module, "regularizers", config.regularizers.keys(), &valid)?;
        let norm = GroupNorm { scope, config, groups, vars: OnceLock::new() };
        if let Some(c) = norm.config.num_channels {
            norm.build(c)?;
        }
        Ok(norm)
    }

    fn build(&self, channels: i64) -> Result<&GroupNormVars> {
        build_once(&self.vars, || {
            let c = &self.config;
            let var = |name: &str, default: Initializer| {
                self.scope
                    .var(name, &[channels])
                    .init(c.initializers.get(name).cloned().unwrap_or(default))
                    .regularizer(c.regularizers.get(name).cloned())
                    .create()
            };
            let scale = if c.create_scale { Some(var("scale", Initializer::Ones)?) } else { None };
            let offset = if c.create_offset { Some(var("offset", Initializer::Zeros)?) } else { None };
            Ok(GroupNormVars { channels, scale, offset })
        })
    }

    fn built(&self) -> Result<&GroupNormVars> {
        self.vars.get().ok_or_else(|| Error::NotBuilt { module: self.scope.path().to_string() })
    }

    /// The configuration.
    pub fn config(&self) -> &GroupNormConfig {
        &self.config
    }

    /// The channel count `C`, once known.
    pub fn num_channels(&self) -> Option<i64> {
        self.vars.get().map(|v| v.channels)
    }

    /// The scale `γ [C]` (`None` without `create_scale`).
    ///
    /// # Errors
    /// [`Error::NotBuilt`] before the first call of a lazy module.
    pub fn scale(&self) -> Result<Option<&Tensor>> {
        self.built().map(|v| v.scale.as_ref())
    }

    /// The offset `β [C]` (`None` without `create_offset`).
    ///
    /// # Errors
    /// [`Error::NotBuilt`] before the first call of a lazy module.
    pub fn offset(&self) -> Result<Option<&Tensor>> {
        self.built().map(|v| v.offset.as_ref())
    }

    /// Normalises `x [B, .., C]` (rank >= 2; `[B, C, ..]` channels first), giving `x`'s
    /// shape. The first call of a lazy module creates `scale` and `offset` from `C`.
    ///
    /// # Errors
    /// [`Error::Shape`] if `x` has rank < 2, a channel count other than the variables' or not
    /// a multiple of `groups` (or 0), or a kind other than the store's;
    /// [`Error::InvalidArgument`] if `x` is undefined.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let module = self.scope.path();
        check_defined(module, "input", x)?;
        let size = x.size();
        let last = self.config.data_format == DataFormat::ChannelsLast;
        let describe = |c: String| if last { format!("[B, .., {c}]") } else { format!("[B, {c}, ..]") };
        if size.len() < 2 {
            return Err(Error::shape(module, "input", describe("C".into()), size));
        }
        let c = if last { size[size.len() - 1] } else { size[1] };
        let groups = self.groups.unwrap_or(c);
        match self.num_channels() {
            Some(known) if known != c => {
                return Err(Error::shape(module, "input", describe(known.to_string()), size))
            }
            _ if c <= 0 || c % groups != 0 => {
                return Err(Error::shape(
                    module,
                    "input",
                    describe(format!("C (a positive multiple of {groups})")),
                    size,
                ))
            }
            _ => {}
        }
        self.scope.check_kind("input", x)?;
        let vars = self.build(c)?;
        let r = size.len() as i64;
        let first = if last { x.f_movedim([r - 1], [1]).ctx(module)? } else { x.shallow_clone() };
        let y = first
            .f_group_norm(groups, vars.scale.as_ref(), vars.offset.as_ref(), self.config.eps, true)
            .ctx(module)?;
        if last {
            y.f_movedim([1], [r - 1]).ctx(module)
        } else {
            Ok(y)
        }
    }
}

impl Module for GroupNorm {
    fn scope(&self) -> &Scope {
        &self.scope
    }
    fn is_built(&self) -> bool {
        self.vars.get().is_some()
    }
}

impl Forward for GroupNorm {
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
    fn two_groups_by_hand() {
        // x [1, 1, 4] channels last, groups of channels {0, 1} and {2, 3}: each group is
        // (a, b) with mean (a + b) / 2, so the outputs are ±(b - a) / 2 / sqrt(((b - a) / 2)² + eps).
        let store = Store::with_kind(Device::Cpu, Kind::Double).unwrap();
        let gn = GroupNorm::new(&store.root(), GroupNormConfig::new(2).with_eps(0.0)).unwrap();
        let x = Tensor::from_slice(&[1.0f64, 3.0, 10.0, 10.5]).view([1, 1, 4]);
        let y = Vec::<f64>::try_from(gn.forward(&x).unwrap().flatten(0, -1)).unwrap();
        for (got, want) in y.iter().zip([-1.0, 1.0, -1.0, 1.0]) {
            assert!((got - want).abs() < 1e-12, "{y:?}");
        }
        assert_eq!(gn.scale().unwrap().unwrap().size(), [4]);
    }

    #[test]
    fn errors_name_the_module() {
        let store = Store::cpu();
        let e = GroupNorm::new(&store.root(), GroupNormConfig::new(0)).unwrap_err();
        assert_eq!(e.to_string(), "group_norm: bad configuration: groups must be > 0, got 0");
        let e = GroupNorm::new(&store.root(), GroupNormConfig::new(2).with_num_channels(3)).unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{e}");
        let gn = GroupNorm::new(&store.root(), GroupNormConfig::new(2)).unwrap();
        let e = gn.forward(&Tensor::zeros([2, 3], (Kind::Float, Device::Cpu))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "group_norm_2: input must be [B, .., C (a positive multiple of 2)], got [2, 3]"
        );
        assert!(matches!(
            gn.forward(&Tensor::zeros([2], (Kind::Float, Device::Cpu))).unwrap_err(),
            Error::Shape { .. }
        ));
        let _ = gn.forward(&Tensor::zeros([2, 4], (Kind::Float, Device::Cpu))).unwrap();
        let e = gn.forward(&Tensor::zeros([2, 6], (Kind::Float, Device::Cpu))).unwrap_err();
        assert_eq!(e.to_string(), "group_norm_2: input must be [B, .., 4], got [2, 6]");
        let e = gn.forward(&Tensor::zeros([2, 4], (Kind::Double, Device::Cpu))).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }), "{e}");
        assert!(matches!(gn.forward(&Tensor::new()).unwrap_err(), Error::InvalidArgument { .. }));
    }
}
