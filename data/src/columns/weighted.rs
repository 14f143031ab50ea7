//! Weighted categorical columns: ids with a weight each, as TF's `weighted_categorical_column`.

use super::CategoricalColumn;
use crate::record::{Record, Values};
use couplet_modules::{Error, Result};
use std::sync::Arc;

/// The ids of a categorical column paired with per-id weights from a float field (TF's
/// `weighted_categorical_column(categorical_column, weight_feature_key)`): a record whose
/// ids are `[i0, i1, ..]` has weights `[w0, w1, ..]` in field `weight_key`, one per id.
///
/// [`super::IndicatorColumn`] sums the weights of each id (a repeated id adds its weights);
/// [`super::EmbeddingColumn`] combines `sum_k w_k * e(i_k)` by [`super::Combiner`]: `Sum` as
/// is, `Mean` divided by `sum_k w_k`, `Sqrtn` by `sqrt(sum_k w_k^2)`, where `Mean` and
/// `Sqrtn` first drop the ids whose weight is `<= 0` (TF's `safe_embedding_lookup_sparse`).
/// Negative ids are dropped with their weights. Other uses (e.g. a [`super::CrossedColumn`]
/// key) see only the ids.
#[derive(Clone)]
pub struct WeightedCategoricalColumn {
    categorical: Arc<dyn CategoricalColumn>,
    weight_key: String,
}

impl WeightedCategoricalColumn {
    /// Weights the ids of `categorical` by field `weight_key` (`float`, one per id).
    pub fn new(categorical: Arc<dyn CategoricalColumn>, weight_key: &str) -> Self {
        WeightedCategoricalColumn { categorical, weight_key: weight_key.to_string() }
    }
}

impl CategoricalColumn for WeightedCategoricalColumn {
    /// `"{categorical}_weighted_by_{weight_key}"`, TF's name.
    fn name(&self) -> String {
        format!("{}_weighted_by_{}", self.categorical.name(), self.weight_key)
    }
    fn num_buckets(&self) -> u64 {
        self.categorical.num_buckets()
    }
    fn ids(&self, record: &Record) -> Result<Vec<i64>> {
        self.categorical.ids(record)
    }
    /// # Errors
    /// The categorical column's errors; a missing weight field, one that is not `float`, a
    /// number of weights other than the number of ids, a non-finite weight.
    fn weighted_ids(&self, record: &Record) -> Result<Vec<(i64, f32)>> {
        let name = self.name();
        let ids = self.categorical.ids(record)?;
        let field = record.field(&name, &self.weight_key)?;
        let Values::F32(weights) = &field.values else {
            return Err(Error::invalid(
                &name,
                format!("weight field {:?} is {}, expected float", self.weight_key, field.values.kind_name()),
            ));
        };
        if weights.len() != ids.len() {
            return Err(Error::invalid(
                &name,
                format!(
                    "weight field {:?} has {} values (shape {:?}) for {} ids",
                    self.weight_key,
                    weights.len(),
                    field.shape,
                    ids.len()
                ),
            ));
        }
        if let Some(w) = weights.iter().find(|w| !w.is_finite()) {
            return Err(Error::invalid(&name, format!("weight field {:?} holds {w}", self.weight_key)));
        }
        Ok(ids.into_iter().zip(weights.iter().copied()).collect())
    }
}
