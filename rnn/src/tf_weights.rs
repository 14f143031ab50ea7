//! Converters from TensorFlow 1.x `rnn_cell` and Keras recurrent layers to couplet's cells,
//! applied through a [`TfLoader`] (one call per TF scope; see its docs for the name map and
//! the strict report).
//!
//! | TF / Keras | couplet | converter |
//! | --- | --- | --- |
//! | `LSTMCell` (`kernel`, `bias`, peepholes `w_{i,f,o}_diag`, `projection/kernel`) | [`Lstm`] | [`load_tf_lstm_cell`] |
//! | `GRUCell` (`gates/{kernel,bias}`, `candidate/{kernel,bias}`) | [`Gru`] with `reset_after = false` | [`load_tf_gru_cell`] |
//! | `BasicRNNCell` (`kernel`, `bias`) | [`VanillaRnn`] (tanh) | [`load_tf_basic_rnn_cell`] |
//! | Keras `LSTM` (`kernel`, `recurrent_kernel`, `bias`) | [`Lstm`] | [`load_keras_lstm`] |
//! | Keras `GRU`, `reset_after` either way | [`Gru`] with the same `reset_after` | [`load_keras_gru`] |
//!
//! And the reverse, a checkpoint TensorFlow restores (through a [`TfCheckpointWriter`]):
//! [`save_tf_lstm_cell`], [`save_tf_gru_cell`], [`save_tf_basic_rnn_cell`], [`save_keras_lstm`],
//! [`save_keras_gru`].

use crate::{Gru, Lstm, VanillaRnn};
use couplet_modules::checkpoint::tf::{module_variable, TfCheckpointWriter, TfLoader};
use couplet_modules::{Error, Module, Result, TorchContext};
use std::collections::BTreeMap;
use tch::{TchError, Tensor};

type Dict = BTreeMap<String, Tensor>;

/// `[K[..i]ᵀ, K[i..]ᵀ]` of a TF kernel `[I + H, G]` (input rows first).
fn split_kernel(kernel: &Tensor, input: i64) -> Result<(Tensor, Tensor), TchError> {
    let rows = kernel.size()[0];
    Ok((kernel.f_narrow(0, 0, input)?.f_tr()?, kernel.f_narrow(0, input, rows - input)?.f_tr()?))
}

/// The row blocks of `t` (split in `n` along dim 0) in the order `order`.
fn reorder(t: &Tensor, n: i64, order: &[usize]) -> Result<Tensor, TchError> {
    let blocks = t.f_chunk(n, 0)?;
    Tensor::f_cat(&order.iter().map(|&i| &blocks[i]).collect::<Vec<_>>(), 0)
}

/// Checks `t` is `[rows?, cols]` (rank 2 and `cols` columns, any rows unless given);
/// records a mismatch naming `name` otherwise.
fn check2(loader: &mut TfLoader, name: &str, t: &Tensor, rows: Option<i64>, cols: i64) -> bool {
    let size = t.size();
    let ok = size.len() == 2 && size[1] == cols && rows.map_or(size[0] > 0, |r| size[0] == r);
    if !ok {
        let want = rows.map_or(format!("[_, {cols}]"), |r| format!("[{r}, {cols}]"));
        loader.mismatch(format!("{name} must be {want}, got {size:?}"));
    }
    ok
}

fn check1(loader: &mut TfLoader, name: &str, t: &Tensor, len: i64) -> bool {
    let ok = t.size() == [len];
    if !ok {
        loader.mismatch(format!("{name} must be [{len}], got {:?}", t.size()));
    }
    ok
}

/// Loads `dict` with the module's `load_torch`, turning a shape error into a recorded
/// mismatch (so the report lists it with the others).
fn load_dict(loader: &mut TfLoader, result: Result<()>) -> Result<()> {
    match result {
        Err(e @ Error::Shape { .. }) | Err(e @ Error::InvalidArgument { .. }) => {
            loader.mismatch(e.to_string());
            Ok(())
        }
        other => other,
    }
}

