//! [`Dataset::padded_batch`]: batches of [`Record`]s with every sequence field padded, and the
//! padding report.

use crate::dataset::{element_error, Dataset};
use crate::record::{Record, Values};
use couplet_modules::{Error, Result, TorchContext};
use std::collections::BTreeMap;
use tch::Tensor;

/// The padded length of a sequence field (its first dimension) in a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PadLength {
    /// The longest length in the batch (TF's `padded_shapes=None`). The default.
    #[default]
    Longest,
    /// Exactly this length; a longer element is an error.
    Fixed(usize),
    /// The longest length rounded up to a multiple of `k > 0` (friendlier to fused kernels).
    MultipleOf(usize),
}

/// How one field is padded. Default: [`PadLength::Longest`] with pad value 0.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct FieldPadding {
    /// The padded length.
    pub length: PadLength,
    /// The value of padded positions (an integer for `int64` fields). Default 0.
    pub value: f64,
}

/// Configuration of [`Dataset::padded_batch`]. Fields not named in `fields` get
/// [`FieldPadding::default`].
#[derive(Clone, Debug, PartialEq, Default)]
pub struct PaddedBatchConfig {
    /// Per-field padding by field name.
    pub fields: BTreeMap<String, FieldPadding>,
    /// Whether a last, smaller batch is dropped. Default `false`.
    pub drop_remainder: bool,
}

impl PaddedBatchConfig {
    /// The default configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets field `name`'s padding.
    pub fn field(mut self, name: &str, length: PadLength, value: f64) -> Self {
        self.fields.insert(name.to_string(), FieldPadding { length, value });
        self
    }

    /// Sets `drop_remainder`.
    pub fn drop_remainder(mut self, drop: bool) -> Self {
        self.drop_remainder = drop;
        self
    }

    pub(crate) fn check(&self, stage: &str) -> Result<()> {
        for (name, f) in &self.fields {
            if f.length == PadLength::MultipleOf(0) {
                return Err(Error::config(stage, format!("field {name:?}: MultipleOf(k) needs k > 0")));
            }
            if !f.value.is_finite() {
                return Err(Error::config(
                    stage,
                    format!("field {name:?}: pad value must be finite, got {}", f.value),
                ));
            }
        }
        Ok(())
    }
}

/// One padded field of a batch of `B` elements.
#[derive(Debug)]
pub struct PaddedField {
    /// The values `[B, T, ..]` (`[B]` for a scalar field): `Int64` or `Float`, on the CPU,
    /// the pad value past each length.
    pub values: Tensor,
    /// Each element's length (its first dimension; 1 for a scalar field), `[B]` on the host.
    pub lengths: Vec<i64>,
}

impl PaddedField {
    /// The lengths as an `Int64` tensor `[B]` (what `sequence_mask` and losses take).
    pub fn lengths_tensor(&self) -> Tensor {
        Tensor::from_slice(&self.lengths)
    }

    /// The real (unpadded) steps: the sum of the lengths.
    pub fn real_steps(&self) -> u64 {
        self.lengths.iter().map(|&l| l.max(0) as u64).sum()
    }

    /// The padded steps: `B * T` (`B` for a scalar field).
    pub fn padded_steps(&self) -> u64 {
        let size = self.values.size();
        let t = if size.len() > 1 { size[1] } else { 1 };
        self.lengths.len() as u64 * t.max(0) as u64
    }
}

/// A batch of records, every field padded (see [`Dataset::padded_batch`]).
#[derive(Debug)]
pub struct PaddedBatch {
    /// The padded fields by name.
    pub fields: BTreeMap<String, PaddedField>,
    /// The number of elements `B`.
    pub size: usize,
}

impl PaddedBatch {
    /// Pads `records` into one batch as [`Dataset::padded_batch`] does (for batches made
    /// outside a pipeline, e.g. an evaluation set's chunks). Errors name the record's index.
    ///
    /// # Errors
    /// As [`Dataset::padded_batch`].
    pub fn from_records(records: Vec<Record>, config: &PaddedBatchConfig) -> Result<PaddedBatch> {
        const STAGE: &str = "padded_batch";
        config.check(STAGE)?;
        let items: Vec<(u64, Record)> = (0u64..).zip(records).collect();
        pad_records(STAGE, &items, config, None)
    }

    /// Field `name`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the fields there are.
    pub fn get(&self, name: &str) -> Result<&PaddedField> {
        self.fields.get(name).ok_or_else(|| {
            let names: Vec<&str> = self.fields.keys().map(String::as_str).collect();
            Error::invalid("padded batch", format!("no field {name:?} (fields: {})", names.join(", ")))
        })
    }
}

