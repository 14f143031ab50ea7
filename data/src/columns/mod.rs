//! Feature columns (TF's `tf.feature_column`): turn the raw fields of a batch of [`Record`]s
//! into model inputs. [`CategoricalColumn`]s give each record a list of ids; [`DenseColumn`]s
//! give a float tensor `[B, dimension]`; [`input_layer`] concatenates dense columns.
//!
//! As in TF, a negative id (an unknown value with no default) is dropped by the indicator and
//! embedding columns, and `input_layer` orders its columns by name.

mod categorical;
mod crossed;
mod dense;
mod numeric;
mod weighted;

pub use categorical::{HashBucketColumn, IdentityColumn, VocabularyColumn};
pub use crossed::{CrossKey, CrossedColumn};
pub use dense::{Combiner, EmbeddingColumn, IndicatorColumn};
pub use numeric::{BucketizedColumn, NumericColumn};
pub use weighted::WeightedCategoricalColumn;

use crate::record::{Record, Values};
use couplet_modules::{Error, Result, TorchContext};
use tch::Tensor;

/// A column that maps a record to ids in `0..num_buckets()` (negative ids mean "none").
pub trait CategoricalColumn: Send + Sync {
    /// The column's name (its key, or a derived name).
    fn name(&self) -> String;
    /// The number of ids.
    fn num_buckets(&self) -> u64;
    /// The ids of one record (a multivalent feature has several).
    ///
    /// # Errors
    /// A missing field, a value of the wrong kind, an id out of range without a default.
    fn ids(&self, record: &Record) -> Result<Vec<i64>>;
    /// The ids of one record with their weights, what the indicator and embedding columns
    /// read: weight 1 for each id, except for a [`WeightedCategoricalColumn`].
    ///
    /// # Errors
    /// As [`CategoricalColumn::ids`]; a weighted column's weight errors.
    fn weighted_ids(&self, record: &Record) -> Result<Vec<(i64, f32)>> {
        Ok(self.ids(record)?.into_iter().map(|id| (id, 1.0)).collect())
    }
}

/// A column that maps a batch of records to floats `[B, dimension()]`.
pub trait DenseColumn: Send {
    /// The column's name.
    fn name(&self) -> String;
    /// The number of floats per record.
    fn dimension(&self) -> usize;
    /// The batch's values `[B, dimension]` (`Float`).
    ///
    /// # Errors
    /// The column's errors, naming the column and the record's index in the batch.
    fn dense(&self, records: &[Record]) -> Result<Tensor>;
}

/// Concatenates the dense columns' outputs for a batch into `[B, sum of dimensions]`, the
/// columns ordered by name as TF's `input_layer` does.
///
/// # Errors
/// [`Error::Config`] for no columns; each column's errors.
pub fn input_layer(columns: &[&dyn DenseColumn], records: &[Record]) -> Result<Tensor> {
    if columns.is_empty() {
        return Err(Error::config("input_layer", "needs at least one column"));
    }
    let mut sorted: Vec<&&dyn DenseColumn> = columns.iter().collect();
    sorted.sort_by_key(|c| c.name());
    let parts = sorted.iter().map(|c| c.dense(records)).collect::<Result<Vec<_>>>()?;
    Tensor::f_cat(&parts, 1).ctx("input_layer")
}

/// The error of a column at a record: `"{column}: record {i}: {message}"`.
pub(crate) fn record_error(column: &str, index: usize, message: impl std::fmt::Display) -> Error {
    Error::invalid(column, format!("record {index}: {message}"))
}

/// The values of field `key` as strings: bytes as UTF-8 (lossy), integers in decimal (as TF
/// hashes integer features through `as_string`).
pub(crate) fn string_values(column: &str, record: &Record, key: &str) -> Result<Vec<String>> {
    Ok(match &record.field(column, key)?.values {
        Values::Bytes(v) => v.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect(),
        Values::I64(v) => v.iter().map(i64::to_string).collect(),
        Values::F32(_) => {
            return Err(Error::invalid(column, format!("field {key:?} is float, expected bytes or int64")))
        }
    })
}

/// Builds `[B, width]` floats with `rows(i)` giving `(position, value)` pairs added at row `i`.
pub(crate) fn scatter_rows(
    column: &str,
    records: &[Record],
    width: usize,
    rows: impl Fn(usize, &Record) -> Result<Vec<(usize, f32)>>,
) -> Result<Tensor> {
    let total =
        records.len().checked_mul(width).ok_or_else(|| Error::invalid(column, "batch size overflows"))?;
    let mut flat = vec![0f32; total];
    for (i, r) in records.iter().enumerate() {
        for (pos, v) in rows(i, r)? {
            flat[i * width + pos] += v;
        }
    }
    Tensor::from_slice(&flat).f_view([records.len() as i64, width as i64]).ctx(column)
}

#[cfg(test)]
mod tests;
