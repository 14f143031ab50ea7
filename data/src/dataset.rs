//! [`Dataset`]: a lazy, re-iterable pipeline of elements, and its element-wise stages.
//!
//! A dataset is a *description*: nothing is read or computed until it is iterated, and every
//! call to [`Dataset::iter`] starts a fresh pass from the first element. Iterating yields
//! `Result<T>`; a failing stage yields one `Err` naming the stage and the element index
//! (`"padded_batch: element 17: field \"tokens\" has rank 2, expected 1"`) and then the
//! iterator ends.
//!
//! # Determinism and resuming
//! A pipeline made of deterministic stages (sources, [`Dataset::shuffle`] with its seed,
//! [`Dataset::repeat`], batching, bucketing, [`Dataset::map`] with a pure function, ordered
//! [`Dataset::map_parallel`], [`Dataset::prefetch`]) yields the same elements in the same order
//! on every pass. A run interrupted after consuming `n` elements of the final dataset resumes
//! with [`Dataset::iter_from`]`(n)` (or `.skip(n)`), which yields exactly the elements an
//! uninterrupted pass would have yielded from position `n` on. Skipping recomputes the first
//! `n` elements (their cost, not their memory): it is exact, not free.

use couplet_modules::{Error, Result};
use std::sync::Arc;

/// The iterator of one pass over a [`Dataset`]: `Ok` elements, or one `Err` and then the end.
pub type Iter<T> = Box<dyn Iterator<Item = Result<T>> + Send>;

/// Makes a fresh pass: the argument is the pass's *epoch key* (0 for a top-level pass; the
/// stages under a [`Dataset::repeat`] see one key per repetition, see [`epoch_key`]).
type Factory<T> = dyn Fn(u64) -> Iter<T> + Send + Sync;

/// A lazy pipeline of elements of type `T` (cheap to clone: clones share the description).
///
/// Build one from a source ([`Dataset::from_vec`], [`Dataset::from_fn`], [`crate::text_lines`],
/// [`crate::json_lines`], [`crate::csv_rows`], [`crate::tfrecord`]) and chain stages:
///
/// ```
/// use couplet_data::Dataset;
/// let evens: Vec<i64> = Dataset::from_vec((0..10).collect())
///     .filter(|x| x % 2 == 0)
///     .map(|x| x * 10)
///     .take(3)
///     .collect()?;
/// assert_eq!(evens, [0, 20, 40]);
/// # Ok::<(), couplet_modules::Error>(())
/// ```
pub struct Dataset<T> {
    make: Arc<Factory<T>>,
}

impl<T> Clone for Dataset<T> {
    fn clone(&self) -> Self {
        Dataset { make: Arc::clone(&self.make) }
    }
}

impl<T> std::fmt::Debug for Dataset<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataset").field("element", &std::any::type_name::<T>()).finish()
    }
}

/// The epoch key that the `repetition`-th pass under a [`Dataset::repeat`] sees, when the
/// repeat itself is iterated with key `parent`: `repetition` for a top-level repeat
/// (`parent == 0`), a mix of both otherwise. [`Dataset::shuffle`] draws its order from
/// `(seed, epoch key)`, so epoch `e` of `shuffle(b, s).repeat(..)` is the same on every run.
pub fn epoch_key(parent: u64, repetition: u64) -> u64 {
    parent.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(repetition)
}

/// Ends a pass after its first error (so that stages never see elements past an error).
struct StopAfterError<T> {
    inner: Iter<T>,
    done: bool,
}

impl<T> Iterator for StopAfterError<T> {
    type Item = Result<T>;
    fn next(&mut self) -> Option<Result<T>> {
        if self.done {
            return None;
        }
        let item = self.inner.next();
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }
}

/// An `Err(InvalidArgument)` naming `stage` and the element index: `"{stage}: element {index}: {message}"`.
pub(crate) fn element_error(stage: &str, index: u64, message: impl std::fmt::Display) -> Error {
    Error::invalid(stage, format!("element {index}: {message}"))
}

