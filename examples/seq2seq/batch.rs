//! Padded batches of examples as tensors on the model's device.

use super::data::{Example, Vocab, END, PAD, START};
use couplet::rnn::sequence_mask;
use couplet::tch::{Device, Kind, Tensor};
use couplet::{Result, TorchContext};

const MODULE: &str = "seq2seq batch";

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

/// Pads `rows` with [`PAD`] into an int64 `[rows.len(), width]` tensor on `device`.
fn pad(rows: &[Vec<i64>], width: usize, device: Device) -> Result<Tensor> {
    let mut flat = Vec::with_capacity(rows.len() * width);
    for row in rows {
        flat.extend_from_slice(row);
        flat.resize(flat.len() + width - row.len(), PAD);
    }
    Tensor::from_slice(&flat).f_view([rows.len() as i64, width as i64]).ctx(MODULE)?.f_to(device).ctx(MODULE)
}

/// Encodes sources only (for decoding text that has no target): `(ids [B, S], lengths, mask)`.
///
/// # Errors
/// A libtorch error (e.g. an unavailable device).
pub fn sources(texts: &[&str], vocab: &Vocab, device: Device) -> Result<(Tensor, Vec<i64>, Tensor)> {
    let rows: Vec<Vec<i64>> = texts.iter().map(|t| vocab.encode(t)).collect();
    let lengths: Vec<i64> = rows.iter().map(|r| r.len() as i64).collect();
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let ids = pad(&rows, width, device)?;
    let mask = sequence_mask(&lengths, Some(width as i64))?.f_to(device).ctx(MODULE)?;
    Ok((ids, lengths, mask))
}

impl Batch {
    /// Encodes `examples` with the source and target vocabularies onto `device`.
    ///
    /// # Errors
    /// A libtorch error (e.g. an unavailable device).
    pub fn new(examples: &[&Example], source: &Vocab, target: &Vocab, device: Device) -> Result<Batch> {
        let texts: Vec<&str> = examples.iter().map(|e| e.input.as_str()).collect();
        let (source_ids, source_lengths, source_mask) = sources(&texts, source, device)?;
        let targets: Vec<Vec<i64>> = examples.iter().map(|e| target.encode(&e.target)).collect();
        let inputs: Vec<Vec<i64>> = targets.iter().map(|t| [&[START], &t[..]].concat()).collect();
        let outputs: Vec<Vec<i64>> = targets.iter().map(|t| [&t[..], &[END]].concat()).collect();
        let target_lengths: Vec<i64> = outputs.iter().map(|t| t.len() as i64).collect();
        let width = outputs.iter().map(Vec::len).max().unwrap_or(0);
        let target_weights = sequence_mask(&target_lengths, Some(width as i64))?
            .f_to_kind(Kind::Float)
            .ctx(MODULE)?
            .f_to(device)
            .ctx(MODULE)?;
        Ok(Batch {
            source: source_ids,
            source_lengths,
            source_mask,
            decoder_inputs: pad(&inputs, width, device)?,
            decoder_targets: pad(&outputs, width, device)?,
            target_lengths,
            target_weights,
        })
    }
}
