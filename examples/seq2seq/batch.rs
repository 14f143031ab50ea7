//! Padded batches of examples as tensors on the model's device, padded by
//! [`couplet::data::PaddedBatch`] (the same code as the `padded_batch` pipeline stage).

use super::data::{Example, Vocab, END, PAD, START};
use couplet::data::{Array, PaddedBatch, PaddedBatchConfig, PaddedField, Record};
use couplet::rnn::sequence_mask;
use couplet::tch::{Device, Kind, Tensor};
use couplet::{Error, Result, TorchContext};

const MODULE: &str = "seq2seq batch";
const _: () = assert!(PAD == 0, "padded_batch pads with 0 by default");

/// A batch of `B` examples. Sources are padded to the longest source `S`, targets to the
/// longest target plus one (`T`, room for the start or end token).
#[derive(Debug)]
pub struct Batch {
    /// Source character ids `[B, S]` (int64), [`PAD`] past each length.
    pub source: Tensor,
    /// Source lengths (host copy; the unrolls take them as a slice).
    pub source_lengths: Vec<i64>,
    /// Which source positions are real, bool `[B, S]`.
    pub source_mask: Tensor,
    /// Decoder inputs `[B, T]`: [`START`] then the target characters (teacher forcing).
    pub decoder_inputs: Tensor,
    /// Decoder targets `[B, T]`: the target characters then [`END`].
    pub decoder_targets: Tensor,
    /// Target lengths, the end token included (host copy).
    pub target_lengths: Vec<i64>,
    /// Loss weights `[B, T]` (floats): 1 up to each target length, 0 on padding.
    pub target_weights: Tensor,
}

/// Pads `records` (every field with [`PAD`], to the longest) into one batch.
fn pad(records: Vec<Record>) -> Result<PaddedBatch> {
    if records.is_empty() {
        return Err(Error::invalid(MODULE, "a batch needs at least one example"));
    }
    // The default pad value, 0, is PAD (checked at compile time below).
    PaddedBatch::from_records(records, &PaddedBatchConfig::new())
}

/// Takes field `name` of `batch`.
fn take(batch: &mut PaddedBatch, name: &str) -> Result<PaddedField> {
    batch
        .fields
        .remove(name)
        .ok_or_else(|| Error::invalid(MODULE, format!("the padded batch has no field {name:?}")))
}

/// The real positions of `lengths` as a bool `[B, width]` mask on `device`.
fn mask(lengths: &[i64], values: &Tensor, device: Device) -> Result<Tensor> {
    sequence_mask(lengths, Some(values.size()[1]))?.f_to(device).ctx(MODULE)
}

/// Encodes sources only (for decoding text that has no target): `(ids [B, S], lengths, mask)`.
///
/// # Errors
/// [`Error::InvalidArgument`] for no texts; a libtorch error (e.g. an unavailable device).
pub fn sources(texts: &[&str], vocab: &Vocab, device: Device) -> Result<(Tensor, Vec<i64>, Tensor)> {
    let records = texts.iter().map(|t| Record::new().with("source", Array::ids(vocab.encode(t)))).collect();
    let source = take(&mut pad(records)?, "source")?;
    let source_mask = mask(&source.lengths, &source.values, device)?;
    Ok((source.values.f_to(device).ctx(MODULE)?, source.lengths, source_mask))
}

impl Batch {
    /// Encodes `examples` with the source and target vocabularies onto `device`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for no examples; a libtorch error (e.g. an unavailable device).
    pub fn new(examples: &[&Example], source: &Vocab, target: &Vocab, device: Device) -> Result<Batch> {
        let records = examples
            .iter()
            .map(|e| {
                let t = target.encode(&e.target);
                Record::new()
                    .with("source", Array::ids(source.encode(&e.input)))
                    .with("decoder_inputs", Array::ids([&[START], &t[..]].concat()))
                    .with("decoder_targets", Array::ids([&t[..], &[END]].concat()))
            })
            .collect();
        let mut batch = pad(records)?;
        let src = take(&mut batch, "source")?;
        let inputs = take(&mut batch, "decoder_inputs")?;
        let targets = take(&mut batch, "decoder_targets")?;
        let target_weights =
            mask(&targets.lengths, &targets.values, device)?.f_to_kind(Kind::Float).ctx(MODULE)?;
        Ok(Batch {
            source_mask: mask(&src.lengths, &src.values, device)?,
            source: src.values.f_to(device).ctx(MODULE)?,
            source_lengths: src.lengths,
            decoder_inputs: inputs.values.f_to(device).ctx(MODULE)?,
            decoder_targets: targets.values.f_to(device).ctx(MODULE)?,
            target_lengths: targets.lengths,
            target_weights,
        })
    }
}
