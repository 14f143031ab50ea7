//! # couplet-modules
//!
//! The module core of couplet, in the manner of DeepMind's Sonnet: a [`Store`] of variables
//! with hierarchical, unique [`Scope`] names; modules that create their variables once
//! (eagerly, or lazily from their first input) and list them per module; initializers,
//! regularizers, optimizers over explicit variable lists, and checkpoints.
//!
//! ```
//! use couplet_modules::{Linear, LinearConfig, Module, Store};
//! use tch::{Device, Kind, Tensor};
//! # fn main() -> couplet_modules::Result<()> {
//! let store = Store::new(Device::Cpu);
//! let lin = Linear::new(&store.root(), LinearConfig::new(3))?; // input size from first call
//! let y = lin.forward(&Tensor::zeros([8, 4], (Kind::Float, Device::Cpu)))?;
//! assert_eq!(y.size(), [8, 3]);
//! let names: Vec<_> = lin.variables()?.iter().map(|v| v.name().to_string()).collect();
//! assert_eq!(names, ["linear/w", "linear/b"]);
//! # Ok(())
//! # }
//! ```

pub mod activation;
pub mod add_bias;
pub mod batch_apply;
pub mod batch_norm;
pub mod checkpoint;
pub mod concat_linear;
pub mod conv;
pub mod dropout;
pub mod embed;
pub mod error;
pub mod export;
pub mod flatten_trailing_dimensions;
pub mod format_variables;
pub mod group_norm;
pub mod init;
pub mod instance_norm;
pub mod jacobian;
pub mod layer_norm;
pub mod linear;
pub mod merge_dims;
pub mod mlp;
pub mod module;
pub mod optim;
pub mod regularizer;
pub mod reshape;
pub mod scale_gradient;
pub mod select_input;
pub mod sequential;
pub mod slice_by_dim;
pub mod store;
pub mod straight_through;
pub mod tile_by_dim;
pub mod trainable_variable;
pub mod util;

pub use activation::Activation;
pub use add_bias::{AddBias, AddBiasConfig};
pub use batch_apply::BatchApply;
pub use batch_norm::{BatchNorm, BatchNormConfig, DataFormat};
pub use checkpoint::{
    save_tensors, CheckpointManager, CheckpointManagerConfig, Checkpointable, RestoreOptions, RestoreReport,
};
pub use concat_linear::ConcatLinear;
pub use conv::{
    CausalConv1d, CausalConv1dConfig, Conv1d, Conv1dConfig, Conv1dTranspose, Conv1dTransposeConfig, Conv2d,
    Conv2dConfig, Conv2dTranspose, Conv2dTransposeConfig, Conv3d, Conv3dConfig, DataFormat1d, DataFormat2d,
    DataFormat3d, DepthwiseConv2d, DepthwiseConv2dConfig, IntoDims2, IntoDims3, Padding, SeparableConv2d,
    SeparableConv2dConfig,
};
pub use dropout::{Dropout, DropoutConfig};
pub use embed::{Embed, EmbedConfig};
pub use error::{Error, Result, TorchContext};
pub use flatten_trailing_dimensions::{FlattenTrailingDimensions, FlattenTrailingDimensionsConfig};
pub use format_variables::{format_variables, log_variables};
pub use group_norm::{GroupNorm, GroupNormConfig};
pub use init::{Distribution, FanMode, Fans, Initializer};
pub use instance_norm::InstanceNorm;
pub use jacobian::{batch_jacobian, jacobian};
pub use layer_norm::{LayerNorm, LayerNormConfig};
pub use linear::{Linear, LinearConfig};
pub use merge_dims::{MergeDims, MergeDimsConfig};
pub use mlp::{Mlp, MlpConfig};
pub use module::{Forward, Mode, Module};
pub use optim::{
    clip_grad_norm, clip_grad_value, Adam, AdamConfig, AdamW, AdamWConfig, Optimizer, RmsProp, RmsPropConfig,
    Sgd, SgdConfig,
};
pub use regularizer::Regularizer;
pub use reshape::{BatchFlatten, BatchFlattenConfig, BatchReshape, BatchReshapeConfig};
pub use scale_gradient::scale_gradient;
pub use select_input::{SelectInput, SelectInputConfig, Selection};
pub use sequential::Sequential;
pub use slice_by_dim::{SliceByDim, SliceByDimConfig};
pub use store::{Scope, Store, VarBuilder, Variable};
pub use straight_through::straight_through;
pub use tile_by_dim::{TileByDim, TileByDimConfig};
pub use trainable_variable::{TrainableVariable, TrainableVariableConfig};
