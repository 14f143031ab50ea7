//! `RelationalMemory`: Sonnet's relational memory core (Santoro et al. 2018), memory slots
//! that attend over themselves and the input with multi-head attention, an MLP, and LSTM-like
//! gates.

use crate::cell::check_step_input;
use crate::core::RnnCore;
use crate::state::{State, StateSize};
use couplet_modules::{
    Error, LayerNorm, LayerNormConfig, Linear, LinearConfig, Mlp, MlpConfig, Mode, Module, Result, Scope,
    TorchContext,
};
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// The gating of a [`RelationalMemory`] (Sonnet's `gate_style`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateStyle {
    /// One input and one forget gate per memory unit (`'unit'`, the default).
    #[default]
    Unit,
    /// One input and one forget gate per memory slot (`'memory'`).
    Memory,
    /// No gates: the attended memory is the next memory (`None`).
    Ungated,
}

/// Configuration of a [`RelationalMemory`]. Defaults are Sonnet's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RelationalMemoryConfig {
    /// Number of memory slots `N` (> 0). Default 1.
    pub mem_slots: i64,
    /// Size of each attention head's values `V` (> 0); the memory size is
    /// `M = head_size · num_heads`. Default 1.
    pub head_size: i64,
    /// Number of attention heads `H` (> 0). Default 1.
    pub num_heads: i64,
    /// Attention-and-MLP blocks per step (> 0). Default 1.
    pub num_blocks: i64,
    /// Added to the forget gate's pre-activation. Default 1.
    pub forget_bias: f64,
    /// Added to the input gate's pre-activation. Default 0.
    pub input_bias: f64,
    /// The gating. Default [`GateStyle::Unit`].
    pub gate_style: GateStyle,
    /// Layers of the attention MLP, each of size `M` (> 0). Default 2.
    pub attention_mlp_layers: i64,
    /// Size of queries and keys per head (> 0). Default `None`: `head_size`.
    pub key_size: Option<i64>,
}

impl Default for RelationalMemoryConfig {
    fn default() -> Self {
        RelationalMemoryConfig {
            mem_slots: 1,
            head_size: 1,
            num_heads: 1,
            num_blocks: 1,
            forget_bias: 1.0,
            input_bias: 0.0,
            gate_style: GateStyle::Unit,
            attention_mlp_layers: 2,
            key_size: None,
        }
    }
}

impl RelationalMemoryConfig {
    /// `mem_slots` slots of `num_heads` heads of size `head_size`, every other field at its
    /// default.
    pub fn new(mem_slots: i64, head_size: i64, num_heads: i64) -> Self {
        RelationalMemoryConfig { mem_slots, head_size, num_heads, ..Default::default() }
    }
    /// Sets the number of blocks.
    pub fn with_num_blocks(mut self, num_blocks: i64) -> Self {
        self.num_blocks = num_blocks;
        self
    }
    /// Sets the gating.
    pub fn with_gate_style(mut self, gate_style: GateStyle) -> Self {
        self.gate_style = gate_style;
        self
    }
    /// Sets the key size.
    pub fn with_key_size(mut self, key_size: i64) -> Self {
        self.key_size = Some(key_size);
        self
    }
    /// Sets the forget and input gate biases.
    pub fn with_gate_biases(mut self, forget_bias: f64, input_bias: f64) -> Self {
        self.forget_bias = forget_bias;
        self.input_bias = input_bias;
        self
    }
    /// Sets the number of attention MLP layers.
    pub fn with_attention_mlp_layers(mut self, layers: i64) -> Self {
        self.attention_mlp_layers = layers;
        self
    }
}

/// One attention block: the `[M, H·(2k + V)]` query-key-value projection and its layer norm,
/// and the layer norms after the attention and after the MLP.
struct Block {
    qkv: Linear,
    qkv_norm: LayerNorm,
    attention_norm: LayerNorm,
    mlp_norm: LayerNorm,
}

