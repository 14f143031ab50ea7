//! Numeric and bucketized columns.

use super::{record_error, scatter_rows, CategoricalColumn, DenseColumn};
use crate::record::{Record, Values};
use couplet_modules::{Error, Result};
use std::sync::Arc;
use tch::Tensor;

/// A normaliser applied to each value of a [`NumericColumn`] (TF's `normalizer_fn`).
pub type Normalizer = Arc<dyn Fn(f32) -> f32 + Send + Sync>;

/// A numeric feature of `shape` (TF's `numeric_column`): the field's values (int64 or float)
/// as floats, normalised, `[B, prod(shape)]`.
#[derive(Clone)]
pub struct NumericColumn {
    key: String,
    shape: Vec<usize>,
    default_value: Option<f32>,
    normalizer: Option<Normalizer>,
}

impl NumericColumn {
    /// A column of field `key` with `shape` (`&[1]` for a scalar feature).
    ///
    /// # Errors
    /// [`Error::Config`] for an empty key or a shape with a zero (or overflowing) size.
    pub fn new(key: &str, shape: &[usize]) -> Result<Self> {
        let size = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if key.is_empty() || !matches!(size, Some(n) if n > 0) {
            return Err(Error::config(
                "numeric_column",
                format!("needs a key and a non-empty shape, got {key:?} and {shape:?}"),
            ));
        }
        Ok(NumericColumn {
            key: key.to_string(),
            shape: shape.to_vec(),
            default_value: None,
            normalizer: None,
        })
    }

    /// Fills every value of a record that lacks the field with `value` (TF's `default_value`).
    pub fn with_default(mut self, value: f32) -> Self {
        self.default_value = Some(value);
        self
    }

    /// Applies `f` to every value (e.g. `|x| (x - mean) / std`).
    pub fn with_normalizer(mut self, f: impl Fn(f32) -> f32 + Send + Sync + 'static) -> Self {
        self.normalizer = Some(Arc::new(f));
        self
    }

    /// The key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The values of one record (normalised).
    pub(crate) fn values(&self, index: usize, record: &Record) -> Result<Vec<f32>> {
        let n = self.dimension();
        let raw: Vec<f32> = match (record.fields.get(&self.key), self.default_value) {
            (None, Some(d)) => vec![d; n],
            (None, None) => {
                return Err(record_error(
                    &self.key,
                    index,
                    format!("no field {:?} and no default value", self.key),
                ))
            }
            (Some(a), _) => match &a.values {
                Values::F32(v) => v.clone(),
                Values::I64(v) => v.iter().map(|&x| x as f32).collect(),
                Values::Bytes(_) => {
                    return Err(record_error(&self.key, index, "is bytes, expected int64 or float"))
                }
            },
        };
        if raw.len() != n {
            return Err(record_error(
                &self.key,
                index,
                format!("has {} values, the column's shape {:?} holds {n}", raw.len(), self.shape),
            ));
        }
        Ok(match &self.normalizer {
            Some(f) => raw.into_iter().map(|x| f(x)).collect(),
            None => raw,
        })
    }
}

impl DenseColumn for NumericColumn {
    fn name(&self) -> String {
        self.key.clone()
    }
    fn dimension(&self) -> usize {
        self.shape.iter().product()
    }
    fn dense(&self, records: &[Record]) -> Result<Tensor> {
        scatter_rows(&self.key, records, self.dimension(), |i, r| {
            Ok(self.values(i, r)?.into_iter().enumerate().collect())
        })
    }
}

/// A numeric column cut by `boundaries` (TF's `bucketized_column`): value `x` of dimension `j`
/// falls in bucket `b` = the number of boundaries `<= x`, and its id is `b + j * (len + 1)`.
/// As a dense column it is the one-hot of those ids, `[B, (len + 1) * dimension]`.
#[derive(Clone)]
pub struct BucketizedColumn {
    source: NumericColumn,
    boundaries: Vec<f32>,
}

impl BucketizedColumn {
    /// Buckets `source` by `boundaries`.
    ///
    /// # Errors
    /// [`Error::Config`] unless the boundaries are finite and strictly increase.
    pub fn new(source: NumericColumn, boundaries: Vec<f32>) -> Result<Self> {
        if boundaries.is_empty()
            || boundaries.iter().any(|b| !b.is_finite())
            || boundaries.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(Error::config(
                "bucketized_column",
                format!("boundaries must be finite and strictly increasing, got {boundaries:?}"),
            ));
        }
        Ok(BucketizedColumn { source, boundaries })
    }
}

impl CategoricalColumn for BucketizedColumn {
    fn name(&self) -> String {
        format!("{}_bucketized", self.source.key)
    }
    fn num_buckets(&self) -> u64 {
        ((self.boundaries.len() + 1) * self.source.dimension()) as u64
    }
    fn ids(&self, record: &Record) -> Result<Vec<i64>> {
        self.ids_at(0, record)
    }
}

impl BucketizedColumn {
    fn ids_at(&self, index: usize, record: &Record) -> Result<Vec<i64>> {
        let per = self.boundaries.len() + 1;
        Ok(self
            .source
            .values(index, record)?
            .into_iter()
            .enumerate()
            .map(|(j, x)| (self.boundaries.partition_point(|&b| b <= x) + j * per) as i64)
            .collect())
    }
}

impl DenseColumn for BucketizedColumn {
    fn name(&self) -> String {
        CategoricalColumn::name(self)
    }
    fn dimension(&self) -> usize {
        self.num_buckets() as usize
    }
    fn dense(&self, records: &[Record]) -> Result<Tensor> {
        scatter_rows(&DenseColumn::name(self), records, self.dimension(), |i, r| {
            Ok(self.ids_at(i, r)?.into_iter().map(|id| (id as usize, 1.0)).collect())
        })
    }
}