/// Loads a TF 1.x `LSTMCell` under `scope` into `lstm`: `kernel [I + P, 4H]` (gates
/// `i, j, f, o`), `bias [4H]`, and, as `lstm` has them, the peepholes `w_i_diag`, `w_f_diag`,
/// `w_o_diag [H]` and `projection/kernel [H, P]`. TF adds `forget_bias` (its constructor
/// argument, 1.0 by default) at run time; it is folded into `bias_ih` here, so the cell
/// computes TF's function (see [`Lstm::load_tf_kernel`]). A lazy `lstm` is built from the
/// kernel. TF's `cell_clip` and `proj_clip` are configuration, not variables: give `lstm`
/// the same.
///
/// # Errors
/// [`Error::Config`] if `lstm` has layer norm or no bias (TF's `LSTMCell` has neither);
/// errors reading the checkpoint. Missing tensors and shape mismatches are recorded in
/// `loader`.
pub fn load_tf_lstm_cell(loader: &mut TfLoader, scope: &str, lstm: &Lstm, forget_bias: f64) -> Result<()> {
    let c = lstm.config();
    let mut leaves = vec!["kernel", "bias"];
    if c.peepholes {
        leaves.extend(["w_i_diag", "w_f_diag", "w_o_diag"]);
    }
    if c.proj_size.is_some() {
        leaves.push("projection/kernel");
    }
    let Some(t) = loader.tensors(scope, &leaves)? else { return Ok(()) };
    match lstm.load_tf_kernel(&t[0], &t[1], forget_bias) {
        Err(e @ Error::Shape { .. }) => {
            loader.mismatch(e.to_string());
            return Ok(());
        }
        other => other?,
    }
    let path = lstm.scope().path().to_string();
    let mut rest = t[2..].iter();
    if c.peepholes {
        for leaf in ["w_i_diag", "w_f_diag", "w_o_diag"] {
            if let Some(v) = rest.next() {
                loader.assign(&format!("{path}/{leaf}"), &module_variable(lstm, leaf)?, v)?;
            }
        }
    }
    if let Some(v) = rest.next() {
        let transposed = v.f_tr().ctx(&path)?;
        loader.assign(&format!("{path}/weight_hr"), &module_variable(lstm, "weight_hr")?, &transposed)?;
    }
    Ok(())
}

/// Loads a TF 1.x `GRUCell` under `scope` into `gru`, which must have `reset_after = false`
/// (TF 1's function): `gates/kernel [I + H, 2H]` (`r, u`, with couplet's `z = u`),
/// `gates/bias [2H]`, `candidate/kernel [I + H, H]`, `candidate/bias [H]`; `bias_hh = 0`.
/// A lazy `gru` is built from the kernels.
///
/// # Errors
/// [`Error::Config`] if `gru` has `reset_after = true` or no bias; errors reading the
/// checkpoint. Missing tensors and shape mismatches are recorded in `loader`.
pub fn load_tf_gru_cell(loader: &mut TfLoader, scope: &str, gru: &Gru) -> Result<()> {
    let module = gru.scope().path().to_string();
    if gru.config().reset_after || !gru.config().with_bias {
        return Err(Error::config(
            &module,
            "a TF 1.x GRUCell loads only into a Gru with reset_after = false and a bias (TF's function)",
        ));
    }
    let leaves = ["gates/kernel", "gates/bias", "candidate/kernel", "candidate/bias"];
    let Some(t) = loader.tensors(scope, &leaves)? else { return Ok(()) };
    let h = gru.hidden_size();
    if !(check2(loader, &format!("{scope}/gates/kernel"), &t[0], None, 2 * h)
        && check2(loader, &format!("{scope}/candidate/kernel"), &t[2], Some(t[0].size()[0]), h)
        && check1(loader, &format!("{scope}/gates/bias"), &t[1], 2 * h)
        && check1(loader, &format!("{scope}/candidate/bias"), &t[3], h))
    {
        return Ok(());
    }
    let input = t[0].size()[0] - h;
    let dict = (|| -> Result<Dict, TchError> {
        let (gx, gh) = split_kernel(&t[0], input)?;
        let (cx, ch) = split_kernel(&t[2], input)?;
        Ok(Dict::from([
            ("weight_ih".into(), Tensor::f_cat(&[gx, cx], 0)?),
            ("weight_hh".into(), Tensor::f_cat(&[gh, ch], 0)?),
            ("bias_ih".into(), Tensor::f_cat(&[&t[1], &t[3]], 0)?),
            ("bias_hh".into(), t[3].f_zeros_like()?.f_repeat([3])?),
        ]))
    })()
    .ctx(&module)?;
    let result = gru.load_torch(&dict, "");
    load_dict(loader, result)
}