/// Sonnet's `RelationalMemory` core. State `State::Tensor(memory [B, N, M])`, input
/// `x [B, I]`, output the next memory flattened, `[B, N·M]`. One step:
/// 1. `x' = input_linear(x)` `[B, 1, M]` is appended to the memory as one more slot;
/// 2. each of `num_blocks` blocks: multi-head self-attention over the `N + 1` slots (queries,
///    keys and values from one linear layer then a layer norm, queries scaled by `k^-1/2`),
///    `m = norm(m + attention(m))`, `m = norm(mlp(m) + m)` (the MLP, `attention_mlp_layers`
///    layers of size `M` with ReLU between them, is shared by the blocks);
/// 3. the input slot is dropped; with gates, `i, f = σ(Wᵢ x' + Wₘ tanh(memory) + biases)` and
///    `next = i ⊙ tanh(attended) + f ⊙ memory`.
///
/// The initial state is Sonnet's: each row the identity `[N, N]`, zero-padded or truncated to
/// `[N, M]`. Variables (scope `relational_memory`): `input_linear/{w,b}`, per block
/// `block{,_1,..}/{qkv/{w,b}, qkv_norm/.., attention_norm/.., mlp_norm/..}`,
/// `attention_mlp/linear_{0,1,..}/{w,b}`, and with gates `input_gate_linear/{w,b}` and
/// `memory_gate_linear/{w,b}` (`[M, 2g]`, `g = M` or 1). The same in training and evaluation.
pub struct RelationalMemory {
    scope: Scope,
    config: RelationalMemoryConfig,
    input_linear: Linear,
    blocks: Vec<Block>,
    mlp: Mlp,
    gates: Option<(Linear, Linear)>,
}

impl std::fmt::Debug for RelationalMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelationalMemory")
            .field("scope", &self.scope.path())
            .field("config", &self.config)
            .finish()
    }
}