impl<T: Send + 'static> Dataset<T> {
    /// A dataset whose passes are made by `make(epoch_key)`. Every other constructor goes
    /// through here; use it for sources of your own (the iterator should depend only on the
    /// key, so that passes are reproducible).
    pub fn from_factory(make: impl Fn(u64) -> Iter<T> + Send + Sync + 'static) -> Self {
        Dataset {
            make: Arc::new(move |key| -> Iter<T> {
                Box::new(StopAfterError { inner: make(key), done: false })
            }),
        }
    }

    /// The elements of `items`, in order (cloned on each pass).
    pub fn from_vec(items: Vec<T>) -> Self
    where
        T: Clone + Sync,
    {
        let items = Arc::new(items);
        Self::from_factory(move |_| {
            let items = Arc::clone(&items);
            Box::new((0..items.len()).map(move |i| Ok(items[i].clone())))
        })
    }

    /// The elements of the iterator that `make()` returns, made afresh on each pass.
    pub fn from_fn<I>(make: impl Fn() -> I + Send + Sync + 'static) -> Self
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
    {
        Self::from_factory(move |_| Box::new(make().into_iter().map(Ok)))
    }

    /// A dataset made of the `Result`s of `make()` (for fallible sources).
    pub fn from_results<I>(make: impl Fn() -> I + Send + Sync + 'static) -> Self
    where
        I: IntoIterator<Item = Result<T>>,
        I::IntoIter: Send + 'static,
    {
        Self::from_factory(move |_| Box::new(make().into_iter()))
    }

    /// One pass from the first element.
    pub fn iter(&self) -> Iter<T> {
        (self.make)(0)
    }

    /// One pass that starts at `position` (0-based): the elements an uninterrupted pass yields
    /// from its `position`-th on. This is how a run resumed at a global step resumes its input
    /// (for one element per step, `position = step`). The first `position` elements are
    /// computed and dropped.
    pub fn iter_from(&self, position: u64) -> Iter<T> {
        self.skip(position).iter()
    }

    /// One pass with epoch key `key` (see [`epoch_key`]); [`Dataset::iter`] is `iter_keyed(0)`.
    pub fn iter_keyed(&self, key: u64) -> Iter<T> {
        (self.make)(key)
    }

    /// Collects one pass.
    ///
    /// # Errors
    /// The first error of the pass.
    pub fn collect(&self) -> Result<Vec<T>> {
        self.iter().collect()
    }

    /// Applies `f` to every element (on the consumer's thread; see [`Dataset::map_parallel`]).
    pub fn map<U: Send + 'static>(&self, f: impl Fn(T) -> U + Send + Sync + 'static) -> Dataset<U> {
        let f = Arc::new(f);
        let up = self.clone();
        Dataset::from_factory(move |key| {
            let f = Arc::clone(&f);
            Box::new(up.iter_keyed(key).map(move |r| r.map(|x| f(x))))
        })
    }

    /// Applies a fallible `f` to every element; an `Err` from `f` ends the pass with that error.
    pub fn try_map<U: Send + 'static>(
        &self,
        f: impl Fn(T) -> Result<U> + Send + Sync + 'static,
    ) -> Dataset<U> {
        let f = Arc::new(f);
        let up = self.clone();
        Dataset::from_factory(move |key| {
            let f = Arc::clone(&f);
            Box::new(up.iter_keyed(key).map(move |r| r.and_then(|x| f(x))))
        })
    }

    /// Keeps the elements for which `keep` is true.
    pub fn filter(&self, keep: impl Fn(&T) -> bool + Send + Sync + 'static) -> Dataset<T> {
        let keep = Arc::new(keep);
        let up = self.clone();
        Dataset::from_factory(move |key| {
            let keep = Arc::clone(&keep);
            Box::new(up.iter_keyed(key).filter(move |r| r.as_ref().map_or(true, |x| keep(x))))
        })
    }

    /// The first `n` elements.
    pub fn take(&self, n: u64) -> Dataset<T> {
        let up = self.clone();
        Dataset::from_factory(move |key| {
            Box::new(up.iter_keyed(key).take(usize::try_from(n).unwrap_or(usize::MAX)))
        })
    }

    /// Every element after the first `n` (errors among the first `n` still end the pass).
    pub fn skip(&self, n: u64) -> Dataset<T> {
        let up = self.clone();
        Dataset::from_factory(move |key| {
            let mut it = up.iter_keyed(key);
            let mut error = None;
            for _ in 0..n {
                match it.next() {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        error = Some(e);
                        break;
                    }
                    None => break,
                }
            }
            match error {
                Some(e) => Box::new(std::iter::once(Err(e))),
                None => it,
            }
        })
    }

    /// The dataset `count` times over (`repeat(1)` is the dataset itself). Pass `r` of the
    /// upstream runs with epoch key [`epoch_key`]`(key, r)`, so a [`Dataset::shuffle`] before
    /// the repeat draws a new, reproducible order each epoch.
    pub fn repeat(&self, count: u64) -> Dataset<T> {
        self.repeat_inner(Some(count))
    }

    /// The dataset repeated without end (TF's `repeat()`); see [`Dataset::repeat`].
    pub fn repeat_forever(&self) -> Dataset<T> {
        self.repeat_inner(None)
    }

    fn repeat_inner(&self, count: Option<u64>) -> Dataset<T> {
        let up = self.clone();
        Dataset::from_factory(move |key| {
            let up = up.clone();
            let epochs = (0..).take_while(move |&r| count.map_or(true, |c| r < c));
            Box::new(epochs.flat_map(move |r| up.iter_keyed(epoch_key(key, r))))
        })
    }

    /// Pairs each element with its 0-based index in the pass.
    pub fn enumerate(&self) -> Dataset<(u64, T)> {
        let up = self.clone();
        Dataset::from_factory(move |key| {
            Box::new(up.iter_keyed(key).zip(0u64..).map(|(r, i)| r.map(|x| (i, x))))
        })
    }

    /// Pairs the elements of `self` and `other` in order; ends with the shorter.
    pub fn zip<U: Send + 'static>(&self, other: &Dataset<U>) -> Dataset<(T, U)> {
        let (a, b) = (self.clone(), other.clone());
        Dataset::from_factory(move |key| {
            Box::new(a.iter_keyed(key).zip(b.iter_keyed(key)).map(|(x, y)| Ok((x?, y?))))
        })
    }

    /// Every `num_shards`-th element starting at `index` (elements `i` with
    /// `i % num_shards == index`), as TF's `shard`: the shards `0..num_shards` are disjoint and
    /// together cover the dataset. Shard before shuffling so that workers split the same order.
    ///
    /// # Errors
    /// [`Error::Config`] if `num_shards` is 0 or `index >= num_shards`.
    pub fn shard(&self, num_shards: u64, index: u64) -> Result<Dataset<T>> {
        if num_shards == 0 || index >= num_shards {
            return Err(Error::config(
                "shard",
                format!("index must be in 0..num_shards, got index {index} of {num_shards} shards"),
            ));
        }
        let up = self.clone();
        Ok(Dataset::from_factory(move |key| {
            Box::new(
                up.iter_keyed(key)
                    .zip(0u64..)
                    .filter(move |(r, i)| r.is_err() || i % num_shards == index)
                    .map(|(r, _)| r),
            )
        }))
    }

    /// Groups consecutive elements into `Vec`s of `batch_size` (the last one shorter unless
    /// `drop_remainder`).
    ///
    /// # Errors
    /// [`Error::Config`] if `batch_size` is 0.
    pub fn batch(&self, batch_size: usize, drop_remainder: bool) -> Result<Dataset<Vec<T>>> {
        Ok(self
            .batch_indexed("batch", batch_size, drop_remainder)?
            .map(|b| b.into_iter().map(|(_, x)| x).collect()))
    }

    /// Like [`Dataset::batch`], keeping each element's index in the pass (for error messages).
    pub(crate) fn batch_indexed(
        &self,
        stage: &'static str,
        batch_size: usize,
        drop_remainder: bool,
    ) -> Result<Dataset<Vec<(u64, T)>>> {
        if batch_size == 0 {
            return Err(Error::config(stage, "batch_size must be > 0, got 0"));
        }
        let up = self.enumerate();
        Ok(Dataset::from_factory(move |key| {
            let mut it = up.iter_keyed(key);
            Box::new(std::iter::from_fn(move || {
                let mut batch = Vec::with_capacity(batch_size);
                for r in it.by_ref() {
                    match r {
                        Ok(x) => batch.push(x),
                        Err(e) => return Some(Err(e)),
                    }
                    if batch.len() == batch_size {
                        return Some(Ok(batch));
                    }
                }
                (!batch.is_empty() && !drop_remainder).then_some(Ok(batch))
            }))
        }))
    }
}

