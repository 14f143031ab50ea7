//! Bucketing by length: [`Dataset::bucket_by_length`] (any element) and
//! [`Dataset::bucket_by_sequence_length`] (records, padded), as TF's
//! `bucket_by_sequence_length`.

use crate::dataset::{element_error, Dataset};
use crate::padded::{pad_records, PaddedBatch, PaddedBatchConfig};
use crate::record::Record;
use couplet_modules::{Error, Result};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A shared length function of bucketing.
type LengthFn<T> = Arc<dyn Fn(&T) -> Result<i64> + Send + Sync>;

/// A batch of elements of one length bucket.
#[derive(Clone, Debug, PartialEq)]
pub struct Bucketed<T> {
    /// The bucket: `i` holds lengths in `[boundaries[i-1], boundaries[i])` (bucket 0 from
    /// `i64::MIN`, the last to `i64::MAX`).
    pub bucket: usize,
    /// The elements with their indices in the pass, in arrival order.
    pub elements: Vec<(u64, T)>,
}

/// Configuration of [`Dataset::bucket_by_sequence_length`].
#[derive(Clone, Debug, PartialEq, Default)]
pub struct BucketConfig {
    /// Pads each sequence field of bucket `i` to `boundaries[i] - 1` instead of the longest
    /// in the batch (TF's `pad_to_bucket_boundary`); fields with an explicit
    /// [`crate::PadLength`] in `padding` keep it. Every length must then be below the last
    /// boundary. Default `false`.
    pub pad_to_bucket_boundary: bool,
    /// Per-field pad values and lengths, and `drop_remainder` (the partial batches left in
    /// the buckets when the input ends are dropped). Default: pad with 0, keep them.
    pub padding: PaddedBatchConfig,
}

/// Checks boundaries and batch sizes; returns the stage's error otherwise.
fn check_buckets(stage: &str, boundaries: &[i64], batch_sizes: &[usize]) -> Result<()> {
    if batch_sizes.len() != boundaries.len() + 1 {
        return Err(Error::config(
            stage,
            format!(
                "needs len(boundaries) + 1 batch sizes, got {} boundaries and {} batch sizes",
                boundaries.len(),
                batch_sizes.len()
            ),
        ));
    }
    if let Some(w) = boundaries.windows(2).find(|w| w[0] >= w[1]) {
        return Err(Error::config(
            stage,
            format!("boundaries must be strictly increasing, got {} then {} in {boundaries:?}", w[0], w[1]),
        ));
    }
    if let Some(i) = batch_sizes.iter().position(|&b| b == 0) {
        return Err(Error::config(stage, format!("batch sizes must be > 0, got 0 for bucket {i}")));
    }
    Ok(())
}