impl RelationalMemory {
    /// Builds the core in a new child scope `relational_memory` (or `.._1`, …) of `parent`;
    /// the input size comes from the first input.
    ///
    /// # Errors
    /// [`Error::Config`] if a size, the block count or the MLP layer count is not positive,
    /// or a gate bias is not finite.
    pub fn new(parent: &Scope, config: RelationalMemoryConfig) -> Result<Self> {
        let scope = parent.child("relational_memory")?;
        let module = scope.path();
        let c = &config;
        let key = c.key_size.unwrap_or(c.head_size);
        if [c.mem_slots, c.head_size, c.num_heads, c.num_blocks, c.attention_mlp_layers, key]
            .iter()
            .any(|&v| v <= 0)
        {
            return Err(Error::config(
                module,
                format!(
                    "mem_slots, head_size, num_heads, num_blocks, attention_mlp_layers and key_size must be > 0, got {}, {}, {}, {}, {}, {key}",
                    c.mem_slots, c.head_size, c.num_heads, c.num_blocks, c.attention_mlp_layers
                ),
            ));
        }
        if !(c.forget_bias.is_finite() && c.input_bias.is_finite()) {
            return Err(Error::config(module, "forget_bias and input_bias must be finite"));
        }
        let m = c
            .head_size
            .checked_mul(c.num_heads)
            .ok_or_else(|| Error::config(module, "head_size · num_heads overflows i64"))?;
        let qkv_size = (2 * key + c.head_size)
            .checked_mul(c.num_heads)
            .ok_or_else(|| Error::config(module, "the query-key-value size overflows i64"))?;
        let input_linear = Linear::named(&scope, "input_linear", LinearConfig::new(m))?;
        let norm = |s: &Scope, name: &str, n: i64| {
            LayerNorm::named(s, name, LayerNormConfig::new().with_normalized_shape(&[n]))
        };
        let blocks = (0..c.num_blocks)
            .map(|_| {
                let s = scope.child("block")?;
                Ok(Block {
                    qkv: Linear::named(&s, "qkv", LinearConfig::new(qkv_size).with_input_size(m))?,
                    qkv_norm: norm(&s, "qkv_norm", qkv_size)?,
                    attention_norm: norm(&s, "attention_norm", m)?,
                    mlp_norm: norm(&s, "mlp_norm", m)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let sizes = vec![m; c.attention_mlp_layers as usize];
        let mlp = Mlp::named(&scope, "attention_mlp", MlpConfig::new(&sizes).with_input_size(m))?;
        let g = match c.gate_style {
            GateStyle::Unit => Some(m),
            GateStyle::Memory => Some(1),
            GateStyle::Ungated => None,
        };
        let gates = match g {
            Some(g) => {
                let lin =
                    |name: &str| Linear::named(&scope, name, LinearConfig::new(2 * g).with_input_size(m));
                Some((lin("input_gate_linear")?, lin("memory_gate_linear")?))
            }
            None => None,
        };
        Ok(RelationalMemory { scope, config, input_linear, blocks, mlp, gates })
    }

    /// The memory size `M = head_size · num_heads`.
    pub fn mem_size(&self) -> i64 {
        self.config.head_size * self.config.num_heads
    }

    /// The configuration.
    pub fn config(&self) -> &RelationalMemoryConfig {
        &self.config
    }

    /// Multi-head self-attention over `memory [B, S, M]`.
    fn attention(&self, block: &Block, memory: &Tensor) -> Result<Tensor> {
        let module = self.scope.path();
        let c = &self.config;
        let (key, value, heads) = (c.key_size.unwrap_or(c.head_size), c.head_size, c.num_heads);
        let size = memory.size();
        let (b, s) = (size[0], size[1]);
        let qkv = block.qkv_norm.forward(&block.qkv.forward(memory)?)?;
        let qkv = qkv.f_view([b, s, heads, 2 * key + value]).and_then(|t| t.f_transpose(1, 2)).ctx(module)?;
        let parts = qkv.f_split_with_sizes([key, key, value], -1).ctx(module)?;
        let q = parts[0].f_mul_scalar((key as f64).powf(-0.5)).ctx(module)?;
        let weights = q
            .f_matmul(&parts[1].f_transpose(-2, -1).ctx(module)?)
            .and_then(|d| d.f_softmax(-1, d.kind()))
            .ctx(module)?;
        weights
            .f_matmul(&parts[2])
            .and_then(|o| o.f_transpose(1, 2))
            .and_then(|o| o.f_reshape([b, s, heads * value]))
            .ctx(module)
    }
}

impl Module for RelationalMemory {
    fn scope(&self) -> &Scope {
        &self.scope
    }
    /// The input linear, each block's layers, the MLP, then the gate linears.
    fn children(&self) -> Vec<&dyn Module> {
        let mut out: Vec<&dyn Module> = vec![&self.input_linear];
        for b in &self.blocks {
            out.extend([&b.qkv as &dyn Module, &b.qkv_norm, &b.attention_norm, &b.mlp_norm]);
        }
        out.push(&self.mlp);
        if let Some((i, m)) = &self.gates {
            out.extend([i as &dyn Module, m]);
        }
        out
    }
}

impl RnnCore for RelationalMemory {
    /// One step: `input [B, I]`, `State::Tensor(memory [B, N, M])` → `(next memory flattened
    /// [B, N·M], State::Tensor(next memory))`.
    ///
    /// # Errors
    /// [`Error::Shape`] naming the core if the input is not `[B, I]` (`I` fixed by the first
    /// call) of the store's kind, or the state is not `State::Tensor([B, N, M])`.
    fn step(&self, input: &Tensor, state: &State, mode: Mode) -> Result<(Tensor, State)> {
        let module = self.scope.path();
        check_step_input(&self.scope, input, self.input_linear.input_size())?;
        let b = input.size()[0];
        let (n, m) = (self.config.mem_slots, self.mem_size());
        let memory = match state {
            State::Tensor(t) if t.size() == [b, n, m] => t,
            other => {
                let actual: Vec<Vec<i64>> = other.leaves().iter().map(|t| t.size()).collect();
                return Err(Error::shape(module, "state", format!("State::Tensor([{b}, {n}, {m}])"), actual));
            }
        };
        self.scope.check_kind("state", memory)?;
        let x = self.input_linear.forward(input)?.f_unsqueeze(1).ctx(module)?;
        let mut mem = Tensor::f_cat(&[memory, &x], 1).ctx(module)?;
        for block in &self.blocks {
            let attended = self.attention(block, &mem)?;
            mem = block.attention_norm.forward(&mem.f_add(&attended).ctx(module)?)?;
            let mlp = couplet_modules::Forward::forward_t(&self.mlp, &mem, mode)?;
            mem = block.mlp_norm.forward(&mlp.f_add(&mem).ctx(module)?)?;
        }
        let mut next = mem.f_narrow(1, 0, n).ctx(module)?;
        if let Some((input_gate, memory_gate)) = &self.gates {
            let from_input = input_gate.forward(&x)?;
            let from_memory = memory_gate.forward(&memory.f_tanh().ctx(module)?)?;
            let gates = from_memory.f_add(&from_input).ctx(module)?;
            let g = gates.size()[2] / 2;
            let i = gates
                .f_narrow(2, 0, g)
                .and_then(|t| t.f_add_scalar(self.config.input_bias))
                .and_then(|t| t.f_sigmoid())
                .ctx(module)?;
            let f = gates
                .f_narrow(2, g, g)
                .and_then(|t| t.f_add_scalar(self.config.forget_bias))
                .and_then(|t| t.f_sigmoid())
                .ctx(module)?;
            next = i
                .f_mul(&next.f_tanh().ctx(module)?)
                .and_then(|a| f.f_mul(memory).and_then(|bm| a.f_add(&bm)))
                .ctx(module)?;
        }
        let output = next.f_reshape([b, n * m]).ctx(module)?;
        Ok((output, State::Tensor(next)))
    }

    /// `[N·M]`.
    fn output_shape(&self) -> Vec<i64> {
        vec![self.config.mem_slots * self.mem_size()]
    }

    fn state_size(&self) -> StateSize {
        StateSize::Tensor(vec![self.config.mem_slots, self.mem_size()])
    }

    /// Sonnet's initial memory: the identity `[N, N]` per row, zero-padded or truncated to
    /// `[N, M]`.
    fn initial_state(&self, batch_size: i64) -> Result<State> {
        let module = self.scope.path();
        let (n, m) = (self.config.mem_slots, self.mem_size());
        let eye = Tensor::f_eye_m(n, m, (self.scope.kind(), self.scope.device())).ctx(module)?;
        eye.f_unsqueeze(0).and_then(|e| e.f_repeat([batch_size, 1, 1])).map(State::Tensor).ctx(module)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use couplet_modules::Store;
    use tch::{Device, Kind};

    #[test]
    fn initial_state_is_a_padded_or_truncated_identity() {
        let store = Store::cpu();
        let rm = RelationalMemory::new(&store.root(), RelationalMemoryConfig::new(2, 2, 2)).unwrap();
        let s = rm.initial_state(3).unwrap();
        let h = s.h().unwrap();
        assert_eq!(h.size(), [3, 2, 4]);
        assert_eq!(
            Vec::<f32>::try_from(h.get(2).flatten(0, -1)).unwrap(),
            [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]
        );
        let rm = RelationalMemory::new(&store.root(), RelationalMemoryConfig::new(3, 1, 2)).unwrap();
        let h = rm.initial_state(1).unwrap().h().unwrap().shallow_clone();
        assert_eq!(Vec::<f32>::try_from(h.flatten(0, -1)).unwrap(), [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn shapes_and_errors() {
        let store = Store::cpu();
        let rm =
            RelationalMemory::new(&store.root(), RelationalMemoryConfig::new(3, 4, 2).with_num_blocks(2))
                .unwrap();
        let s = rm.initial_state(2).unwrap();
        let (y, next) = rm.step(&Tensor::randn([2, 5], (Kind::Float, Device::Cpu)), &s, Mode::Eval).unwrap();
        assert_eq!((y.size(), next.h().unwrap().size()), (vec![2, 24], vec![2, 3, 8]));
        let e = rm.step(&Tensor::randn([2, 6], (Kind::Float, Device::Cpu)), &s, Mode::Eval).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }), "{e}");
        let e = rm
            .step(&Tensor::randn([2, 5], (Kind::Float, Device::Cpu)), &State::Empty, Mode::Eval)
            .unwrap_err();
        assert!(e.to_string().contains("State::Tensor([2, 3, 8])"), "{e}");
        let e = RelationalMemory::new(&store.root(), RelationalMemoryConfig::new(0, 4, 2)).unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{e}");
    }
}
