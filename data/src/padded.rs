//! [`Dataset::padded_batch`]: batches of [`Record`]s with every sequence field padded, and the
//! padding report.

use crate::dataset::{element_error, Dataset};
use crate::record::{Record, Values};
use couplet_modules::{Error, Result, TorchContext};
use std::collections::BTreeMap;
use tch::Tensor;

/// The padded length of one dimension of a field in a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PadLength {
    /// The longest size of that dimension in the batch (TF's `None` in `padded_shapes`). The
    /// default.
    #[default]
    Longest,
    /// Exactly this size; a larger element is an error.
    Fixed(usize),
    /// The longest size rounded up to a multiple of `k > 0` (friendlier to fused kernels).
    MultipleOf(usize),
}

/// How one field is padded: `lengths[d]` is dimension `d`'s padded length (`lengths[0]` the
/// time dimension); dimensions past the list pad to [`PadLength::Longest`]. Default: every
/// dimension to the longest, pad value 0.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct FieldPadding {
    /// The padded lengths, one per leading dimension (at most the field's rank).
    pub lengths: Vec<PadLength>,
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

    /// Sets field `name`'s pad value and the padded length of its first (time) dimension;
    /// its other dimensions pad to the longest.
    pub fn field(self, name: &str, length: PadLength, value: f64) -> Self {
        self.field_dims(name, vec![length], value)
    }

    /// Sets field `name`'s pad value and the padded lengths of its leading dimensions
    /// (`lengths[d]` for dimension `d`, e.g. `[Longest, MultipleOf(8)]` for frames `[T, F]`);
    /// dimensions past the list pad to the longest.
    pub fn field_dims(mut self, name: &str, lengths: Vec<PadLength>, value: f64) -> Self {
        self.fields.insert(name.to_string(), FieldPadding { lengths, value });
        self
    }

    /// Sets `drop_remainder`.
    pub fn drop_remainder(mut self, drop: bool) -> Self {
        self.drop_remainder = drop;
        self
    }

    pub(crate) fn check(&self, stage: &str) -> Result<()> {
        for (name, f) in &self.fields {
            if let Some(d) = f.lengths.iter().position(|&l| l == PadLength::MultipleOf(0)) {
                return Err(Error::config(
                    stage,
                    format!("field {name:?}: dimension {d}: MultipleOf(k) needs k > 0"),
                ));
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
    /// Batches `batch_size` records and pads every field (TF's `padded_batch`): a field of
    /// rank `r >= 1` (first dimension = time) becomes `[B, T, D1, ..]`, every dimension padded
    /// to its [`PadLength`] (by default the longest in the batch, so frames `[T, F]` with
    /// variable `T` and `F` pad both) with the field's pad value, with the lengths `[B]` (the
    /// first dimension's sizes) beside it; a scalar field becomes `[B]`. `int64` fields give
    /// `Int64` tensors, `float` fields `Float`. Every element must have the same fields, kinds
    /// and ranks as the batch's first.
    ///
    /// # Errors
    /// [`Error::Config`] for a zero batch size, `MultipleOf(0)` or a non-finite pad value.
    /// While iterating, an `Err` naming the element and the field, e.g.
    /// `"padded_batch: element 17: field \"tokens\" has rank 2 (shape [1, 2]), expected 1 (shape [3] in element 16)"`
    /// (also a missing field, another kind, a `bytes` field, a shape that does not hold its
    /// values, a dimension larger than its `Fixed(n)`, padding for more dimensions than the
    /// rank, a fractional pad value for an `int64` field).
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
        let mut padding = config.fields.get(name).cloned().unwrap_or_default();
        if let Some(b) = bucket_length {
            match padding.lengths.first_mut() {
                None => padding.lengths.push(PadLength::Fixed(b)),
                Some(first @ PadLength::Longest) => *first = PadLength::Fixed(b),
                Some(_) => {}
            }
        }
        fields.insert(name.clone(), pad_field(stage, items, name, &padding)?);
    }
    Ok(PaddedBatch { fields, size: items.len() })
}

/// Pads field `name` of every record: every dimension to its [`PadLength`].
fn pad_field(
    stage: &str,
    items: &[(u64, Record)],
    name: &str,
    padding: &FieldPadding,
) -> Result<PaddedField> {
    let (first_index, first) = (&items[0].0, &items[0].1.fields[name]);
    let rank = first.rank();
    if padding.lengths.len() > rank.max(1) {
        return Err(element_error(
            stage,
            *first_index,
            format!(
                "field {name:?} has rank {rank} (shape {:?}), but its padding names {} dimensions",
                first.shape,
                padding.lengths.len()
            ),
        ));
    }
    // The longest size of every dimension.
    let mut longest = vec![0usize; rank];
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
                format!(
                    "field {name:?} has rank {} (shape {:?}), expected {rank} (shape {:?} in element {first_index})",
                    a.rank(),
                    a.shape,
                    first.shape
                ),
            ));
        }
        if a.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)) != Some(a.values.len()) {
            return Err(element_error(
                stage,
                *i,
                format!("field {name:?} has shape {:?} but {} values", a.shape, a.values.len()),
            ));
        }
        for (l, &d) in longest.iter_mut().zip(&a.shape) {
            *l = (*l).max(d);
        }
    }
    // The padded shape of one element.
    let mut target = Vec::with_capacity(rank);
    for (d, &most) in longest.iter().enumerate() {
        let t = match padding.lengths.get(d).copied().unwrap_or_default() {
            PadLength::Longest => most,
            PadLength::Fixed(n) => {
                if let Some((i, r)) = items.iter().find(|(_, r)| r.fields[name].shape[d] > n) {
                    let shape = &r.fields[name].shape;
                    return Err(element_error(
                        stage,
                        *i,
                        format!(
                            "field {name:?} has shape {shape:?}: dimension {d} has size {}, more than its padded length {n}",
                            shape[d]
                        ),
                    ));
                }
                n
            }
            PadLength::MultipleOf(k) => most
                .div_ceil(k)
                .checked_mul(k)
                .ok_or_else(|| Error::invalid(stage, format!("field {name:?}: padded length overflows")))?,
        };
        target.push(t);
    }
    let b = items.len();
    let row = target
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| Error::invalid(stage, format!("field {name:?}: padded shape {target:?} overflows")))?;
    let total = b.checked_mul(row).ok_or_else(|| {
        Error::invalid(stage, format!("field {name:?}: a batch of {b} x {target:?} values overflows"))
    })?;
    let mut shape: Vec<i64> = vec![b as i64];
    shape.extend(target.iter().map(|&d| d as i64));
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
                let a = &r.fields[name];
                if let Values::I64(src) = &a.values {
                    place(&mut flat[k * row..(k + 1) * row], src, &a.shape, &target);
                }
            }
            Tensor::from_slice(&flat)
        }
        Values::F32(_) => {
            let mut flat = vec![padding.value as f32; total];
            for (k, (_, r)) in items.iter().enumerate() {
                let a = &r.fields[name];
                if let Values::F32(src) = &a.values {
                    place(&mut flat[k * row..(k + 1) * row], src, &a.shape, &target);
                }
            }
            Tensor::from_slice(&flat)
        }
        // Refused above.
        Values::Bytes(_) => return Err(Error::invalid(stage, format!("field {name:?} holds bytes"))),
    };
    let values = values.f_view(shape.as_slice()).ctx(stage)?;
    let lengths = items.iter().map(|(_, r)| r.fields[name].shape.first().map_or(1, |&l| l as i64)).collect();
    Ok(PaddedField { values, lengths })
}