impl<T: Send + 'static> Dataset<T> {
    /// Groups elements by `length_fn` into buckets and yields a bucket's elements as soon as it
    /// holds its batch size (TF's `group_by_window` under `bucket_by_sequence_length`): an
    /// element of length `l` goes to bucket `i` = the number of boundaries `<= l`, whose batch
    /// size is `batch_sizes[i]`. When the input ends, the partial buckets are yielded in
    /// increasing bucket order (or dropped with `drop_remainder`).
    ///
    /// # Errors
    /// [`Error::Config`] unless `batch_sizes.len() == boundaries.len() + 1`, the boundaries
    /// strictly increase and every batch size is > 0. While iterating, an `Err` from
    /// `length_fn` or a negative length, naming the element
    /// (`"bucket_by_sequence_length: element 4: length -1 is negative"`).
    pub fn bucket_by_length(
        &self,
        length_fn: impl Fn(&T) -> Result<i64> + Send + Sync + 'static,
        boundaries: Vec<i64>,
        batch_sizes: Vec<usize>,
        drop_remainder: bool,
    ) -> Result<Dataset<Bucketed<T>>> {
        self.bucket_inner(
            "bucket_by_length",
            Arc::new(length_fn),
            boundaries,
            batch_sizes,
            drop_remainder,
            None,
        )
    }

    fn bucket_inner(
        &self,
        stage: &'static str,
        length_fn: LengthFn<T>,
        boundaries: Vec<i64>,
        batch_sizes: Vec<usize>,
        drop_remainder: bool,
        below: Option<i64>,
    ) -> Result<Dataset<Bucketed<T>>> {
        check_buckets(stage, &boundaries, &batch_sizes)?;
        let (boundaries, batch_sizes) = (Arc::new(boundaries), Arc::new(batch_sizes));
        let up = self.enumerate();
        Ok(Dataset::from_factory(move |key| {
            let mut input = Some(up.iter_keyed(key));
            let mut buckets: BTreeMap<usize, Vec<(u64, T)>> = BTreeMap::new();
            let (length_fn, boundaries, batch_sizes) =
                (Arc::clone(&length_fn), Arc::clone(&boundaries), Arc::clone(&batch_sizes));
            Box::new(std::iter::from_fn(move || {
                while let Some(it) = input.as_mut() {
                    let (i, x) = match it.next() {
                        Some(Ok(x)) => x,
                        Some(Err(e)) => return Some(Err(e)),
                        None => {
                            input = None;
                            break;
                        }
                    };
                    let length = match length_fn(&x) {
                        Ok(l) if l < 0 => {
                            return Some(Err(element_error(stage, i, format!("length {l} is negative"))))
                        }
                        Ok(l) if below.is_some_and(|b| l >= b) => {
                            let message = format!(
                                "length {l} is not below the last boundary {}, which pad_to_bucket_boundary needs",
                                below.unwrap_or_default()
                            );
                            return Some(Err(element_error(stage, i, message)));
                        }
                        Ok(l) => l,
                        Err(e) => return Some(Err(element_error(stage, i, e))),
                    };
                    let bucket = boundaries.partition_point(|&b| b <= length);
                    let elements = buckets.entry(bucket).or_default();
                    elements.push((i, x));
                    if elements.len() == batch_sizes[bucket] {
                        let elements = buckets.remove(&bucket).unwrap_or_default();
                        return Some(Ok(Bucketed { bucket, elements }));
                    }
                }
                if drop_remainder {
                    return None;
                }
                buckets.pop_first().map(|(bucket, elements)| Ok(Bucketed { bucket, elements }))
            }))
        }))
    }
}

