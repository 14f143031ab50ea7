//! Converters from TensorFlow's attention (TF Addons / `contrib.seq2seq` `LuongAttention`,
//! `BahdanauAttention` and the `AttentionWrapper`'s attention layer) to couplet's, applied
//! through a [`TfLoader`].
//!
//! A mechanism computes its keys once, when a memory is prepared, and its memory layer is
//! built by that first preparation; weights written into it afterwards would silently not be
//! used by the keys of memories prepared before. So these converters only load into a
//! mechanism that has never prepared a memory (nor scored a query): they build its layers
//! from the checkpoint's shapes themselves, and refuse a mechanism that is already built.
//! Load first, then prepare.
//!
//! The reverse, a checkpoint TensorFlow restores: [`save_tf_luong`], [`save_tf_bahdanau`] and
//! [`save_tf_attention_layer`] (the mechanisms must have prepared a memory, which builds
//! their layers).

use crate::decoder_core::AttentionDecoderCore;
use crate::mechanism::{AttentionMechanism, BahdanauAttention, LuongAttention};
use couplet_modules::checkpoint::tf::{module_variable, TfCheckpointWriter, TfLoader};
use couplet_modules::{Error, Module, Result};
use tch::Tensor;

/// Refuses a mechanism that has prepared a memory already (see the module docs).
fn check_fresh(mechanism: &impl Module) -> Result<()> {
    if mechanism.is_built() {
        return Err(Error::invalid(
            mechanism.scope().path(),
            "load TF weights into a mechanism before it prepares any memory: a memory prepared \
             already holds keys computed from the old weights (build a fresh mechanism, load, then prepare)",
        ));
    }
    Ok(())
}

/// `[rows, cols]` of a rank-2 kernel, or a recorded mismatch.
fn kernel_dims(loader: &mut TfLoader, name: &str, kernel: &Tensor, cols: i64) -> Option<i64> {
    match kernel.size().as_slice() {
        [rows, c] if *rows > 0 && *c == cols => Some(*rows),
        other => {
            loader.mismatch(format!("{name} must be [_, {cols}], got {other:?}"));
            None
        }
    }
}

/// Builds a mechanism's layers by preparing a zero memory `[1, 1, Dm]` (and scoring a zero
/// query `[1, Dq]` when `query` is given); the result is discarded.
fn build(mechanism: &impl AttentionMechanism, memory_size: i64, query: Option<i64>) -> Result<()> {
    let options = (mechanism.scope().kind(), mechanism.scope().device());
    let memory = mechanism.prepare(&Tensor::zeros([1, 1, memory_size], options), None)?;
    if let Some(q) = query {
        let _scores = mechanism.score(&Tensor::zeros([1, q], options), &memory)?;
    }
    Ok(())
}

/// Loads TF's `LuongAttention` under `scope` into `luong`: `memory_layer/kernel [Dm, U]` and,
/// with `scale`, `attention_g []`. `luong` must not have prepared a memory yet.
///
/// # Errors
/// [`Error::InvalidArgument`] if `luong` is already built (it prepared a memory); errors
/// reading the checkpoint. Missing tensors and mismatches are recorded in `loader`.
pub fn load_tf_luong(loader: &mut TfLoader, scope: &str, luong: &LuongAttention) -> Result<()> {
    check_fresh(luong)?;
    let mut leaves = vec!["memory_layer/kernel"];
    if luong.config().scale {
        leaves.push("attention_g");
    }
    let Some(t) = loader.tensors(scope, &leaves)? else { return Ok(()) };
    let units = luong.config().num_units;
    let Some(memory_size) = kernel_dims(loader, &format!("{scope}/memory_layer/kernel"), &t[0], units) else {
        return Ok(());
    };
    build(luong, memory_size, None)?;
    let path = luong.scope().path().to_string();
    loader.assign(&format!("{path}/memory_layer/w"), &module_variable(luong, "memory_layer/w")?, &t[0])?;
    if let Some(g) = t.get(1) {
        loader.assign(&format!("{path}/attention_g"), &module_variable(luong, "attention_g")?, g)?;
    }
    Ok(())
}