impl<T: Send + 'static> IntoIterator for &Dataset<T> {
    type Item = Result<T>;
    type IntoIter = Iter<T>;
    fn into_iter(self) -> Iter<T> {
        self.iter()
    }
}

/// `0..n` as a dataset, for the crate's tests.
#[cfg(test)]
pub(crate) fn range(n: i64) -> Dataset<i64> {
    Dataset::from_vec((0..n).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_compose_lazily_and_restart() {
        let ds = range(10).filter(|x| x % 3 != 0).map(|x| x + 100).skip(1).take(4);
        assert_eq!(ds.collect().unwrap(), [102, 104, 105, 107]);
        assert_eq!(ds.collect().unwrap(), [102, 104, 105, 107], "a second pass starts afresh");
    }

    #[test]
    fn batch_keeps_or_drops_the_remainder() {
        assert_eq!(
            range(5).batch(2, false).unwrap().collect().unwrap(),
            vec![vec![0, 1], vec![2, 3], vec![4]]
        );
        assert_eq!(range(5).batch(2, true).unwrap().collect().unwrap(), vec![vec![0, 1], vec![2, 3]]);
        let e = range(5).batch(0, false).unwrap_err();
        assert_eq!(e.to_string(), "batch: bad configuration: batch_size must be > 0, got 0");
    }

    #[test]
    fn repeat_enumerate_zip() {
        assert_eq!(range(3).repeat(2).collect().unwrap(), [0, 1, 2, 0, 1, 2]);
        assert_eq!(range(3).repeat(0).collect().unwrap(), Vec::<i64>::new());
        assert_eq!(range(2).repeat_forever().take(5).collect().unwrap(), [0, 1, 0, 1, 0]);
        assert_eq!(range(3).map(|x| x * 2).enumerate().collect().unwrap(), [(0, 0), (1, 2), (2, 4)]);
        let z = range(4).zip(&range(2).map(|x| -x)).collect().unwrap();
        assert_eq!(z, [(0, 0), (1, -1)]);
    }

    #[test]
    fn repeat_passes_one_epoch_key_per_repetition() {
        let keys = Dataset::from_factory(|key| Box::new(std::iter::once(Ok(key))));
        assert_eq!(keys.repeat(3).collect().unwrap(), [0, 1, 2]);
        let nested = keys.repeat(2).repeat(2).collect().unwrap();
        assert_eq!(nested, [0, 1, epoch_key(1, 0), epoch_key(1, 1)]);
        assert_eq!(nested.iter().collect::<std::collections::HashSet<_>>().len(), 4);
    }

    #[test]
    fn shards_are_disjoint_and_cover() {
        let shards: Vec<Vec<i64>> =
            (0..3).map(|i| range(10).shard(3, i).unwrap().collect().unwrap()).collect();
        assert_eq!(shards, vec![vec![0, 3, 6, 9], vec![1, 4, 7], vec![2, 5, 8]]);
        assert!(matches!(range(3).shard(2, 2), Err(Error::Config { .. })));
        assert!(matches!(range(3).shard(0, 0), Err(Error::Config { .. })));
    }

    #[test]
    fn an_error_ends_the_pass_and_iter_from_resumes() {
        let ds =
            range(6).try_map(|x| if x == 3 { Err(element_error("probe", x as u64, "three")) } else { Ok(x) });
        let got: Vec<Result<i64>> = ds.iter().collect();
        assert_eq!(got.len(), 4, "three elements, one error, then the end");
        assert_eq!(got[3].as_ref().unwrap_err().to_string(), "probe: element 3: three");
        let resumed: Vec<i64> = range(10).repeat(2).iter_from(7).collect::<Result<_>>().unwrap();
        assert_eq!(resumed, range(10).repeat(2).collect().unwrap()[7..]);
        assert!(ds.skip(5).iter().next().unwrap().is_err(), "an error among skipped elements surfaces");
    }
}
