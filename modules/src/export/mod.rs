//! TorchScript export: traced couplet code saved as a `.pt` file that `torch.jit.load` opens
//! in Python and `torch::jit::load` (tch's [`tch::CModule::load`]) opens in C++.
//!
//! An [`Exporter`] is one TorchScript module under construction. Its variables are registered
//! first ([`Exporter::add_variables`]): each becomes a parameter (trainable variables) or a
//! buffer (the others) of nested submodules named after its scope, so couplet's
//! `seq2seq/encoder_fw/w_ih` is `seq2seq.encoder_fw.w_ih` in Python's `named_parameters()`.
//! Then any closure over couplet modules is traced into a method ([`Exporter::trace`]; one
//! module may hold several, e.g. `encode` and `decode_step`, sharing the parameters) by
//! running it once on example inputs while libtorch's tracer records every tensor operation.
//!
//! ```
//! use couplet_modules::export::Exporter;
//! use couplet_modules::{Forward, Linear, LinearConfig, Mode, Module, Store};
//! use tch::{Device, Kind, Tensor};
//! # fn main() -> couplet_modules::Result<()> {
//! let store = Store::cpu();
//! let linear = Linear::new(&store.root(), LinearConfig::new(3).with_input_size(4))?;
//! let mut exporter = Exporter::new("linear")?;
//! exporter.add_variables(&linear.variables()?)?;
//! let x = Tensor::randn([2, 4], (Kind::Float, Device::Cpu));
//! exporter.trace("forward", &[x], |inputs| Ok(vec![linear.forward_t(&inputs[0], Mode::Eval)?]))?;
//! assert_eq!(exporter.parameter_names(), ["linear.w", "linear.b"]);
//! let loaded = exporter.to_cmodule()?; // or exporter.save("linear.pt")?
//! let y = loaded.forward_ts(&[Tensor::randn([5, 4], (Kind::Float, Device::Cpu))]).unwrap();
//! assert_eq!(y.size(), [5, 3]); // the batch size was not baked in
//! # Ok(())
//! # }
//! ```
//!
//! # What tracing records, and what it cannot
//!
//! Tracing records the tensor operations of *one* run. Everything decided on the host is
//! fixed at its value during that run:
//!
//! - **Data-dependent control flow** (a Rust `if`/`loop` on a tensor's value, e.g. stopping at
//!   an end token) is baked in as the branch taken. Beam search and greedy decoding therefore
//!   refuse to run while tracing ([`Error::Untraceable`]); export one decoder step instead and
//!   loop in the caller (`couplet_attention::export` does this for attention decoders).
//! - **Per-row lengths** are host slices: the step-loop route of `dynamic_rnn` slices the batch
//!   by them, so it refuses lengths while tracing ([`Error::Untraceable`]). Export the
//!   encoder without lengths (full rows) and mask in the caller.
//! - **Sizes read on the host** (`size()` used in arithmetic) become constants. couplet's
//!   modules keep the batch dimension symbolic where the op allows (`-1` in reshapes), so
//!   [`Linear`](crate::Linear), [`Mlp`](crate::Mlp), embeddings, the fused RNN kernels and
//!   an attention decoder step accept another batch size after export. Initial states
//!   (`RnnCore::initial_state(b)`: zeros or a learned state repeated to a host `b`) keep the
//!   traced one; build them from the inputs instead, with [`repeat_to_batch_of`] (and
//!   `couplet_attention::export::{rebatch, traceable_initial_state}` for whole states), so the
//!   method serves any batch size. libtorch's fused recurrent kernels (`aten::lstm`, `gru`,
//!   `rnn_tanh`, `rnn_relu`) do not check their initial state's batch (given another they
//!   read out of bounds), so every traced method checks it before each such kernel: a call
//!   whose batch the traced state does not have raises an exception naming both batch sizes
//!   (`Err(TchError::Torch)` from [`tch::CModule`], a `RuntimeError` in Python) instead of
//!   corrupting memory. A Rust loop over time steps unrolls into the graph, so the number of
//!   steps of a step-loop RNN is fixed.
//! - **Captured tensors** that are not inputs and not registered variables are baked in as
//!   constants (libtorch refuses ones that require grad: list their variables). Operations
//!   on a registered variable inside the trace (even `detach`) are recorded; a copy of it
//!   made *before* the trace (a cached view or detach) would be frozen, and is refused with
//!   [`Error::Untraceable`] when the trace ends.
//! - **Lazy variables** created during the trace (a module's first call) are recorded as
//!   their initializer, not as parameters: call lazy modules once before registering.
//! - The [`Mode`](crate::Mode) of the traced run is fixed: trace in `Mode::Eval` for inference.

mod ffi;

use crate::error::{Error, Result, TorchContext};
use crate::store::Variable;
use std::path::Path;
use tch::Tensor;