/// Loads a TF 1.x `BasicRNNCell` under `scope` (`kernel [I + H, H]`, `bias [H]`) into
/// `rnn` (tanh, with a bias); `bias_hh = 0`.
///
/// # Errors
/// [`Error::Config`] if `rnn` has no bias; errors reading the checkpoint. Missing tensors
/// and shape mismatches are recorded in `loader`.
pub fn load_tf_basic_rnn_cell(loader: &mut TfLoader, scope: &str, rnn: &VanillaRnn) -> Result<()> {
    let module = rnn.scope().path().to_string();
    if !rnn.config().with_bias {
        return Err(Error::config(&module, "a TF BasicRNNCell loads only into a VanillaRnn with a bias"));
    }
    let Some(t) = loader.tensors(scope, &["kernel", "bias"])? else { return Ok(()) };
    let h = rnn.config().hidden_size;
    if !(check2(loader, &format!("{scope}/kernel"), &t[0], None, h)
        && check1(loader, &format!("{scope}/bias"), &t[1], h))
    {
        return Ok(());
    }
    let dict = (|| -> Result<Dict, TchError> {
        let (wx, wh) = split_kernel(&t[0], t[0].size()[0] - h)?;
        Ok(Dict::from([
            ("weight_ih".into(), wx),
            ("weight_hh".into(), wh),
            ("bias_ih".into(), t[1].shallow_clone()),
            ("bias_hh".into(), t[1].f_zeros_like()?),
        ]))
    })()
    .ctx(&module)?;
    let result = rnn.load_torch(&dict, "");
    load_dict(loader, result)
}

/// Loads a Keras `LSTM` (or `LSTMCell`) under `scope` (the cell's scope, e.g.
/// `lstm/lstm_cell`, or `layer_with_weights-1/cell` in a `save_weights` checkpoint):
/// `kernel [I, 4H]`, `recurrent_kernel [H, 4H]` (gates `i, f, c, o`, PyTorch's order) and
/// `bias [4H]` (Keras' `unit_forget_bias` is already in it); `bias_hh = 0`. A lazy `lstm` is
/// built from the kernel.
///
/// # Errors
/// [`Error::Config`] if `lstm` has peepholes, a projection, layer norm or no bias (a Keras
/// LSTM has none of those); errors reading the checkpoint. Missing tensors and shape
/// mismatches are recorded in `loader`.
pub fn load_keras_lstm(loader: &mut TfLoader, scope: &str, lstm: &Lstm) -> Result<()> {
    let c = lstm.config();
    let module = lstm.scope().path().to_string();
    if c.peepholes || c.proj_size.is_some() || c.layer_norm || !c.with_bias {
        return Err(Error::config(
            &module,
            "a Keras LSTM loads only into a plain Lstm with a bias (no peepholes, projection or layer norm)",
        ));
    }
    let Some(t) = loader.tensors(scope, &["kernel", "recurrent_kernel", "bias"])? else { return Ok(()) };
    let h = lstm.hidden_size();
    if !(check2(loader, &format!("{scope}/kernel"), &t[0], None, 4 * h)
        && check2(loader, &format!("{scope}/recurrent_kernel"), &t[1], Some(h), 4 * h)
        && check1(loader, &format!("{scope}/bias"), &t[2], 4 * h))
    {
        return Ok(());
    }
    let dict = (|| -> Result<Dict, TchError> {
        Ok(Dict::from([
            ("weight_ih".into(), t[0].f_tr()?),
            ("weight_hh".into(), t[1].f_tr()?),
            ("bias_ih".into(), t[2].shallow_clone()),
            ("bias_hh".into(), t[2].f_zeros_like()?),
        ]))
    })()
    .ctx(&module)?;
    let result = lstm.load_torch(&dict, "");
    load_dict(loader, result)
}

