//! Categorical columns with identity, vocabulary (list or file) and hash-bucket ids.

use super::{string_values, CategoricalColumn};
use crate::hash::hash_bucket;
use crate::record::{Record, Values};
use crate::vocab::{Vocabulary, VocabularyConfig};
use couplet_modules::{Error, Result};
use std::path::Path;

/// Integer values used as ids in `0..num_buckets` (TF's `categorical_column_with_identity`);
/// a value out of range becomes `default_value`, or is an error without one.
#[derive(Clone, Debug)]
pub struct IdentityColumn {
    key: String,
    num_buckets: u64,
    default_value: Option<i64>,
}

impl IdentityColumn {
    /// Ids from field `key` (int64) in `0..num_buckets`.
    ///
    /// # Errors
    /// [`Error::Config`] for `num_buckets == 0` or a default outside `0..num_buckets`.
    pub fn new(key: &str, num_buckets: u64, default_value: Option<i64>) -> Result<Self> {
        if num_buckets == 0
            || num_buckets > i64::MAX as u64
            || default_value.is_some_and(|d| d < 0 || d as u64 >= num_buckets)
        {
            return Err(Error::config(
                "categorical_column_with_identity",
                format!("needs num_buckets > 0 and a default in 0..num_buckets, got {num_buckets} and {default_value:?}"),
            ));
        }
        Ok(IdentityColumn { key: key.to_string(), num_buckets, default_value })
    }
}

impl CategoricalColumn for IdentityColumn {
    fn name(&self) -> String {
        self.key.clone()
    }
    fn num_buckets(&self) -> u64 {
        self.num_buckets
    }
    fn ids(&self, record: &Record) -> Result<Vec<i64>> {
        let Values::I64(values) = &record.field(&self.key, &self.key)?.values else {
            return Err(Error::invalid(&self.key, "identity ids must be int64"));
        };
        values
            .iter()
            .map(|&v| match (v >= 0 && (v as u64) < self.num_buckets, self.default_value) {
                (true, _) => Ok(v),
                (false, Some(d)) => Ok(d),
                (false, None) => {
                    Err(Error::invalid(&self.key, format!("id {v} is out of range 0..{}", self.num_buckets)))
                }
            })
            .collect()
    }
}

/// Values looked up in a [`Vocabulary`] (TF's `categorical_column_with_vocabulary_list` and
/// `_file`): known values get their id, unknown ones their OOV bucket, else `default_value`
/// (TF's default `-1`: dropped by indicator and embedding columns). Integer values are looked
/// up by their decimal text.
#[derive(Clone, Debug)]
pub struct VocabularyColumn {
    key: String,
    vocabulary: Vocabulary,
    default_value: i64,
}

impl VocabularyColumn {
    /// A column over the tokens of `list` (ids in list order) and `num_oov_buckets` buckets.
    ///
    /// # Errors
    /// As [`Vocabulary::from_tokens`] (a repeated token).
    pub fn from_list(key: &str, list: &[&str], num_oov_buckets: u64, default_value: i64) -> Result<Self> {
        let config = VocabularyConfig { num_oov_buckets, ..Default::default() };
        let vocabulary = Vocabulary::from_tokens(list.iter().map(|s| s.to_string()).collect(), &config)?;
        Ok(VocabularyColumn { key: key.to_string(), vocabulary, default_value })
    }

    /// A column over the first `vocabulary_size` lines of a vocabulary file (all if `None`).
    ///
    /// # Errors
    /// As [`Vocabulary::load`]; [`Error::Config`] if the file has fewer lines than asked.
    pub fn from_file(
        key: &str,
        path: impl AsRef<Path>,
        vocabulary_size: Option<usize>,
        num_oov_buckets: u64,
        default_value: i64,
    ) -> Result<Self> {
        let config = VocabularyConfig { num_oov_buckets, ..Default::default() };
        let all = Vocabulary::load(path, &VocabularyConfig::default())?;
        let n = vocabulary_size.unwrap_or(all.size());
        if n > all.size() {
            return Err(Error::config(
                "categorical_column_with_vocabulary_file",
                format!("vocabulary_size {n} is over the file's {} tokens", all.size()),
            ));
        }
        let vocabulary = Vocabulary::from_tokens(all.tokens()[..n].to_vec(), &config)?;
        Ok(VocabularyColumn { key: key.to_string(), vocabulary, default_value })
    }

    /// The vocabulary.
    pub fn vocabulary(&self) -> &Vocabulary {
        &self.vocabulary
    }
}

impl CategoricalColumn for VocabularyColumn {
    fn name(&self) -> String {
        self.key.clone()
    }
    fn num_buckets(&self) -> u64 {
        self.vocabulary.num_ids()
    }
    fn ids(&self, record: &Record) -> Result<Vec<i64>> {
        Ok(string_values(&self.key, record, &self.key)?
            .iter()
            .map(|t| self.vocabulary.id(t).unwrap_or(self.default_value))
            .collect())
    }
}

/// Values hashed into `hash_bucket_size` ids (TF's `categorical_column_with_hash_bucket`):
/// `fingerprint64(value) % hash_bucket_size`, integers hashed by their decimal text as TF does.
#[derive(Clone, Debug)]
pub struct HashBucketColumn {
    key: String,
    hash_bucket_size: u64,
}

impl HashBucketColumn {
    /// Hashes field `key` into `hash_bucket_size` ids.
    ///
    /// # Errors
    /// [`Error::Config`] if `hash_bucket_size` is below 2 (TF's rule).
    pub fn new(key: &str, hash_bucket_size: u64) -> Result<Self> {
        if hash_bucket_size < 2 || hash_bucket_size > i64::MAX as u64 {
            return Err(Error::config(
                "categorical_column_with_hash_bucket",
                format!("hash_bucket_size must be > 1, got {hash_bucket_size}"),
            ));
        }
        Ok(HashBucketColumn { key: key.to_string(), hash_bucket_size })
    }
}

impl CategoricalColumn for HashBucketColumn {
    fn name(&self) -> String {
        self.key.clone()
    }
    fn num_buckets(&self) -> u64 {
        self.hash_bucket_size
    }
    fn ids(&self, record: &Record) -> Result<Vec<i64>> {
        Ok(string_values(&self.key, record, &self.key)?
            .iter()
            .map(|t| hash_bucket(t.as_bytes(), self.hash_bucket_size))
            .collect())
    }
}