const MODULE: &str = "export";

/// Whether libtorch's tracer is recording on this thread (inside [`Exporter::trace`]).
pub fn is_tracing() -> bool {
    ffi::is_tracing()
}

/// Returns [`Error::Untraceable`] naming `module` while a trace records on this thread, so
/// code whose result depends on host-side decisions (`what`) refuses to be traced instead of
/// baking one run's decisions into the graph; `instead` says what to export.
///
/// # Errors
/// [`Error::Untraceable`] when [`is_tracing`].
pub fn ensure_not_tracing(module: &str, what: &str, instead: &str) -> Result<()> {
    if is_tracing() {
        return Err(Error::Untraceable { module: module.to_string(), message: format!("{what}; {instead}") });
    }
    Ok(())
}

/// `row` (`[1, ..]`) repeated along dimension 0 to `like`'s first dimension (`[B, ..]`, any
/// rank ≥ 1 and kind) by tensor operations that a trace records: `[B, ..]` of `row`'s kind and
/// device, whose `B` a traced method takes from its input at run time, where
/// `row.repeat([b, ..])` with a host `b` would fix the traced batch size. Eagerly it equals
/// `row.repeat([like.size()[0], 1, ..])`.
///
/// # Errors
/// [`Error::Shape`] if `row` is not `[1, ..]` or `like` has rank 0; [`Error::Torch`] for
/// libtorch's errors (e.g. `like` on another device than `row`).
pub fn repeat_to_batch_of(like: &Tensor, row: &Tensor) -> Result<Tensor> {
    const FUNC: &str = "repeat_to_batch_of";
    let shape = row.size();
    if shape.first() != Some(&1) {
        return Err(Error::shape(FUNC, "row", "[1, ..]", shape));
    }
    if like.dim() == 0 {
        return Err(Error::shape(FUNC, "like", "[B, ..]", like.size()));
    }
    // [B, ..] → [B, 0] → sum over the empty dimension: zeros [B, 1], whose B the tracer
    // records as the input's (aten::flatten and aten::narrow keep it symbolic).
    let mut view = vec![-1i64];
    view.extend(std::iter::repeat(1).take(shape.len() - 1));
    let zeros = like
        .f_unsqueeze(-1)
        .and_then(|t| t.f_flatten(1, -1))
        .and_then(|t| t.f_narrow(1, 0, 0))
        .and_then(|t| t.f_sum_dim_intlist(1, true, None::<tch::Kind>))
        .and_then(|t| t.f_to_kind(row.kind()))
        .and_then(|t| t.f_view(view.as_slice()))
        .ctx(FUNC)?;
    row.f_add(&zeros).ctx(FUNC)
}

/// Inside [`Exporter::trace`]: records a check that, when the traced method runs, `x`'s
/// dimension `dim` (negative counts from the end) has the size it has now, raising an
/// exception that names `what` and both sizes otherwise (`Err(TchError::Torch)` from
/// [`tch::CModule`], a `RuntimeError` in Python). Use it where the traced code fixes a size on
/// the host that the graph would not check itself, e.g. a reshape to `[-1, n]` with a host `n`,
/// which another size would silently regroup. Outside a trace it records nothing.
///
/// # Errors
/// [`Error::Shape`] naming `what` if `x` has no dimension `dim`; [`Error::InvalidArgument`] if
/// `what` contains a NUL byte.
pub fn check_traced_size(x: &Tensor, dim: i64, what: &str) -> Result<()> {
    let rank = x.dim() as i64;
    let index = if dim < 0 { dim + rank } else { dim };
    if !(0..rank).contains(&index) {
        return Err(Error::shape(MODULE, what, format!("a tensor with dimension {dim}"), x.size()));
    }
    if !is_tracing() {
        return Ok(());
    }
    ffi::check_size(x, index, what).map_err(|m| Error::invalid(MODULE, m))
}

/// One TorchScript module under construction: registered variables and traced methods.
pub struct Exporter {
    raw: ffi::RawModule,
    name: String,
    parameters: Vec<String>,
    buffers: Vec<String>,
    methods: Vec<String>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("name", &self.name)
            .field("parameters", &self.parameters)
            .field("buffers", &self.buffers)
            .field("methods", &self.methods)
            .finish()
    }
}