/// Loads TF's `BahdanauAttention` under `scope` into `bahdanau`: `memory_layer/kernel [Dm, U]`,
/// `query_layer/kernel [Dq, U]`, `attention_v [U]` and, with `normalize`, `attention_g []`
/// and `attention_b [U]`. `bahdanau` must not have prepared a memory yet.
///
/// # Errors
/// [`Error::InvalidArgument`] if `bahdanau` is already built; errors reading the checkpoint.
/// Missing tensors and mismatches are recorded in `loader`.
pub fn load_tf_bahdanau(loader: &mut TfLoader, scope: &str, bahdanau: &BahdanauAttention) -> Result<()> {
    check_fresh(bahdanau)?;
    let mut leaves = vec!["memory_layer/kernel", "query_layer/kernel", "attention_v"];
    if bahdanau.config().normalize {
        leaves.extend(["attention_g", "attention_b"]);
    }
    let Some(t) = loader.tensors(scope, &leaves)? else { return Ok(()) };
    let units = bahdanau.config().num_units;
    let memory_size = kernel_dims(loader, &format!("{scope}/memory_layer/kernel"), &t[0], units);
    let query_size = kernel_dims(loader, &format!("{scope}/query_layer/kernel"), &t[1], units);
    let (Some(memory_size), Some(query_size)) = (memory_size, query_size) else { return Ok(()) };
    build(bahdanau, memory_size, Some(query_size))?;
    let path = bahdanau.scope().path().to_string();
    let targets = ["memory_layer/w", "query_layer/w", "attention_v", "attention_g", "attention_b"];
    for (leaf, value) in targets.iter().zip(&t) {
        loader.assign(&format!("{path}/{leaf}"), &module_variable(bahdanau, leaf)?, value)?;
    }
    Ok(())
}

/// Loads the attention layer of TF's `AttentionWrapper(attention_layer_size = A)` under
/// `scope` (`attention_layer/kernel [O_cell + Dm, A]`, no bias) into `decoder`'s attention
/// layer. The wrapped cell and mechanism are loaded by their own converters, before the
/// decoder is built around them.
///
/// # Errors
/// [`Error::Config`] if `decoder` has no attention layer (`attention_layer_size` is `None`);
/// errors reading the checkpoint. Missing tensors and mismatches are recorded in `loader`.
pub fn load_tf_attention_layer(
    loader: &mut TfLoader,
    scope: &str,
    decoder: &AttentionDecoderCore,
) -> Result<()> {
    let layer = decoder.attention_layer().ok_or_else(|| {
        Error::config(decoder.scope().path(), "has no attention layer (attention_layer_size is None)")
    })?;
    loader.dense(&format!("{scope}/attention_layer"), layer)
}

/// Adds `luong` as TF's `LuongAttention` under `scope`: `memory_layer/kernel [Dm, U]` and,
/// with `scale`, `attention_g []` (the inverse of [`load_tf_luong`]).
///
/// # Errors
/// [`Error::NotBuilt`] if `luong` has not prepared a memory yet (its memory layer is lazy);
/// errors of [`TfCheckpointWriter::add`] (a name added twice).
pub fn save_tf_luong(writer: &mut TfCheckpointWriter, scope: &str, luong: &LuongAttention) -> Result<()> {
    let mut leaves = vec!["memory_layer/kernel"];
    if luong.config().scale {
        leaves.push("attention_g");
    }
    let sources = ["memory_layer/w", "attention_g"];
    for (leaf, source) in leaves.iter().zip(sources) {
        writer.add(&format!("{scope}/{leaf}"), &module_variable(luong, source)?)?;
    }
    Ok(())
}

/// Adds `bahdanau` as TF's `BahdanauAttention` under `scope`: `memory_layer/kernel [Dm, U]`,
/// `query_layer/kernel [Dq, U]`, `attention_v [U]` and, with `normalize`, `attention_g []`
/// and `attention_b [U]` (the inverse of [`load_tf_bahdanau`]).
///
/// # Errors
/// [`Error::NotBuilt`] if `bahdanau` has not prepared a memory and scored a query yet (its
/// layers are lazy); errors of [`TfCheckpointWriter::add`].
pub fn save_tf_bahdanau(
    writer: &mut TfCheckpointWriter,
    scope: &str,
    bahdanau: &BahdanauAttention,
) -> Result<()> {
    let mut leaves = vec![("memory_layer/kernel", "memory_layer/w"), ("query_layer/kernel", "query_layer/w")];
    leaves.push(("attention_v", "attention_v"));
    if bahdanau.config().normalize {
        leaves.extend([("attention_g", "attention_g"), ("attention_b", "attention_b")]);
    }
    for (leaf, source) in leaves {
        writer.add(&format!("{scope}/{leaf}"), &module_variable(bahdanau, source)?)?;
    }
    Ok(())
}

/// Adds `decoder`'s attention layer as the `AttentionWrapper`'s under `scope`:
/// `attention_layer/kernel [O_cell + Dm, A]` (the inverse of [`load_tf_attention_layer`]; the
/// cell and the mechanism are written by their own writers).
///
/// # Errors
/// [`Error::Config`] if `decoder` has no attention layer; [`Error::NotBuilt`] if the layer
/// has not run yet (it is lazy); errors of [`TfCheckpointWriter::add`].
pub fn save_tf_attention_layer(
    writer: &mut TfCheckpointWriter,
    scope: &str,
    decoder: &AttentionDecoderCore,
) -> Result<()> {
    let layer = decoder.attention_layer().ok_or_else(|| {
        Error::config(decoder.scope().path(), "has no attention layer (attention_layer_size is None)")
    })?;
    writer.add_dense(&format!("{scope}/attention_layer"), layer)
}