/// Real versus padded steps over batches: `efficiency = real / padded` and
/// `padding_fraction = 1 - efficiency` (the share of computed steps that are padding).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PaddingReport {
    /// Real steps (sum of lengths).
    pub real: u64,
    /// Padded steps (sum of `B * T`).
    pub padded: u64,
    /// Batches counted.
    pub batches: u64,
}

impl PaddingReport {
    /// Counts one batch's field.
    pub fn add(&mut self, field: &PaddedField) {
        self.real += field.real_steps();
        self.padded += field.padded_steps();
        self.batches += 1;
    }

    /// `real / padded` (1 when nothing was counted).
    pub fn efficiency(&self) -> f64 {
        if self.padded == 0 {
            1.0
        } else {
            self.real as f64 / self.padded as f64
        }
    }

    /// `1 - real / padded`.
    pub fn padding_fraction(&self) -> f64 {
        1.0 - self.efficiency()
    }
}

impl Dataset<PaddedBatch> {
    /// The padding report of field `name` over one pass (take a finite part of an endless
    /// pipeline first, e.g. `.take(100)`).
    ///
    /// # Errors
    /// The pass's first error, or a batch without field `name`.
    pub fn padding_report(&self, name: &str) -> Result<PaddingReport> {
        let mut report = PaddingReport::default();
        for batch in self.iter() {
            report.add(batch?.get(name)?);
        }
        Ok(report)
    }
}

impl Dataset<Record> {
    /// Batches `batch_size` records and pads every field (TF's `padded_batch`): a sequence
    /// field (rank >= 1, first dimension = time) becomes `[B, T, ..]` with `T` from its
    /// [`PadLength`] and the pad value after each element's length, with the lengths `[B]`
    /// beside it; a scalar field becomes `[B]`. `int64` fields give `Int64` tensors, `float`
    /// fields `Float`. Every element must have the same fields, kinds, ranks and trailing
    /// dimensions as the batch's first.
    ///
    /// # Errors
    /// [`Error::Config`] for a zero batch size, `MultipleOf(0)` or a non-finite pad value.
    /// While iterating, an `Err` naming the element:
    /// `"padded_batch: element 17: field \"tokens\" has rank 2, expected 1"` (also a missing
    /// field, another kind, a `bytes` field, other trailing dimensions, a length over
    /// `Fixed(n)`, a fractional pad value for an `int64` field).
    pub fn padded_batch(&self, batch_size: usize, config: PaddedBatchConfig) -> Result<Dataset<PaddedBatch>> {
        const STAGE: &str = "padded_batch";
        config.check(STAGE)?;
        let config = std::sync::Arc::new(config);
        Ok(self
            .batch_indexed(STAGE, batch_size, config.drop_remainder)?
            .try_map(move |items| pad_records(STAGE, &items, &config, None)))
    }
}

/// Pads the records `items` (with their indices in the pass) into a batch. `bucket_length`,
/// when given, replaces [`PadLength::Longest`] by `Fixed(bucket_length)` (bucketing's
/// `pad_to_bucket_boundary`).
pub(crate) fn pad_records(
    stage: &str,
    items: &[(u64, Record)],
    config: &PaddedBatchConfig,
    bucket_length: Option<usize>,
) -> Result<PaddedBatch> {
    let Some((first_index, first)) = items.first() else {
        return Ok(PaddedBatch { fields: BTreeMap::new(), size: 0 });
    };
    for (i, r) in items {
        if r.fields.len() != first.fields.len() || !r.fields.keys().eq(first.fields.keys()) {
            let names = |r: &Record| r.fields.keys().cloned().collect::<Vec<_>>().join(", ");
            return Err(element_error(
                stage,
                *i,
                format!("has fields [{}], expected [{}] (as element {first_index})", names(r), names(first)),
            ));
        }
    }
    let mut fields = BTreeMap::new();
    for name in first.fields.keys() {
        let padding = config.fields.get(name).copied().unwrap_or_default();
        let padding = match (padding.length, bucket_length) {
            (PadLength::Longest, Some(b)) => FieldPadding { length: PadLength::Fixed(b), ..padding },
            _ => padding,
        };
        fields.insert(name.clone(), pad_field(stage, items, name, padding)?);
    }
    Ok(PaddedBatch { fields, size: items.len() })
}