/// A TorchScript identifier: ASCII letters, digits and `_`, not starting with a digit.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Exporter {
    /// An empty module of TorchScript class `__torch__.couplet.{name}`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `name` is not an identifier (`[A-Za-z_][A-Za-z0-9_]*`).
    pub fn new(name: &str) -> Result<Exporter> {
        if !is_identifier(name) {
            return Err(Error::invalid(MODULE, format!("module name {name:?} must be an identifier")));
        }
        let raw = ffi::RawModule::new(name).map_err(|m| Error::invalid(MODULE, m))?;
        Ok(Exporter { raw, name: name.to_string(), parameters: vec![], buffers: vec![], methods: vec![] })
    }

    /// Registers `variables` (their tensors are shared, not copied): trainable ones as
    /// parameters, the others as buffers, at their scoped names with `/` read as `.`
    /// (`gan/generator/linear/w` → submodule `gan.generator.linear`, parameter `w`). A
    /// variable registered twice is ignored. Register before tracing the methods that read
    /// them.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if a name part is not an identifier (scopes may contain `-`
    /// or start with a digit; TorchScript attributes may not), or a name is both a variable
    /// and a scope of others.
    pub fn add_variables(&mut self, variables: &[Variable]) -> Result<()> {
        for v in variables {
            let path = v.name().replace('/', ".");
            if let Some(bad) = path.split('.').find(|part| !is_identifier(part)) {
                return Err(Error::invalid(
                    MODULE,
                    format!("variable {:?}: {bad:?} is not a TorchScript identifier", v.name()),
                ));
            }
            if self.parameters.contains(&path) || self.buffers.contains(&path) {
                continue;
            }
            self.raw
                .register(&path, v.tensor(), !v.trainable())
                .map_err(|m| Error::invalid(MODULE, format!("variable {:?}: {m}", v.name())))?;
            if v.trainable() {
                self.parameters.push(path);
            } else {
                self.buffers.push(path);
            }
        }
        Ok(())
    }

    /// Traces `f` on `inputs` into method `method` and returns `f`'s (eager) outputs. `f`
    /// receives the tensors to compute from (the traced graph's inputs, in order); its
    /// outputs are the method's outputs (one tensor, or a tuple of them in TorchScript).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a method name that is not an identifier or is taken, no
    /// outputs, or a trace already recording on this thread; `f`'s own error (the recording is
    /// abandoned); [`Error::Untraceable`] when libtorch's tracer refuses the run (e.g. a
    /// captured tensor that requires grad and is no registered variable) or a registered
    /// variable was frozen.
    pub fn trace<F>(&mut self, method: &str, inputs: &[Tensor], f: F) -> Result<Vec<Tensor>>
    where
        F: FnOnce(&[Tensor]) -> Result<Vec<Tensor>>,
    {
        let scope = format!("{MODULE} {}.{method}", self.name);
        if !is_identifier(method) || self.methods.iter().any(|m| m == method) {
            return Err(Error::invalid(&scope, "the method name must be a new identifier"));
        }
        if is_tracing() {
            return Err(Error::invalid(&scope, "a trace is already recording on this thread"));
        }
        self.raw.begin(inputs).map_err(|m| Error::invalid(&scope, m))?;
        let outputs = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(inputs))) {
            Ok(Ok(outputs)) if !outputs.is_empty() => outputs,
            Ok(Ok(_)) => {
                ffi::abandon();
                return Err(Error::invalid(&scope, "the traced function returned no tensors"));
            }
            Ok(Err(e)) => {
                ffi::abandon();
                return Err(match e {
                    Error::Torch { module, source } => {
                        Error::Untraceable { module, message: format!("libtorch's tracer: {source}") }
                    }
                    other => other,
                });
            }
            Err(panic) => {
                ffi::abandon();
                std::panic::resume_unwind(panic);
            }
        };
        self.raw.end(method, &outputs).map_err(|message| Error::Untraceable { module: scope, message })?;
        self.methods.push(method.to_string());
        Ok(outputs)
    }

    /// The module's class name (without `__torch__.couplet.`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The dotted names of the registered parameters (trainable variables), in order.
    pub fn parameter_names(&self) -> &[String] {
        &self.parameters
    }

    /// The dotted names of the registered buffers (non-trainable variables), in order.
    pub fn buffer_names(&self) -> &[String] {
        &self.buffers
    }

    /// The traced methods, in order.
    pub fn methods(&self) -> &[String] {
        &self.methods
    }

    /// Writes the module to `path` (TorchScript's zip archive, conventionally `.pt`).
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be written.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let io = |message: String| Error::Io {
            context: format!("{MODULE}: writing {}", path.display()),
            source: std::io::Error::other(message),
        };
        self.raw.save(path.to_str().ok_or_else(|| io("the path is not UTF-8".into()))?).map_err(io)
    }

    /// The module as libtorch loads it back (serialized and loaded in memory): what C++ and
    /// Rust callers of the saved file get.
    ///
    /// # Errors
    /// [`Error::Torch`] if libtorch cannot read its own serialization (a bug).
    pub fn to_cmodule(&self) -> Result<tch::CModule> {
        let bytes = self.raw.to_bytes().map_err(|m| Error::invalid(MODULE, m))?;
        tch::CModule::load_data(&mut bytes.as_slice())
            .map_err(|source| Error::Torch { module: MODULE.to_string(), source })
    }
}

#[cfg(test)]
mod tests;