impl Dataset<Record> {
    /// Buckets records by `length_fn` (see [`Dataset::bucket_by_length`]) and pads each
    /// bucket's batch as [`Dataset::padded_batch`] does (to the longest in the batch, or to
    /// `boundaries[i] - 1` with `pad_to_bucket_boundary`), so that a batch's padding is small.
    /// A typical length function is `|r| r.length("tokens")`.
    ///
    /// # Errors
    /// As [`Dataset::bucket_by_length`] and [`Dataset::padded_batch`]; with
    /// `pad_to_bucket_boundary`, a length `>=` the last boundary is an error naming the
    /// element, as is an empty `boundaries`.
    pub fn bucket_by_sequence_length(
        &self,
        length_fn: impl Fn(&Record) -> Result<i64> + Send + Sync + 'static,
        boundaries: Vec<i64>,
        batch_sizes: Vec<usize>,
        config: BucketConfig,
    ) -> Result<Dataset<PaddedBatch>> {
        const STAGE: &str = "bucket_by_sequence_length";
        config.padding.check(STAGE)?;
        if config.pad_to_bucket_boundary && boundaries.first().is_some_and(|&b| b < 1) {
            return Err(Error::config(
                STAGE,
                format!("pad_to_bucket_boundary needs boundaries >= 1, got {boundaries:?}"),
            ));
        }
        if config.pad_to_bucket_boundary && boundaries.is_empty() {
            return Err(Error::config(STAGE, "pad_to_bucket_boundary needs at least one boundary"));
        }
        let pad_lengths: Option<Vec<usize>> =
            config.pad_to_bucket_boundary.then(|| boundaries.iter().map(|&b| (b - 1) as usize).collect());
        let below = if config.pad_to_bucket_boundary { boundaries.last().copied() } else { None };
        let config = Arc::new(config);
        let grouped = self.bucket_inner(
            STAGE,
            Arc::new(length_fn),
            boundaries,
            batch_sizes,
            config.padding.drop_remainder,
            below,
        )?;
        Ok(grouped.try_map(move |b| {
            let bucket_length = pad_lengths.as_ref().map(|p| p[b.bucket]);
            pad_records(STAGE, &b.elements, &config.padding, bucket_length)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Array;

    fn lengths_ds(lengths: &[i64]) -> Dataset<i64> {
        Dataset::from_vec(lengths.to_vec())
    }

    #[test]
    fn elements_go_to_the_bucket_of_their_length_at_the_boundaries() {
        // Boundaries [3, 5]: bucket 0 = (.., 3), 1 = [3, 5), 2 = [5, ..).
        let ds = lengths_ds(&[2, 3, 4, 5, 0, 9, 3])
            .bucket_by_length(|&l| Ok(l), vec![3, 5], vec![2, 2, 2], false)
            .unwrap();
        let got: Vec<(usize, Vec<i64>)> = ds
            .collect()
            .unwrap()
            .into_iter()
            .map(|b| (b.bucket, b.elements.into_iter().map(|(_, x)| x).collect()))
            .collect();
        // 3 and 4 fill bucket 1 first (at 4); 2 and 0 fill bucket 0 (at 0); 5 and 9 fill
        // bucket 2 (at 9); the last 3 is flushed at the end.
        assert_eq!(got, vec![(1, vec![3, 4]), (0, vec![2, 0]), (2, vec![5, 9]), (1, vec![3])]);
        let dropped = lengths_ds(&[2, 3, 4, 5, 0, 9, 3])
            .bucket_by_length(|&l| Ok(l), vec![3, 5], vec![2, 2, 2], true)
            .unwrap();
        assert_eq!(dropped.collect().unwrap().len(), 3);
    }

    #[test]
    fn partial_buckets_flush_in_bucket_order_with_their_indices() {
        let ds =
            lengths_ds(&[9, 1, 4]).bucket_by_length(|&l| Ok(l), vec![3, 5], vec![5, 5, 5], false).unwrap();
        let got = ds.collect().unwrap();
        assert_eq!(got.iter().map(|b| b.bucket).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(got[2].elements, [(0, 9)]);
    }

    #[test]
    fn bad_configurations_and_lengths() {
        let ds = lengths_ds(&[1]);
        let e = ds.bucket_by_length(|&l| Ok(l), vec![5, 5], vec![1, 1, 1], false).unwrap_err();
        assert_eq!(e.to_string(), "bucket_by_length: bad configuration: boundaries must be strictly increasing, got 5 then 5 in [5, 5]");
        assert!(ds.bucket_by_length(|&l| Ok(l), vec![5], vec![1], false).is_err());
        assert!(ds.bucket_by_length(|&l| Ok(l), vec![5], vec![1, 0], false).is_err());
        let e = lengths_ds(&[1, 2, 3, 4, -1])
            .bucket_by_length(|&l| Ok(l), vec![5], vec![9, 9], false)
            .unwrap()
            .collect()
            .unwrap_err();
        assert_eq!(e.to_string(), "bucket_by_length: element 4: length -1 is negative");
    }

    fn records(lengths: &[usize]) -> Dataset<Record> {
        Dataset::from_vec(
            lengths.iter().map(|&n| Record::new().with("tokens", Array::ids(vec![7; n]))).collect(),
        )
    }

    #[test]
    fn sequence_buckets_pad_to_the_longest_or_the_boundary() {
        let ds = records(&[1, 6, 2, 7]);
        let batches = ds
            .bucket_by_sequence_length(
                |r| r.length("tokens"),
                vec![4, 8],
                vec![2, 2, 2],
                BucketConfig::default(),
            )
            .unwrap();
        let sizes: Vec<Vec<i64>> =
            batches.collect().unwrap().iter().map(|b| b.get("tokens").unwrap().values.size()).collect();
        assert_eq!(sizes, vec![vec![2, 2], vec![2, 7]]);
        let config = BucketConfig { pad_to_bucket_boundary: true, ..Default::default() };
        let batches = ds
            .bucket_by_sequence_length(|r| r.length("tokens"), vec![4, 8], vec![2, 2, 2], config.clone())
            .unwrap();
        let sizes: Vec<Vec<i64>> =
            batches.collect().unwrap().iter().map(|b| b.get("tokens").unwrap().values.size()).collect();
        assert_eq!(sizes, vec![vec![2, 3], vec![2, 7]]);
        let e = records(&[8])
            .bucket_by_sequence_length(|r| r.length("tokens"), vec![4, 8], vec![2, 2, 2], config)
            .unwrap();
        let e = e.collect().unwrap_err().to_string();
        assert_eq!(e, "bucket_by_sequence_length: element 0: length 8 is not below the last boundary 8, which pad_to_bucket_boundary needs");
    }
}
