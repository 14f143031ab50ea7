//! [`Vocabulary`]: tokens ↔ ids, built from a corpus or a file, with special tokens and
//! out-of-vocabulary hash buckets (TF's `index_table_from_file` / `StringLookup`).

use crate::hash::hash_bucket;
use crate::source::io_error;
use couplet_modules::{Error, Result};
use std::collections::HashMap;
use std::path::Path;

/// How a [`Vocabulary`] is built and treats unknown tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VocabularyConfig {
    /// Tokens seen fewer times are left out. Default 1.
    pub min_count: u64,
    /// At most this many ids from the corpus, specials included (the most frequent tokens,
    /// ties broken by token order). Default `None` (no limit).
    pub max_size: Option<usize>,
    /// Tokens given the first ids, in order, e.g. `["<pad>", "<unk>"]`. Default none.
    pub specials: Vec<String>,
    /// Unknown tokens hash into this many extra ids after the vocabulary:
    /// `size + fingerprint64(token) % num_oov_buckets` (TF's `num_oov_buckets`). Default 0.
    pub num_oov_buckets: u64,
    /// With no OOV buckets, unknown tokens map to this token's id (it must be in the
    /// vocabulary, e.g. a special `"<unk>"`); `None` makes an unknown token an error.
    /// Default `None`.
    pub unknown: Option<String>,
}

impl Default for VocabularyConfig {
    fn default() -> Self {
        VocabularyConfig {
            min_count: 1,
            max_size: None,
            specials: Vec::new(),
            num_oov_buckets: 0,
            unknown: None,
        }
    }
}

/// A bijection between tokens and ids `0..size()`, plus `num_oov_buckets` ids for the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vocabulary {
    tokens: Vec<String>,
    index: HashMap<String, i64>,
    num_oov_buckets: u64,
    unknown: Option<i64>,
}

