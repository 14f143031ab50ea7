//! Converters between TensorFlow/Keras layers and this crate's modules, both ways: `Dense`,
//! `Embedding`, `LayerNormalization`, `BatchNormalization`. Their variables only change names
//! (TF `kernel [I, O]` is [`Linear`]'s `w [I, O]` already).

use super::loader::TfLoader;
use super::writer::TfCheckpointWriter;
use crate::batch_norm::BatchNorm;
use crate::embed::Embed;
use crate::error::Result;
use crate::layer_norm::LayerNorm;
use crate::linear::Linear;
use crate::module::{Mode, Module};
use tch::Tensor;

impl TfLoader<'_> {
    /// Loads a TF/Keras `Dense` (`scope/kernel [I, O]`, `scope/bias [O]` when `linear` has a
    /// bias) into `linear`. A lazy `linear` is built with `I` from the kernel.
    ///
    /// # Errors
    /// As [`TfLoader::tensor`]; an error of `linear` while it is built.
    pub fn dense(&mut self, scope: &str, linear: &Linear) -> Result<()> {
        let with_bias = linear.config().with_bias;
        let leaves: &[&str] = if with_bias { &["kernel", "bias"] } else { &["kernel"] };
        let Some(t) = self.tensors(scope, leaves)? else { return Ok(()) };
        if !linear.is_built() {
            match t[0].size().as_slice() {
                [i, _] if *i > 0 => {
                    let _built = linear
                        .forward(&Tensor::zeros([1, *i], (linear.scope().kind(), linear.scope().device())))?;
                }
                other => {
                    self.mismatch(format!("{}/kernel must be [I, O], got {other:?}", scope));
                    return Ok(());
                }
            }
        }
        let path = linear.scope().path().to_string();
        self.assign(&format!("{path}/w"), linear.w()?, &t[0])?;
        if let Some(b) = linear.b()? {
            self.assign(&format!("{path}/b"), b, &t[1])?;
        }
        Ok(())
    }

    /// Loads a TF/Keras `Embedding` (`scope/embeddings [V, D]`) into `embed`.
    ///
    /// # Errors
    /// As [`TfLoader::tensor`].
    pub fn embedding(&mut self, scope: &str, embed: &Embed) -> Result<()> {
        if let Some(t) = self.tensor(scope, "embeddings")? {
            self.assign(&format!("{}/embeddings", embed.scope().path()), embed.embeddings(), &t)?;
        }
        Ok(())
    }

    /// Loads a Keras `LayerNormalization` (`scope/gamma`, `scope/beta`, as `layer_norm` has a
    /// scale and an offset) into `layer_norm`. A lazy `layer_norm` is built from `gamma`'s
    /// shape (normalising over that many trailing axes).
    ///
    /// # Errors
    /// As [`TfLoader::tensor`]; an error of `layer_norm` while it is built.
    pub fn layer_norm(&mut self, scope: &str, layer_norm: &LayerNorm) -> Result<()> {
        let c = layer_norm.config();
        let mut leaves = Vec::new();
        if c.create_scale {
            leaves.push("gamma");
        }
        if c.create_offset {
            leaves.push("beta");
        }
        let Some(t) = self.tensors(scope, &leaves)? else { return Ok(()) };
        if !layer_norm.is_built() {
            if let Some(first) = t.first() {
                let mut shape = vec![1];
                shape.extend(first.size());
                let _built = layer_norm.forward(&Tensor::zeros(
                    shape.as_slice(),
                    (layer_norm.scope().kind(), layer_norm.scope().device()),
                ))?;
            }
        }
        let path = layer_norm.scope().path().to_string();
        let mut values = t.iter();
        if c.create_scale {
            if let (Some(scale), Some(v)) = (layer_norm.scale()?, values.next()) {
                self.assign(&format!("{path}/scale"), scale, v)?;
            }
        }
        if c.create_offset {
            if let (Some(offset), Some(v)) = (layer_norm.offset()?, values.next()) {
                self.assign(&format!("{path}/offset"), offset, v)?;
            }
        }
        Ok(())
    }

    /// Loads a TF/Keras `BatchNormalization` (`scope/gamma`, `scope/beta` as `batch_norm`
    /// has a scale and an offset, and the moving statistics `scope/moving_mean`,
    /// `scope/moving_variance`) into `batch_norm`. A lazy `batch_norm` is built with the
    /// channel count of `moving_mean`.
    ///
    /// # Errors
    /// As [`TfLoader::tensor`]; an error of `batch_norm` while it is built.
    pub fn batch_norm(&mut self, scope: &str, batch_norm: &BatchNorm) -> Result<()> {
        let c = batch_norm.config();
        let mut leaves = Vec::new();
        if c.create_scale {
            leaves.push("gamma");
        }
        if c.create_offset {
            leaves.push("beta");
        }
        leaves.extend(["moving_mean", "moving_variance"]);
        let Some(t) = self.tensors(scope, &leaves)? else { return Ok(()) };
        if !batch_norm.is_built() {
            let channels = t[t.len() - 2].size().first().copied().unwrap_or(0);
            let _built = batch_norm.forward_t(
                &Tensor::zeros([1, channels], (batch_norm.scope().kind(), batch_norm.scope().device())),
                Mode::Eval,
            )?;
        }
        let path = batch_norm.scope().path().to_string();
        let mut values = t.iter();
        if c.create_scale {
            if let (Some(var), Some(v)) = (batch_norm.scale()?, values.next()) {
                self.assign(&format!("{path}/scale"), var, v)?;
            }
        }
        if c.create_offset {
            if let (Some(var), Some(v)) = (batch_norm.offset()?, values.next()) {
                self.assign(&format!("{path}/offset"), var, v)?;
            }
        }
        if let Some(v) = values.next() {
            self.assign(&format!("{path}/moving_mean"), batch_norm.moving_mean()?, v)?;
        }
        if let Some(v) = values.next() {
            self.assign(&format!("{path}/moving_variance"), batch_norm.moving_variance()?, v)?;
        }
        Ok(())
    }
}