/// Copies `src` (row-major, `shape`) into the front corner of `dst` (row-major, `target`,
/// every `shape[d] <= target[d]`, as checked by the caller), leaving the rest as it is.
fn place<T: Copy>(dst: &mut [T], src: &[T], shape: &[usize], target: &[usize]) {
    let rank = shape.len();
    // Only the first dimension differs (or none): one contiguous copy.
    if rank <= 1 || shape[1..] == target[1..] {
        dst[..src.len()].copy_from_slice(src);
        return;
    }
    let width = shape[rank - 1];
    if width == 0 {
        return;
    }
    // Walk the rows (every index but the last) of `src` with a multi-index.
    let mut index = vec![0usize; rank - 1];
    for chunk in src.chunks_exact(width) {
        let offset = index.iter().zip(&target[..rank - 1]).fold(0, |o, (&i, &t)| o * t + i);
        let offset = offset * target[rank - 1];
        dst[offset..offset + width].copy_from_slice(chunk);
        for d in (0..rank - 1).rev() {
            index[d] += 1;
            if index[d] < shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
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
            "padded_batch: element 1: field \"tokens\" has shape [5]: dimension 0 has size 5, more than its padded length 4"
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

    fn array_i64(values: Vec<i64>, shape: Vec<usize>) -> Array {
        Array::new(Values::I64(values), shape).unwrap()
    }

    /// Frames `[T, F]` with variable `T` and `F`: `a` is `[2, 1]`, `b` is `[1, 3]`.
    fn frames() -> Dataset<Record> {
        Dataset::from_vec(vec![
            Record::new().with("x", array_i64(vec![1, 2], vec![2, 1])),
            Record::new().with("x", array_i64(vec![3, 4, 5], vec![1, 3])),
        ])
    }

    #[test]
    fn every_variable_dimension_pads() {
        let config = PaddedBatchConfig::new().field("x", PadLength::Longest, -1.0);
        let b = &frames().padded_batch(2, config).unwrap().collect().unwrap()[0];
        let x = b.get("x").unwrap();
        // a = [[1], [2]] -> [[1, -1, -1], [2, -1, -1]]; b = [[3, 4, 5]] -> [[3, 4, 5], [-1, -1, -1]].
        assert_eq!(x.values.size(), [2, 2, 3]);
        assert_eq!(i64s(&x.values), [1, -1, -1, 2, -1, -1, 3, 4, 5, -1, -1, -1]);
        assert_eq!(x.lengths, [2, 1]);
        assert_eq!((x.real_steps(), x.padded_steps()), (3, 4));

        let config = PaddedBatchConfig::new().field_dims(
            "x",
            vec![PadLength::Fixed(3), PadLength::MultipleOf(2)],
            0.0,
        );
        let b = &frames().padded_batch(2, config).unwrap().collect().unwrap()[0];
        let x = b.get("x").unwrap();
        assert_eq!(x.values.size(), [2, 3, 4]);
        #[rustfmt::skip]
        assert_eq!(i64s(&x.values), [
            1, 0, 0, 0,  2, 0, 0, 0,  0, 0, 0, 0,
            3, 4, 5, 0,  0, 0, 0, 0,  0, 0, 0, 0,
        ]);

        // Rank 3: [1, 2, 2] and [2, 1, 3] pad to [2, 2, 3].
        let cubes = Dataset::from_vec(vec![
            Record::new()
                .with("c", Array::new(Values::F32(vec![1.0, 2.0, 3.0, 4.0]), vec![1, 2, 2]).unwrap()),
            Record::new().with(
                "c",
                Array::new(Values::F32(vec![5.0, 6.0, 7.0, 8.0, 9.0, 10.0]), vec![2, 1, 3]).unwrap(),
            ),
        ]);
        let b = &cubes.padded_batch(2, PaddedBatchConfig::new()).unwrap().collect().unwrap()[0];
        let c = b.get("c").unwrap();
        assert_eq!(c.values.size(), [2, 2, 2, 3]);
        #[rustfmt::skip]
        assert_eq!(Vec::<f32>::try_from(c.values.flatten(0, -1)).unwrap(), [
            1.0, 2.0, 0.0,  3.0, 4.0, 0.0,   0.0, 0.0, 0.0,  0.0, 0.0, 0.0,
            5.0, 6.0, 7.0,  0.0, 0.0, 0.0,   8.0, 9.0, 10.0, 0.0, 0.0, 0.0,
        ]);
        assert_eq!(c.lengths, [1, 2]);
    }

    #[test]
    fn inner_dimension_errors_name_the_element_and_shape() {
        let config =
            PaddedBatchConfig::new().field_dims("x", vec![PadLength::Longest, PadLength::Fixed(2)], 0.0);
        let e = frames().padded_batch(2, config).unwrap().collect().unwrap_err();
        assert_eq!(
            e.to_string(),
            "padded_batch: element 1: field \"x\" has shape [1, 3]: dimension 1 has size 3, more than its padded length 2"
        );
        let config = PaddedBatchConfig::new().field_dims("x", vec![PadLength::Longest; 3], 0.0);
        let e = frames().padded_batch(2, config).unwrap().collect().unwrap_err();
        assert_eq!(
            e.to_string(),
            "padded_batch: element 0: field \"x\" has rank 2 (shape [2, 1]), but its padding names 3 dimensions"
        );
        let bad = Dataset::from_vec(vec![
            Record::new().with("x", Array { values: Values::I64(vec![1]), shape: vec![2] })
        ]);
        let e = bad.padded_batch(1, PaddedBatchConfig::new()).unwrap().collect().unwrap_err();
        assert_eq!(e.to_string(), "padded_batch: element 0: field \"x\" has shape [2] but 1 values");
        let config =
            PaddedBatchConfig::new().field_dims("x", vec![PadLength::Longest, PadLength::MultipleOf(0)], 0.0);
        let e = frames().padded_batch(2, config).unwrap_err();
        assert!(e.to_string().contains("field \"x\": dimension 1: MultipleOf(k) needs k > 0"), "{e}");
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
        assert_eq!(
            e.to_string(),
            "padded_batch: element 17: field \"tokens\" has rank 2 (shape [1, 2]), expected 1 (shape [3] in element 16)"
        );
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
