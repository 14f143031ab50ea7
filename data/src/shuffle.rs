//! [`Dataset::shuffle`]: tf.data's buffered shuffle, seeded per epoch.

use crate::dataset::{epoch_key, Dataset};
use couplet_modules::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The generator of one shuffle pass: ChaCha8 (stable across platforms and `rand` versions)
/// seeded from `(seed, epoch key)`.
pub(crate) fn pass_rng(seed: u64, key: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(epoch_key(seed ^ 0x5EED_5EED_5EED_5EED, key))
}

impl<T: Send + 'static> Dataset<T> {
    /// Shuffles with tf.data's buffer semantics: the first `buffer_size` elements fill a
    /// buffer; each output is a uniformly drawn buffer slot, which is refilled with the next
    /// input element (once the input ends, the buffer drains in random order). A buffer at
    /// least the dataset's size gives a uniform permutation; a buffer of 1 keeps the order.
    ///
    /// The order depends only on `seed` and the pass's epoch key: every pass of the same
    /// dataset is the same, and under [`Dataset::repeat`] each epoch `e` draws its own order
    /// (TF's `reshuffle_each_iteration=True`), the same on every run.
    ///
    /// # Errors
    /// [`Error::Config`] if `buffer_size` is 0.
    pub fn shuffle(&self, buffer_size: usize, seed: u64) -> Result<Dataset<T>> {
        if buffer_size == 0 {
            return Err(Error::config("shuffle", "buffer_size must be > 0, got 0"));
        }
        let up = self.clone();
        Ok(Dataset::from_factory(move |key| {
            let mut input = Some(up.iter_keyed(key));
            let mut rng = pass_rng(seed, key);
            let mut buffer: Vec<T> = Vec::new();
            Box::new(std::iter::from_fn(move || {
                while buffer.len() < buffer_size {
                    match input.as_mut().and_then(Iterator::next) {
                        Some(Ok(x)) => buffer.push(x),
                        Some(Err(e)) => return Some(Err(e)),
                        None => {
                            input = None;
                            break;
                        }
                    }
                }
                if buffer.is_empty() {
                    return None;
                }
                let slot = rng.gen_range(0..buffer.len() as u64) as usize;
                let out = buffer.swap_remove(slot);
                Some(Ok(out))
            }))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::range;

    #[test]
    fn a_pass_is_a_permutation_and_reproducible() {
        let ds = range(100).shuffle(100, 7).unwrap();
        let a = ds.collect().unwrap();
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, range(100).collect().unwrap());
        assert_ne!(a, sorted);
        assert_eq!(a, ds.collect().unwrap());
        assert_ne!(a, range(100).shuffle(100, 8).unwrap().collect().unwrap());
    }

    #[test]
    fn epochs_reshuffle_and_replay() {
        let ds = range(20).shuffle(20, 3).unwrap().repeat(3);
        let all = ds.collect().unwrap();
        let epochs: Vec<&[i64]> = all.chunks(20).collect();
        assert_ne!(epochs[0], epochs[1]);
        assert_ne!(epochs[1], epochs[2]);
        assert_eq!(all, ds.collect().unwrap());
        assert_eq!(ds.iter_from(25).collect::<Result<Vec<_>>>().unwrap(), all[25..]);
    }

    #[test]
    fn a_buffer_of_one_keeps_the_order_and_a_small_buffer_stays_local() {
        assert_eq!(range(10).shuffle(1, 1).unwrap().collect().unwrap(), range(10).collect().unwrap());
        // With a buffer of b, output i is one of inputs 0..=i+b-1 (it was in the buffer).
        let out = range(200).shuffle(4, 9).unwrap().collect().unwrap();
        for (i, &x) in out.iter().enumerate() {
            assert!(x < i as i64 + 4, "output {i} is input {x}, never in a buffer of 4 yet");
        }
        assert!(matches!(range(3).shuffle(0, 1), Err(Error::Config { .. })));
    }

    #[test]
    fn the_first_output_is_uniform_over_the_buffer() {
        // Hand-worked: the first output is drawn uniformly from the first 4 inputs, so over
        // 4000 seeds each of 0..4 comes first ~1000 times (binomial sd ~27).
        let mut counts = [0usize; 5];
        for seed in 0..4000 {
            let first = range(10).shuffle(4, seed).unwrap().iter().next().unwrap().unwrap();
            counts[first as usize] += 1;
        }
        assert_eq!(counts[4], 0);
        for c in &counts[..4] {
            assert!((880..1120).contains(c), "{counts:?}");
        }
    }
}