impl Vocabulary {
    /// A vocabulary of `tokens` in order (ids 0, 1, …), with `config`'s OOV treatment
    /// (`min_count`, `max_size` and `specials` do not apply).
    ///
    /// # Errors
    /// [`Error::Config`] for a repeated token or an `unknown` token not in `tokens`.
    pub fn from_tokens(tokens: Vec<String>, config: &VocabularyConfig) -> Result<Vocabulary> {
        let mut index = HashMap::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            if index.insert(t.clone(), i as i64).is_some() {
                return Err(Error::config(
                    "vocabulary",
                    format!("token {t:?} appears twice (again at id {i})"),
                ));
            }
        }
        let unknown = match &config.unknown {
            Some(u) => Some(*index.get(u).ok_or_else(|| {
                Error::config("vocabulary", format!("the unknown token {u:?} is not in the vocabulary"))
            })?),
            None => None,
        };
        Ok(Vocabulary { tokens, index, num_oov_buckets: config.num_oov_buckets, unknown })
    }

    /// Builds a vocabulary from a corpus of tokens: the specials first, then the tokens seen
    /// at least `min_count` times, most frequent first (ties in token order), cut at `max_size`.
    ///
    /// # Errors
    /// As [`Vocabulary::from_tokens`]; [`Error::Config`] if `max_size` is below the number of
    /// specials.
    pub fn build<S: AsRef<str>>(
        corpus: impl IntoIterator<Item = S>,
        config: &VocabularyConfig,
    ) -> Result<Vocabulary> {
        let mut counts: HashMap<String, u64> = HashMap::new();
        for t in corpus {
            *counts.entry(t.as_ref().to_string()).or_default() += 1;
        }
        let mut ranked: Vec<(String, u64)> = counts
            .into_iter()
            .filter(|(t, c)| *c >= config.min_count && !config.specials.contains(t))
            .collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut tokens = config.specials.clone();
        let room = match config.max_size {
            Some(m) if m < tokens.len() => {
                return Err(Error::config(
                    "vocabulary",
                    format!("max_size {m} is below the {} specials", tokens.len()),
                ))
            }
            Some(m) => m - tokens.len(),
            None => ranked.len(),
        };
        tokens.extend(ranked.into_iter().take(room).map(|(t, _)| t));
        Self::from_tokens(tokens, config)
    }

    /// Loads a vocabulary file: one token per line, line `i` is id `i` (TF's vocabulary file).
    ///
    /// # Errors
    /// [`Error::Io`] for an unreadable file; as [`Vocabulary::from_tokens`].
    pub fn load(path: impl AsRef<Path>, config: &VocabularyConfig) -> Result<Vocabulary> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| io_error("vocabulary", path, e))?;
        Self::from_tokens(text.lines().map(str::to_string).collect(), config)
    }

    /// Writes the tokens, one per line.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a token with a line break (it would not load back);
    /// [`Error::Io`] on a write error.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        if let Some(t) = self.tokens.iter().find(|t| t.contains(['\n', '\r'])) {
            return Err(Error::invalid(
                "vocabulary",
                format!("token {t:?} has a line break and cannot be saved one per line"),
            ));
        }
        let mut text = self.tokens.join("\n");
        text.push('\n');
        std::fs::write(path.as_ref(), text).map_err(|e| io_error("vocabulary", path.as_ref(), e))
    }

    /// The number of tokens (ids `0..size()`), OOV buckets excluded.
    pub fn size(&self) -> usize {
        self.tokens.len()
    }

    /// The number of ids: tokens plus OOV buckets.
    pub fn num_ids(&self) -> u64 {
        self.tokens.len() as u64 + self.num_oov_buckets
    }

    /// The tokens in id order.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// The id of a known token.
    pub fn get(&self, token: &str) -> Option<i64> {
        self.index.get(token).copied()
    }

    /// The id of `token`: its own, else its OOV bucket, else the unknown token's id.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an unknown token with neither OOV buckets nor an
    /// unknown token configured.
    pub fn id(&self, token: &str) -> Result<i64> {
        if let Some(id) = self.get(token) {
            return Ok(id);
        }
        if self.num_oov_buckets > 0 {
            return Ok(self.tokens.len() as i64 + hash_bucket(token.as_bytes(), self.num_oov_buckets));
        }
        self.unknown.ok_or_else(|| {
            Error::invalid("vocabulary", format!("unknown token {token:?} (no OOV buckets or unknown token)"))
        })
    }

    /// The ids of `tokens`.
    ///
    /// # Errors
    /// As [`Vocabulary::id`].
    pub fn encode<S: AsRef<str>>(&self, tokens: impl IntoIterator<Item = S>) -> Result<Vec<i64>> {
        tokens.into_iter().map(|t| self.id(t.as_ref())).collect()
    }

    /// The token of `id` (`None` for an OOV bucket or an id out of range).
    pub fn token(&self, id: i64) -> Option<&str> {
        usize::try_from(id).ok().and_then(|i| self.tokens.get(i)).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_counts_orders_and_cuts() {
        let corpus = "b a c a b a d".split(' ');
        let config = VocabularyConfig {
            specials: vec!["<pad>".into(), "<unk>".into()],
            unknown: Some("<unk>".into()),
            ..Default::default()
        };
        let v = Vocabulary::build(corpus.clone(), &config).unwrap();
        assert_eq!(v.tokens(), ["<pad>", "<unk>", "a", "b", "c", "d"]);
        assert_eq!(v.encode(["a", "zzz", "d"]).unwrap(), [2, 1, 5]);
        let v =
            Vocabulary::build(corpus.clone(), &VocabularyConfig { min_count: 2, ..config.clone() }).unwrap();
        assert_eq!(v.tokens(), ["<pad>", "<unk>", "a", "b"]);
        let v = Vocabulary::build(corpus.clone(), &VocabularyConfig { max_size: Some(3), ..config.clone() })
            .unwrap();
        assert_eq!(v.tokens(), ["<pad>", "<unk>", "a"]);
        assert!(Vocabulary::build(corpus, &VocabularyConfig { max_size: Some(1), ..config }).is_err());
    }

    #[test]
    fn oov_buckets_unknowns_and_errors() {
        let tokens = vec!["x".to_string(), "y".to_string()];
        let v = Vocabulary::from_tokens(
            tokens.clone(),
            &VocabularyConfig { num_oov_buckets: 3, ..Default::default() },
        )
        .unwrap();
        let id = v.id("never seen").unwrap();
        assert!((2..5).contains(&id));
        assert_eq!(id, 2 + (crate::hash::fingerprint64(b"never seen") % 3) as i64);
        assert_eq!((v.num_ids(), v.token(id)), (5, None));
        let strict = Vocabulary::from_tokens(tokens.clone(), &VocabularyConfig::default()).unwrap();
        assert_eq!(
            strict.id("q").unwrap_err().to_string(),
            "vocabulary: unknown token \"q\" (no OOV buckets or unknown token)"
        );
        assert!(Vocabulary::from_tokens(vec!["a".into(), "a".into()], &VocabularyConfig::default()).is_err());
        let bad_unknown = VocabularyConfig { unknown: Some("<unk>".into()), ..Default::default() };
        assert!(Vocabulary::from_tokens(tokens, &bad_unknown).is_err());
    }

    #[test]
    fn save_and_load_round_trip() {
        let path = std::env::temp_dir().join(format!("couplet-vocab-{}.txt", std::process::id()));
        let v = Vocabulary::build(["é", "b", "é"], &VocabularyConfig::default()).unwrap();
        v.save(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "é\nb\n");
        assert_eq!(Vocabulary::load(&path, &VocabularyConfig::default()).unwrap(), v);
        let nl = Vocabulary::from_tokens(vec!["a\nb".into()], &VocabularyConfig::default()).unwrap();
        assert!(nl.save(&path).is_err());
    }
}
