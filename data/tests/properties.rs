//! Property tests over random inputs (bounded case counts; CI fixes PROPTEST_RNG_SEED).

use couplet_data::{Array, BucketConfig, Dataset, PadLength, PaddedBatchConfig, Record};
use proptest::prelude::*;

fn records(lengths: &[usize]) -> Dataset<Record> {
    let rs = lengths
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            Record::new().with("tokens", Array::ids((0..n as i64).map(|t| 1000 * i as i64 + t + 1).collect()))
        })
        .collect();
    Dataset::from_vec(rs)
}

/// The rows of a padded `[B, T]` batch cut back to their lengths.
fn unpad(batch: &couplet_data::PaddedBatch) -> Vec<Vec<i64>> {
    let f = batch.get("tokens").unwrap();
    let size = f.values.size();
    let flat = Vec::<i64>::try_from(f.values.flatten(0, -1)).unwrap();
    let t = size[1] as usize;
    (0..size[0] as usize).map(|b| flat[b * t..b * t + f.lengths[b] as usize].to_vec()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn shuffle_is_a_reproducible_permutation(n in 0usize..200, buffer in 1usize..300, seed in any::<u64>()) {
        let ds = Dataset::from_vec((0..n).collect::<Vec<_>>()).shuffle(buffer, seed).unwrap();
        let a = ds.collect().unwrap();
        let mut sorted = a.clone();
        sorted.sort_unstable();
        prop_assert_eq!(sorted, (0..n).collect::<Vec<_>>());
        prop_assert_eq!(a, ds.collect().unwrap());
    }

    #[test]
    fn shards_partition_the_data(n in 0usize..100, num in 1u64..8) {
        let ds = Dataset::from_vec((0..n).collect::<Vec<_>>());
        let mut all: Vec<usize> = (0..num).flat_map(|i| ds.shard(num, i).unwrap().collect().unwrap()).collect();
        all.sort_unstable();
        prop_assert_eq!(all, (0..n).collect::<Vec<_>>());
    }

    #[test]
    fn padded_batches_hold_every_element_and_its_length(lengths in prop::collection::vec(0usize..30, 0..40), b in 1usize..9, k in 1usize..5) {
        let config = PaddedBatchConfig::new().field("tokens", PadLength::MultipleOf(k), -7.0);
        let batches = records(&lengths).padded_batch(b, config).unwrap().collect().unwrap();
        let mut rows = Vec::new();
        for batch in &batches {
            let f = batch.get("tokens").unwrap();
            let t = f.values.size()[1] as usize;
            let longest = f.lengths.iter().copied().max().unwrap_or(0) as usize;
            prop_assert!(t % k == 0 && t >= longest && t < longest + k);
            let flat = Vec::<i64>::try_from(f.values.flatten(0, -1)).unwrap();
            for (row, &l) in f.lengths.iter().enumerate() {
                prop_assert!(flat[row * t + l as usize..(row + 1) * t].iter().all(|&v| v == -7));
            }
            rows.extend(unpad(batch));
        }
        let want: Vec<Vec<i64>> = records(&lengths).collect().unwrap().iter().map(|r| match &r.fields["tokens"].values {
            couplet_data::Values::I64(v) => v.clone(),
            _ => unreachable!(),
        }).collect();
        prop_assert_eq!(rows, want);
    }

    #[test]
    fn buckets_hold_their_lengths_and_lose_nothing(lengths in prop::collection::vec(0usize..50, 0..80), cut in 1i64..20, step in 1i64..20) {
        let boundaries = vec![cut, cut + step, cut + 2 * step];
        let sizes = vec![3, 4, 5, 2];
        let ds = records(&lengths).bucket_by_sequence_length(|r| r.length("tokens"), boundaries.clone(), sizes.clone(), BucketConfig::default()).unwrap();
        let mut seen = Vec::new();
        for batch in ds.collect().unwrap() {
            let f = batch.get("tokens").unwrap();
            let buckets: Vec<usize> = f.lengths.iter().map(|&l| boundaries.iter().filter(|&&b| b <= l).count()).collect();
            prop_assert!(buckets.windows(2).all(|w| w[0] == w[1]), "one bucket per batch: {:?}", buckets);
            prop_assert!(batch.size <= sizes[buckets[0]]);
            seen.extend(unpad(&batch).into_iter().map(|row| row.first().map_or(-1, |&x| x)));
        }
        prop_assert_eq!(seen.len(), lengths.len());
    }

    #[test]
    fn a_resumed_pipeline_sees_what_an_uninterrupted_one_sees(n in 1usize..60, buffer in 1usize..70, seed in any::<u64>(), b in 1usize..7, at in 0u64..40) {
        let lengths: Vec<usize> = (0..n).map(|i| i % 13).collect();
        let pipeline = records(&lengths)
            .shuffle(buffer, seed).unwrap()
            .repeat(3)
            .padded_batch(b, PaddedBatchConfig::new()).unwrap()
            .prefetch(2).unwrap();
        let all: Vec<Vec<Vec<i64>>> = pipeline.collect().unwrap().iter().map(unpad).collect();
        let resumed: Vec<Vec<Vec<i64>>> = pipeline.iter_from(at).map(|r| unpad(&r.unwrap())).collect();
        let start = (at as usize).min(all.len());
        prop_assert_eq!(&resumed[..], &all[start..]);
    }

    #[test]
    fn map_parallel_equals_map(n in 0i64..300, workers in 1usize..6) {
        let ds = Dataset::from_vec((0..n).collect::<Vec<_>>());
        let par = ds.map_parallel(workers, |x| Ok(x * 3 - 1)).unwrap().collect().unwrap();
        prop_assert_eq!(par, ds.map(|x| x * 3 - 1).collect().unwrap());
    }
}