/// Loads a Keras `GRU` (or `GRUCell`) under `scope` into `gru`: `kernel [I, 3H]`,
/// `recurrent_kernel [H, 3H]` (gates `z, r, h`, reordered to `r, z, n`) and `bias`, which is
/// `[2, 3H]` (input and recurrent bias) for `reset_after=True` and `[3H]` for
/// `reset_after=False`; `gru.config().reset_after` must be the same as the layer's.
///
/// # Errors
/// [`Error::Config`] if `gru` has no bias; errors reading the checkpoint. Missing tensors,
/// shape mismatches and a `reset_after` that differs from the checkpoint's are recorded in
/// `loader`.
pub fn load_keras_gru(loader: &mut TfLoader, scope: &str, gru: &Gru) -> Result<()> {
    let module = gru.scope().path().to_string();
    if !gru.config().with_bias {
        return Err(Error::config(&module, "a Keras GRU loads only into a Gru with a bias"));
    }
    let Some(t) = loader.tensors(scope, &["kernel", "recurrent_kernel", "bias"])? else { return Ok(()) };
    let h = gru.hidden_size();
    let reset_after = gru.config().reset_after;
    let bias_ok = if reset_after { t[2].size() == [2, 3 * h] } else { t[2].size() == [3 * h] };
    if !bias_ok {
        let want = if reset_after {
            format!("[2, {}] (reset_after=True)", 3 * h)
        } else {
            format!("[{}] (reset_after=False)", 3 * h)
        };
        loader.mismatch(format!(
            "{scope}/bias must be {want} as {module} has reset_after = {reset_after}, got {:?}",
            t[2].size()
        ));
        return Ok(());
    }
    if !(check2(loader, &format!("{scope}/kernel"), &t[0], None, 3 * h)
        && check2(loader, &format!("{scope}/recurrent_kernel"), &t[1], Some(h), 3 * h))
    {
        return Ok(());
    }
    const RZN: [usize; 3] = [1, 0, 2];
    let dict = (|| -> Result<Dict, TchError> {
        let (b_ih, b_hh) = if reset_after {
            (t[2].f_get(0)?, t[2].f_get(1)?)
        } else {
            (t[2].shallow_clone(), t[2].f_zeros_like()?)
        };
        Ok(Dict::from([
            ("weight_ih".into(), reorder(&t[0].f_tr()?, 3, &RZN)?),
            ("weight_hh".into(), reorder(&t[1].f_tr()?, 3, &RZN)?),
            ("bias_ih".into(), reorder(&b_ih, 3, &RZN)?),
            ("bias_hh".into(), reorder(&b_hh, 3, &RZN)?),
        ]))
    })()
    .ctx(&module)?;
    let result = gru.load_torch(&dict, "");
    load_dict(loader, result)
}

/// `name` from a cell's PyTorch state dict.
fn param<'d>(module: &str, dict: &'d [(String, Tensor)], name: &str) -> Result<&'d Tensor> {
    dict.iter()
        .find(|(k, _)| k == name)
        .map(|(_, t)| t)
        .ok_or_else(|| Error::config(module, format!("has no {name}: TensorFlow's cells always have a bias")))
}

/// TF's `[I + H, G]` kernel of PyTorch's `weight_ih [G, I]` and `weight_hh [G, H]`.
fn tf_kernel(w_ih: &Tensor, w_hh: &Tensor) -> Result<Tensor, TchError> {
    Tensor::f_cat(&[w_ih, w_hh], 1)?.f_tr()?.f_contiguous()
}