/// Pads field `name` of every record.
fn pad_field(stage: &str, items: &[(u64, Record)], name: &str, padding: FieldPadding) -> Result<PaddedField> {
    let (first_index, first) = (&items[0].0, &items[0].1.fields[name]);
    let rank = first.rank();
    let mut lengths = Vec::with_capacity(items.len());
    for (i, r) in items {
        let a = &r.fields[name];
        if let Values::Bytes(_) = a.values {
            return Err(element_error(
                stage,
                *i,
                format!(
                    "field {name:?} holds bytes, which do not batch into a tensor (map them to ids first)"
                ),
            ));
        }
        if std::mem::discriminant(&a.values) != std::mem::discriminant(&first.values) {
            return Err(element_error(
                stage,
                *i,
                format!(
                    "field {name:?} is {}, expected {} (as element {first_index})",
                    a.values.kind_name(),
                    first.values.kind_name()
                ),
            ));
        }
        if a.rank() != rank {
            return Err(element_error(
                stage,
                *i,
                format!("field {name:?} has rank {}, expected {rank}", a.rank()),
            ));
        }
        if rank > 0 && a.shape[1..] != first.shape[1..] {
            return Err(element_error(
                stage,
                *i,
                format!(
                    "field {name:?} has shape {:?}, expected trailing dimensions {:?} (as element {first_index})",
                    a.shape,
                    &first.shape[1..]
                ),
            ));
        }
        lengths.push(if rank == 0 { 1 } else { a.shape[0] });
    }
    let longest = lengths.iter().copied().max().unwrap_or(0);
    let t = match padding.length {
        PadLength::Longest => longest,
        PadLength::Fixed(n) => {
            if let Some(pos) = lengths.iter().position(|&l| l > n) {
                return Err(element_error(
                    stage,
                    items[pos].0,
                    format!("field {name:?} has length {}, longer than its padded length {n}", lengths[pos]),
                ));
            }
            n
        }
        PadLength::MultipleOf(k) => longest
            .div_ceil(k)
            .checked_mul(k)
            .ok_or_else(|| Error::invalid(stage, "padded length overflows"))?,
    };
    let inner: usize = if rank > 1 { first.shape[1..].iter().product() } else { 1 };
    let b = items.len();
    let row = if rank == 0 {
        1
    } else {
        t.checked_mul(inner).ok_or_else(|| Error::invalid(stage, "padded size overflows"))?
    };
    let total = b
        .checked_mul(row)
        .ok_or_else(|| Error::invalid(stage, format!("a batch of {b} x {row} values overflows")))?;
    let mut shape: Vec<i64> = vec![b as i64];
    if rank > 0 {
        shape.push(t as i64);
        shape.extend(first.shape[1..].iter().map(|&d| d as i64));
    }
    let values = match first.values {
        Values::I64(_) => {
            let v = padding.value;
            if v.fract() != 0.0 || v < i64::MIN as f64 || v > i64::MAX as f64 {
                return Err(Error::invalid(
                    stage,
                    format!("field {name:?} is int64, its pad value {v} is not an integer"),
                ));
            }
            let mut flat = vec![v as i64; total];
            for (k, (_, r)) in items.iter().enumerate() {
                if let Values::I64(src) = &r.fields[name].values {
                    flat[k * row..k * row + src.len()].copy_from_slice(src);
                }
            }
            Tensor::from_slice(&flat)
        }
        Values::F32(_) => {
            let mut flat = vec![padding.value as f32; total];
            for (k, (_, r)) in items.iter().enumerate() {
                if let Values::F32(src) = &r.fields[name].values {
                    flat[k * row..k * row + src.len()].copy_from_slice(src);
                }
            }
            Tensor::from_slice(&flat)
        }
        // Refused above.
        Values::Bytes(_) => return Err(Error::invalid(stage, format!("field {name:?} holds bytes"))),
    };
    let values = values.f_view(shape.as_slice()).ctx(stage)?;
    Ok(PaddedField { values, lengths: lengths.iter().map(|&l| l as i64).collect() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Array;

    fn seqs(lengths: &[usize]) -> Dataset<Record> {
        let records: Vec<Record> = lengths
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                Record::new()
                    .with("tokens", Array::ids((1..=n as i64).map(|t| t + 10 * i as i64).collect()))
                    .with("label", Array::scalar_i64(i as i64))
            })
            .collect();
        Dataset::from_vec(records)
    }

    fn i64s(t: &Tensor) -> Vec<i64> {
        Vec::<i64>::try_from(t.flatten(0, -1)).unwrap()
    }

    #[test]
    fn pads_to_the_longest_with_lengths_beside() {
        let config = PaddedBatchConfig::new().field("tokens", PadLength::Longest, -1.0);
        let batches = seqs(&[2, 3, 1]).padded_batch(2, config).unwrap().collect().unwrap();
        assert_eq!(batches.len(), 2);
        let t = batches[0].get("tokens").unwrap();
        assert_eq!(t.values.size(), [2, 3]);
        assert_eq!(i64s(&t.values), [1, 2, -1, 11, 12, 13]);
        assert_eq!(t.lengths, [2, 3]);
        assert_eq!(i64s(&t.lengths_tensor()), [2, 3]);
        assert_eq!(i64s(&batches[0].get("label").unwrap().values), [0, 1]);
        let last = batches[1].get("tokens").unwrap();
        assert_eq!((last.values.size(), i64s(&last.values)), (vec![1, 1], vec![21]));
    }

    #[test]
    fn fixed_and_multiple_lengths_and_float_fields() {
        let config = PaddedBatchConfig::new().field("tokens", PadLength::MultipleOf(4), 0.0);
        let b = &seqs(&[5, 2]).padded_batch(2, config).unwrap().collect().unwrap()[0];
        assert_eq!(b.get("tokens").unwrap().values.size(), [2, 8]);
        let config = PaddedBatchConfig::new().field("tokens", PadLength::Fixed(4), 0.0);
        let e = seqs(&[2, 5]).padded_batch(2, config).unwrap().collect().unwrap_err();
        assert_eq!(
            e.to_string(),
            "padded_batch: element 1: field \"tokens\" has length 5, longer than its padded length 4"
        );
        let frames = Dataset::from_vec(vec![
            Record::new().with("x", Array::new(Values::F32(vec![1.0, 2.0]), vec![1, 2]).unwrap()),
            Record::new().with("x", Array::new(Values::F32(vec![3.0, 4.0, 5.0, 6.0]), vec![2, 2]).unwrap()),
        ]);
        let config = PaddedBatchConfig::new().field("x", PadLength::Longest, 0.5);
        let b = &frames.padded_batch(2, config).unwrap().collect().unwrap()[0];
        let x = b.get("x").unwrap();
        assert_eq!(x.values.size(), [2, 2, 2]);
        assert_eq!(
            Vec::<f32>::try_from(x.values.flatten(0, -1)).unwrap(),
            [1.0, 2.0, 0.5, 0.5, 3.0, 4.0, 5.0, 6.0]
        );
        assert_eq!((x.real_steps(), x.padded_steps()), (3, 4));
    }

    #[test]
    fn bad_elements_are_named() {
        let mut records: Vec<Record> =
            (0..20).map(|i| Record::new().with("tokens", Array::ids(vec![i; 3]))).collect();
        records[17] = Record::new().with("tokens", Array::new(Values::I64(vec![1, 2]), vec![1, 2]).unwrap());
        let e = Dataset::from_vec(records)
            .padded_batch(4, PaddedBatchConfig::new())
            .unwrap()
            .collect()
            .unwrap_err();
        assert_eq!(e.to_string(), "padded_batch: element 17: field \"tokens\" has rank 2, expected 1");
        let mixed = Dataset::from_vec(vec![
            Record::new().with("tokens", Array::ids(vec![1])),
            Record::new().with("other", Array::ids(vec![1])),
        ]);
        let e = mixed.padded_batch(2, PaddedBatchConfig::new()).unwrap().collect().unwrap_err();
        assert_eq!(
            e.to_string(),
            "padded_batch: element 1: has fields [other], expected [tokens] (as element 0)"
        );
        let config = PaddedBatchConfig::new().field("tokens", PadLength::Longest, 0.5);
        let e = seqs(&[1]).padded_batch(1, config).unwrap().collect().unwrap_err();
        assert!(e.to_string().contains("pad value 0.5 is not an integer"), "{e}");
        assert!(seqs(&[1]).padded_batch(0, PaddedBatchConfig::new()).is_err());
        assert!(seqs(&[1])
            .padded_batch(1, PaddedBatchConfig::new().field("t", PadLength::MultipleOf(0), 0.0))
            .is_err());
        assert!(seqs(&[1])
            .padded_batch(1, PaddedBatchConfig::new().field("t", PadLength::Longest, f64::NAN))
            .is_err());
    }

    #[test]
    fn the_report_counts_real_over_padded_steps() {
        let ds = seqs(&[1, 3, 2, 2]).padded_batch(2, PaddedBatchConfig::new()).unwrap();
        let r = ds.padding_report("tokens").unwrap();
        // Batches [1, 3] -> 2 x 3 = 6 padded, 4 real; [2, 2] -> 4 padded, 4 real.
        assert_eq!((r.real, r.padded, r.batches), (8, 10, 2));
        assert!((r.padding_fraction() - 0.2).abs() < 1e-12);
    }
}
