//! [`Dataset::interleave`]: TF's `interleave` (e.g. of files), cycling over several inner datasets.

use crate::dataset::{Dataset, Iter};
use couplet_modules::{Error, Result};
use std::sync::Arc;

impl<T: Send + 'static> Dataset<T> {
    /// Maps each element to a dataset and interleaves them as TF's `interleave`: up to
    /// `cycle_length` inner datasets are open at once; the cycle takes `block_length`
    /// consecutive elements from each in turn, and an exhausted one is replaced by the next
    /// element's dataset. `Dataset::from_vec(paths).interleave(4, 1, |p| tfrecord(vec![p]))`
    /// reads four files round-robin. Inner passes get the outer pass's epoch key.
    ///
    /// # Errors
    /// [`Error::Config`] if `cycle_length` or `block_length` is 0.
    pub fn interleave<U: Send + 'static>(
        &self,
        cycle_length: usize,
        block_length: usize,
        f: impl Fn(T) -> Dataset<U> + Send + Sync + 'static,
    ) -> Result<Dataset<U>> {
        if cycle_length == 0 || block_length == 0 {
            return Err(Error::config(
                "interleave",
                format!("cycle_length and block_length must be > 0, got {cycle_length} and {block_length}"),
            ));
        }
        let (up, f) = (self.clone(), Arc::new(f));
        Ok(Dataset::from_factory(move |key| {
            let mut outer = Some(up.iter_keyed(key));
            let f = Arc::clone(&f);
            let mut cycle: Vec<Option<Iter<U>>> = Vec::new();
            let (mut slot, mut taken) = (0usize, 0usize);
            let mut pending_error = None;
            Box::new(std::iter::from_fn(move || loop {
                if let Some(e) = pending_error.take() {
                    return Some(Err(e));
                }
                // Fill the cycle's empty slots from the outer dataset.
                while cycle.iter().filter(|s| s.is_some()).count() < cycle_length {
                    match outer.as_mut().and_then(Iterator::next) {
                        Some(Ok(x)) => {
                            let inner = f(x).iter_keyed(key);
                            match cycle.iter().position(Option::is_none) {
                                Some(free) => cycle[free] = Some(inner),
                                None => cycle.push(Some(inner)),
                            }
                        }
                        Some(Err(e)) => {
                            outer = None;
                            pending_error = Some(e);
                            break;
                        }
                        None => {
                            outer = None;
                            break;
                        }
                    }
                }
                if cycle.iter().all(Option::is_none) {
                    return pending_error.take().map(Err);
                }
                slot %= cycle.len();
                let Some(inner) = cycle[slot].as_mut() else {
                    slot += 1;
                    taken = 0;
                    continue;
                };
                match inner.next() {
                    Some(item) => {
                        taken += 1;
                        if taken == block_length {
                            slot += 1;
                            taken = 0;
                        }
                        return Some(item);
                    }
                    None => {
                        cycle[slot] = None;
                        slot += 1;
                        taken = 0;
                    }
                }
            }))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_blocks_and_refills_as_tf() {
        // TF's documented example: range(1, 6).interleave(lambda x: from_tensors(x).repeat(6),
        // cycle_length=2, block_length=4).
        let ds = Dataset::from_vec((1i64..6).collect())
            .interleave(2, 4, |x| Dataset::from_vec(vec![x; 6]))
            .unwrap();
        let tf = [1, 1, 1, 1, 2, 2, 2, 2, 1, 1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 3, 3, 4, 4, 5, 5, 5, 5, 5, 5];
        assert_eq!(ds.collect().unwrap(), tf);
        let flat =
            Dataset::from_vec(vec![0i64, 1]).interleave(1, 1, |x| Dataset::from_vec(vec![x, x])).unwrap();
        assert_eq!(flat.collect().unwrap(), [0, 0, 1, 1]);
        assert!(Dataset::from_vec(vec![1]).interleave(0, 1, |x: i64| Dataset::from_vec(vec![x])).is_err());
    }
}