/// Writers from this crate's modules to TF/Keras layers' variables: the inverses of the
/// [`TfLoader`] converters above, for a checkpoint TensorFlow restores (by name, e.g.
/// `tf.compat.v1.train.Saver(var_list)` over a Keras model's variables).
impl TfCheckpointWriter {
    /// Adds `linear` as a TF/Keras `Dense` under `scope`: `scope/kernel [I, O]` and, when it
    /// has a bias, `scope/bias [O]` (the inverse of [`TfLoader::dense`]).
    ///
    /// # Errors
    /// [`Error::NotBuilt`](crate::Error::NotBuilt) for a lazy `linear` not yet built; errors
    /// of [`TfCheckpointWriter::add`] (a name added twice).
    pub fn add_dense(&mut self, scope: &str, linear: &Linear) -> Result<()> {
        self.add(&format!("{scope}/kernel"), linear.w()?)?;
        if let Some(b) = linear.b()? {
            self.add(&format!("{scope}/bias"), b)?;
        }
        Ok(())
    }

    /// Adds `embed` as a TF/Keras `Embedding` under `scope`: `scope/embeddings [V, D]` (the
    /// inverse of [`TfLoader::embedding`]).
    ///
    /// # Errors
    /// Errors of [`TfCheckpointWriter::add`].
    pub fn add_embedding(&mut self, scope: &str, embed: &Embed) -> Result<()> {
        self.add(&format!("{scope}/embeddings"), embed.embeddings())
    }

    /// Adds `layer_norm` as a Keras `LayerNormalization` under `scope`: `scope/gamma` and
    /// `scope/beta` as it has a scale and an offset (the inverse of [`TfLoader::layer_norm`];
    /// give Keras the same `epsilon` and axes).
    ///
    /// # Errors
    /// [`Error::NotBuilt`](crate::Error::NotBuilt) for a lazy `layer_norm` not yet built;
    /// errors of [`TfCheckpointWriter::add`].
    pub fn add_layer_norm(&mut self, scope: &str, layer_norm: &LayerNorm) -> Result<()> {
        if let Some(scale) = layer_norm.scale()? {
            self.add(&format!("{scope}/gamma"), scale)?;
        }
        if let Some(offset) = layer_norm.offset()? {
            self.add(&format!("{scope}/beta"), offset)?;
        }
        Ok(())
    }

    /// Adds `batch_norm` as a TF/Keras `BatchNormalization` under `scope`: `scope/gamma`,
    /// `scope/beta` as it has a scale and an offset, and the moving statistics
    /// `scope/moving_mean`, `scope/moving_variance` (the inverse of [`TfLoader::batch_norm`];
    /// give Keras the same `epsilon` and channel axis).
    ///
    /// # Errors
    /// [`Error::NotBuilt`](crate::Error::NotBuilt) for a lazy `batch_norm` not yet built;
    /// errors of [`TfCheckpointWriter::add`].
    pub fn add_batch_norm(&mut self, scope: &str, batch_norm: &BatchNorm) -> Result<()> {
        if let Some(scale) = batch_norm.scale()? {
            self.add(&format!("{scope}/gamma"), scale)?;
        }
        if let Some(offset) = batch_norm.offset()? {
            self.add(&format!("{scope}/beta"), offset)?;
        }
        self.add(&format!("{scope}/moving_mean"), batch_norm.moving_mean()?)?;
        self.add(&format!("{scope}/moving_variance"), batch_norm.moving_variance()?)
    }
}
