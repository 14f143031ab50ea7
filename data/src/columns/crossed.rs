//! Crossed columns: hashed feature crosses, as TF's `crossed_column` / `sparse.cross_hashed`.

use super::{string_values, CategoricalColumn};
use crate::hash::{fingerprint64, fingerprint_cat64};
use crate::record::{Record, Values};
use couplet_modules::{Error, Result};
use std::sync::Arc;

/// One input of a [`CrossedColumn`].
#[derive(Clone)]
pub enum CrossKey {
    /// A raw field: bytes values enter the cross as `fingerprint64(value)`, int64 values as
    /// themselves (TF's `sparse.cross_hashed` on string and int64 inputs).
    Raw(String),
    /// A categorical column: its ids enter as integers.
    Column(Arc<dyn CategoricalColumn>),
}

/// The hashed cross of several inputs (TF's `crossed_column`): for each combination of one
/// value per input (the first input varying slowest), the id is
/// `FingerprintCat64` chained from `0xDECAFCAFFE` over the values, modulo `hash_bucket_size`.
#[derive(Clone)]
pub struct CrossedColumn {
    keys: Vec<CrossKey>,
    hash_bucket_size: u64,
}

/// TF's `hash_key` of `sparse_cross_hashed` and `crossed_column`.
const HASH_KEY: u64 = 0x00DE_CAFC_AFFE;

impl CrossedColumn {
    /// Crosses `keys` into `hash_bucket_size` ids.
    ///
    /// # Errors
    /// [`Error::Config`] for fewer than two keys or `hash_bucket_size < 2`.
    pub fn new(keys: Vec<CrossKey>, hash_bucket_size: u64) -> Result<Self> {
        if keys.len() < 2 || hash_bucket_size < 2 || hash_bucket_size > i64::MAX as u64 {
            return Err(Error::config(
                "crossed_column",
                format!(
                    "needs at least 2 keys and hash_bucket_size > 1, got {} and {hash_bucket_size}",
                    keys.len()
                ),
            ));
        }
        Ok(CrossedColumn { keys, hash_bucket_size })
    }

    fn key_values(&self, key: &CrossKey, record: &Record) -> Result<Vec<u64>> {
        let name = CategoricalColumn::name(self);
        Ok(match key {
            CrossKey::Raw(k) => match &record.field(&name, k)?.values {
                Values::I64(v) => v.iter().map(|&x| x as u64).collect(),
                Values::Bytes(_) => {
                    string_values(&name, record, k)?.iter().map(|s| fingerprint64(s.as_bytes())).collect()
                }
                Values::F32(_) => {
                    return Err(Error::invalid(name, format!("field {k:?} is float; bucketize it first")))
                }
            },
            CrossKey::Column(c) => c.ids(record)?.into_iter().map(|x| x as u64).collect(),
        })
    }
}

impl CategoricalColumn for CrossedColumn {
    fn name(&self) -> String {
        let names: Vec<String> = self
            .keys
            .iter()
            .map(|k| match k {
                CrossKey::Raw(s) => s.clone(),
                CrossKey::Column(c) => c.name(),
            })
            .collect();
        names.join("_X_")
    }
    fn num_buckets(&self) -> u64 {
        self.hash_bucket_size
    }
    fn ids(&self, record: &Record) -> Result<Vec<i64>> {
        let mut partial: Vec<u64> = vec![HASH_KEY];
        for key in &self.keys {
            let values = self.key_values(key, record)?;
            partial =
                partial.iter().flat_map(|&h| values.iter().map(move |&v| fingerprint_cat64(h, v))).collect();
        }
        Ok(partial.into_iter().map(|h| (h % self.hash_bucket_size) as i64).collect())
    }
}