/// Adds the TF 1.x `LSTMCell` variables of `lstm` to `writer` under `scope` (the inverse of
/// [`load_tf_lstm_cell`]): `kernel`, `bias` (with `forget_bias` taken back out of the forget
/// gate, as TF adds it at run time), the peepholes and `projection/kernel` as `lstm` has them.
///
/// # Errors
/// [`Error::NotBuilt`] for a lazy cell not yet built; [`Error::Config`] without a bias or
/// with layer norm; errors of [`TfCheckpointWriter::add`] (a name added twice).
pub fn save_tf_lstm_cell(
    writer: &mut TfCheckpointWriter,
    scope: &str,
    lstm: &Lstm,
    forget_bias: f64,
) -> Result<()> {
    let module = lstm.scope().path().to_string();
    if lstm.config().layer_norm {
        return Err(Error::config(&module, "TF's LSTMCell has no layer norm"));
    }
    let dict = lstm.torch_state_dict("")?;
    let (w_ih, w_hh) = (param(&module, &dict, "weight_ih")?, param(&module, &dict, "weight_hh")?);
    let (b_ih, b_hh) = (param(&module, &dict, "bias_ih")?, param(&module, &dict, "bias_hh")?);
    const IJFO: [usize; 4] = [0, 2, 1, 3];
    let h = lstm.hidden_size();
    let (kernel, bias) = (|| -> Result<(Tensor, Tensor), TchError> {
        let kernel = tf_kernel(&reorder(w_ih, 4, &IJFO)?, &reorder(w_hh, 4, &IJFO)?)?;
        let bias = reorder(&b_ih.f_add(b_hh)?, 4, &IJFO)?;
        let _ = bias.f_narrow(0, 2 * h, h)?.f_sub_(&Tensor::from(forget_bias).f_to_kind(bias.kind())?)?;
        Ok((kernel, bias))
    })()
    .ctx(&module)?;
    writer.add(&format!("{scope}/kernel"), &kernel)?;
    writer.add(&format!("{scope}/bias"), &bias)?;
    if lstm.config().peepholes {
        for leaf in ["w_i_diag", "w_f_diag", "w_o_diag"] {
            writer.add(&format!("{scope}/{leaf}"), &module_variable(lstm, leaf)?)?;
        }
    }
    if lstm.config().proj_size.is_some() {
        let w_hr = param(&module, &dict, "weight_hr")?;
        writer.add(&format!("{scope}/projection/kernel"), &w_hr.f_tr().ctx(&module)?)?;
    }
    Ok(())
}

/// Adds the TF 1.x `GRUCell` variables of `gru` (which must have `reset_after = false`) to
/// `writer` under `scope`: `gates/{kernel,bias}` and `candidate/{kernel,bias}`, the inverse
/// of [`load_tf_gru_cell`] (both PyTorch biases are summed, which TF's function allows).
///
/// # Errors
/// [`Error::NotBuilt`] for a lazy cell not yet built; [`Error::Config`] with
/// `reset_after = true` or without a bias; errors of [`TfCheckpointWriter::add`].
pub fn save_tf_gru_cell(writer: &mut TfCheckpointWriter, scope: &str, gru: &Gru) -> Result<()> {
    let module = gru.scope().path().to_string();
    if gru.config().reset_after {
        return Err(Error::config(&module, "TF 1.x's GRUCell computes reset_after = false only"));
    }
    let dict = gru.torch_state_dict("")?;
    let (w_ih, w_hh) = (param(&module, &dict, "weight_ih")?, param(&module, &dict, "weight_hh")?);
    let (b_ih, b_hh) = (param(&module, &dict, "bias_ih")?, param(&module, &dict, "bias_hh")?);
    let h = gru.hidden_size();
    let parts = (|| -> Result<[Tensor; 4], TchError> {
        let b = b_ih.f_add(b_hh)?;
        Ok([
            tf_kernel(&w_ih.f_narrow(0, 0, 2 * h)?, &w_hh.f_narrow(0, 0, 2 * h)?)?,
            b.f_narrow(0, 0, 2 * h)?,
            tf_kernel(&w_ih.f_narrow(0, 2 * h, h)?, &w_hh.f_narrow(0, 2 * h, h)?)?,
            b.f_narrow(0, 2 * h, h)?,
        ])
    })()
    .ctx(&module)?;
    for (leaf, t) in ["gates/kernel", "gates/bias", "candidate/kernel", "candidate/bias"].iter().zip(&parts) {
        writer.add(&format!("{scope}/{leaf}"), t)?;
    }
    Ok(())
}

/// Adds the TF `BasicRNNCell` variables of `rnn` (tanh) to `writer` under `scope`: `kernel`,
/// `bias` (the sum of PyTorch's two biases), the inverse of [`load_tf_basic_rnn_cell`].
///
/// # Errors
/// [`Error::NotBuilt`] for a lazy cell not yet built; [`Error::Config`] without a bias;
/// errors of [`TfCheckpointWriter::add`].
pub fn save_tf_basic_rnn_cell(writer: &mut TfCheckpointWriter, scope: &str, rnn: &VanillaRnn) -> Result<()> {
    let module = rnn.scope().path().to_string();
    let dict = rnn.torch_state_dict("")?;
    let (w_ih, w_hh) = (param(&module, &dict, "weight_ih")?, param(&module, &dict, "weight_hh")?);
    let (b_ih, b_hh) = (param(&module, &dict, "bias_ih")?, param(&module, &dict, "bias_hh")?);
    let kernel = tf_kernel(w_ih, w_hh).ctx(&module)?;
    writer.add(&format!("{scope}/kernel"), &kernel)?;
    writer.add(&format!("{scope}/bias"), &b_ih.f_add(b_hh).ctx(&module)?)
}

