//! Dense views of categorical columns: indicator (multi-hot) and embedding.

use super::{record_error, scatter_rows, CategoricalColumn, DenseColumn};
use crate::record::Record;
use couplet_modules::{Embed, EmbedConfig, Error, Result, Scope, TorchContext};
use std::sync::Arc;
use tch::{Kind, Tensor};

/// Checks that the ids of `ids` are below `n` (negative ids are dropped by the callers).
fn check_ids(column: &str, index: usize, ids: &[(i64, f32)], n: u64) -> Result<()> {
    match ids.iter().find(|&&(id, _)| id >= 0 && id as u64 >= n) {
        Some((id, _)) => Err(record_error(column, index, format!("id {id} is out of range 0..{n}"))),
        None => Ok(()),
    }
}

/// The multi-hot (counts) of a categorical column, `[B, num_buckets]` (TF's
/// `indicator_column`: a repeated id counts twice; negative ids are dropped). Over a
/// [`super::WeightedCategoricalColumn`], each id's weights are summed instead of counted.
#[derive(Clone)]
pub struct IndicatorColumn {
    categorical: Arc<dyn CategoricalColumn>,
}

impl IndicatorColumn {
    /// The indicator of `categorical`.
    ///
    /// # Errors
    /// [`Error::Config`] if the column has over 2^24 ids (a dense `[B, n]` of that is a mistake).
    pub fn new(categorical: Arc<dyn CategoricalColumn>) -> Result<Self> {
        if categorical.num_buckets() > 1 << 24 {
            return Err(Error::config(
                "indicator_column",
                format!(
                    "{} has {} ids; use an embedding column",
                    categorical.name(),
                    categorical.num_buckets()
                ),
            ));
        }
        Ok(IndicatorColumn { categorical })
    }
}

impl DenseColumn for IndicatorColumn {
    fn name(&self) -> String {
        format!("{}_indicator", self.categorical.name())
    }
    fn dimension(&self) -> usize {
        self.categorical.num_buckets() as usize
    }
    fn dense(&self, records: &[Record]) -> Result<Tensor> {
        let name = self.name();
        scatter_rows(&name, records, self.dimension(), |i, r| {
            let ids = self.categorical.weighted_ids(r)?;
            check_ids(&name, i, &ids, self.categorical.num_buckets())?;
            Ok(ids.into_iter().filter(|&(id, _)| id >= 0).map(|(id, w)| (id as usize, w)).collect())
        })
    }
}

/// How an [`EmbeddingColumn`] combines the vectors of a multivalent record (with weights
/// `w_k`, all 1 unless the column is a [`super::WeightedCategoricalColumn`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Combiner {
    /// The weighted sum `sum_k w_k e_k`.
    Sum,
    /// The weighted mean `sum_k w_k e_k / sum_k w_k` (TF's default).
    #[default]
    Mean,
    /// `sum_k w_k e_k / sqrt(sum_k w_k^2)` (with unit weights: the sum over the square root
    /// of the number of ids).
    Sqrtn,
}

/// An embedding of a categorical column (TF's `embedding_column`): an [`Embed`] of
/// `num_buckets x dimension` whose rows for a record's ids are combined, `[B, dimension]`
/// (zeros for a record with no ids). `Mean` and `Sqrtn` drop ids of weight `<= 0` first
/// (TF's `safe_embedding_lookup_sparse`). Trains like any couplet module.
pub struct EmbeddingColumn {
    categorical: Arc<dyn CategoricalColumn>,
    embed: Embed,
    combiner: Combiner,
}

impl EmbeddingColumn {
    /// Builds the embedding (variable `embeddings [num_buckets, dimension]`) in a child scope
    /// named after the column under `parent`.
    ///
    /// # Errors
    /// As [`Embed::new`] (a zero dimension).
    pub fn new(
        parent: &Scope,
        categorical: Arc<dyn CategoricalColumn>,
        dimension: i64,
        combiner: Combiner,
    ) -> Result<Self> {
        let n = i64::try_from(categorical.num_buckets())
            .map_err(|_| Error::config("embedding_column", "too many ids"))?;
        let embed = Embed::named(
            parent,
            &format!("{}_embedding", categorical.name()),
            EmbedConfig::new(n, dimension),
        )?;
        Ok(EmbeddingColumn { categorical, embed, combiner })
    }

    /// The embedding module.
    pub fn embed(&self) -> &Embed {
        &self.embed
    }
}

impl DenseColumn for EmbeddingColumn {
    fn name(&self) -> String {
        format!("{}_embedding", self.categorical.name())
    }
    fn dimension(&self) -> usize {
        self.embed.config().embed_dim as usize
    }
    fn dense(&self, records: &[Record]) -> Result<Tensor> {
        let name = self.name();
        let (mut ids, mut rows, mut weights) = (Vec::new(), Vec::new(), Vec::new());
        // Per record: the sum of the weights and of their squares.
        let mut totals = vec![(0f32, 0f32); records.len()];
        for (i, r) in records.iter().enumerate() {
            let own = self.categorical.weighted_ids(r)?;
            check_ids(&name, i, &own, self.categorical.num_buckets())?;
            let kept =
                own.into_iter().filter(|&(id, w)| id >= 0 && (self.combiner == Combiner::Sum || w > 0.0));
            for (id, w) in kept {
                ids.push(id);
                rows.push(i as i64);
                weights.push(w);
                totals[i].0 += w;
                totals[i].1 += w * w;
            }
        }
        let d = self.dimension() as i64;
        let vectors = self.embed.forward(&Tensor::from_slice(&ids))?;
        let device = vectors.device();
        let weights =
            Tensor::from_slice(&weights).f_to_device(device).ctx(&name)?.f_unsqueeze(1).ctx(&name)?;
        let weighted = vectors.f_to_kind(Kind::Float).ctx(&name)?.f_mul(&weights).ctx(&name)?;
        let zeros = Tensor::f_zeros([records.len() as i64, d], (Kind::Float, device)).ctx(&name)?;
        let rows = Tensor::from_slice(&rows).f_to_device(device).ctx(&name)?;
        let sums = zeros.f_index_add(0, &rows, &weighted).ctx(&name)?;
        let scale: Vec<f32> = totals
            .iter()
            .map(|&(sum, squares)| match self.combiner {
                Combiner::Sum => 1.0,
                Combiner::Mean if sum > 0.0 => 1.0 / sum,
                Combiner::Sqrtn if squares > 0.0 => 1.0 / squares.sqrt(),
                // No ids left: the sums are zeros.
                Combiner::Mean | Combiner::Sqrtn => 1.0,
            })
            .collect();
        let scale = Tensor::from_slice(&scale).f_to_device(device).ctx(&name)?.f_unsqueeze(1).ctx(&name)?;
        sums.f_mul(&scale).ctx(&name)
    }
}