/// Adds `lstm` as a Keras `LSTM` (or `LSTMCell`) under `scope` (the cell's scope, e.g.
/// `lstm/lstm_cell`): `kernel [I, 4H]`, `recurrent_kernel [H, 4H]` (gates `i, f, c, o`, the
/// same order as couplet's) and `bias [4H]` (PyTorch's two biases summed, which Keras'
/// function allows), the inverse of [`load_keras_lstm`].
///
/// # Errors
/// [`Error::NotBuilt`] for a lazy cell not yet built; [`Error::Config`] if `lstm` has
/// peepholes, a projection, layer norm or no bias (a Keras LSTM has none of those); errors
/// of [`TfCheckpointWriter::add`].
pub fn save_keras_lstm(writer: &mut TfCheckpointWriter, scope: &str, lstm: &Lstm) -> Result<()> {
    let c = lstm.config();
    let module = lstm.scope().path().to_string();
    if c.peepholes || c.proj_size.is_some() || c.layer_norm || !c.with_bias {
        return Err(Error::config(
            &module,
            "only a plain Lstm with a bias (no peepholes, projection or layer norm) is a Keras LSTM",
        ));
    }
    let dict = lstm.torch_state_dict("")?;
    let (w_ih, w_hh) = (param(&module, &dict, "weight_ih")?, param(&module, &dict, "weight_hh")?);
    let (b_ih, b_hh) = (param(&module, &dict, "bias_ih")?, param(&module, &dict, "bias_hh")?);
    let parts = (|| -> Result<[Tensor; 3], TchError> {
        Ok([w_ih.f_tr()?.f_contiguous()?, w_hh.f_tr()?.f_contiguous()?, b_ih.f_add(b_hh)?])
    })()
    .ctx(&module)?;
    for (leaf, t) in ["kernel", "recurrent_kernel", "bias"].iter().zip(&parts) {
        writer.add(&format!("{scope}/{leaf}"), t)?;
    }
    Ok(())
}

/// Adds `gru` as a Keras `GRU` (or `GRUCell`) with the same `reset_after` under `scope`:
/// `kernel [I, 3H]`, `recurrent_kernel [H, 3H]` (couplet's gates `r, z, n` reordered to
/// Keras' `z, r, h`) and `bias`: `[2, 3H]` (input and recurrent bias) for
/// `reset_after = true`, `[3H]` (the two summed) for `reset_after = false`. The inverse of
/// [`load_keras_gru`].
///
/// # Errors
/// [`Error::NotBuilt`] for a lazy cell not yet built; [`Error::Config`] without a bias;
/// errors of [`TfCheckpointWriter::add`].
pub fn save_keras_gru(writer: &mut TfCheckpointWriter, scope: &str, gru: &Gru) -> Result<()> {
    let module = gru.scope().path().to_string();
    let dict = gru.torch_state_dict("")?;
    let (w_ih, w_hh) = (param(&module, &dict, "weight_ih")?, param(&module, &dict, "weight_hh")?);
    let (b_ih, b_hh) = (param(&module, &dict, "bias_ih")?, param(&module, &dict, "bias_hh")?);
    // r, z, n → z, r, h (the same swap both ways).
    const ZRH: [usize; 3] = [1, 0, 2];
    let reset_after = gru.config().reset_after;
    let parts = (|| -> Result<[Tensor; 3], TchError> {
        let (b_ih, b_hh) = (reorder(b_ih, 3, &ZRH)?, reorder(b_hh, 3, &ZRH)?);
        let bias = if reset_after { Tensor::f_stack(&[b_ih, b_hh], 0)? } else { b_ih.f_add(&b_hh)? };
        Ok([
            reorder(w_ih, 3, &ZRH)?.f_tr()?.f_contiguous()?,
            reorder(w_hh, 3, &ZRH)?.f_tr()?.f_contiguous()?,
            bias,
        ])
    })()
    .ctx(&module)?;
    for (leaf, t) in ["kernel", "recurrent_kernel", "bias"].iter().zip(&parts) {
        writer.add(&format!("{scope}/{leaf}"), t)?;
    }
    Ok(())
}
