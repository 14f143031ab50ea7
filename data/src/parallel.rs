//! Background threads: [`Dataset::map_parallel`] (ordered, on N workers) and
//! [`Dataset::prefetch`] (a bounded queue filled by one producer thread).
//!
//! A worker's error, or a panic in a worker (caught and turned into
//! [`Error::InvalidArgument`] naming the stage and element), reaches the consumer as an `Err`
//! in order. Dropping the iterator stops the threads: they see the closed channels and return.

use crate::dataset::{element_error, Dataset, Iter};
use couplet_modules::{Error, Result};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, sync_channel, Receiver};
use std::sync::{Arc, Mutex};

/// The text of a caught panic.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_string())
}

/// The consumer side of [`Dataset::map_parallel`]: results reordered by element index.
struct Ordered<U> {
    results: Receiver<(u64, Result<U>)>,
    tokens: std::sync::mpsc::SyncSender<()>,
    pending: BTreeMap<u64, Result<U>>,
    next: u64,
    ended: Arc<Mutex<Option<u64>>>,
}

impl<U> Iterator for Ordered<U> {
    type Item = Result<U>;
    fn next(&mut self) -> Option<Result<U>> {
        loop {
            if let Some(r) = self.pending.remove(&self.next) {
                self.next += 1;
                // The token lets the dispatcher send one more element.
                let _ = self.tokens.try_send(());
                return Some(r);
            }
            if self.ended.lock().map_or(true, |end| end.is_some_and(|n| n <= self.next)) {
                return None;
            }
            match self.results.recv() {
                Ok((i, r)) => {
                    self.pending.insert(i, r);
                }
                // Every sender is gone: the dispatcher ended and every worker finished.
                Err(_) => {
                    return self.pending.remove(&self.next).inspect(|_| self.next += 1);
                }
            }
        }
    }
}

impl<T: Send + 'static> Dataset<T> {
    /// Applies `f` on `workers` threads, keeping the input order (TF's `map` with
    /// `num_parallel_calls` and `deterministic=True`). At most `2 * workers` elements are in
    /// flight. An `Err` from `f`, or a panic in it, ends the pass with an error at that element.
    ///
    /// # Errors
    /// [`Error::Config`] if `workers` is 0.
    pub fn map_parallel<U: Send + 'static>(
        &self,
        workers: usize,
        f: impl Fn(T) -> Result<U> + Send + Sync + 'static,
    ) -> Result<Dataset<U>> {
        if workers == 0 {
            return Err(Error::config("map_parallel", "workers must be > 0, got 0"));
        }
        let f = Arc::new(f);
        let up = self.clone();
        Ok(Dataset::from_factory(move |key| -> Iter<U> {
            let in_flight = 2 * workers;
            let (token_tx, token_rx) = sync_channel::<()>(in_flight);
            for _ in 0..in_flight {
                let _ = token_tx.try_send(());
            }
            let (job_tx, job_rx) = sync_channel::<(u64, T)>(workers);
            let job_rx = Arc::new(Mutex::new(job_rx));
            let (result_tx, result_rx) = channel::<(u64, Result<U>)>();
            let ended = Arc::new(Mutex::new(None));
            let spawned = (|| -> std::io::Result<()> {
                let (input, results, end) = (up.iter_keyed(key), result_tx.clone(), Arc::clone(&ended));
                std::thread::Builder::new().name("map_parallel-dispatch".into()).spawn(move || {
                    let mut count = 0u64;
                    for r in input {
                        if token_rx.recv().is_err() {
                            return;
                        }
                        match r {
                            Ok(x) => {
                                if job_tx.send((count, x)).is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                let _ = results.send((count, Err(e)));
                                count += 1;
                                break;
                            }
                        }
                        count += 1;
                    }
                    if let Ok(mut end) = end.lock() {
                        *end = Some(count);
                    }
                })?;
                for w in 0..workers {
                    let (jobs, results, f) = (Arc::clone(&job_rx), result_tx.clone(), Arc::clone(&f));
                    std::thread::Builder::new().name(format!("map_parallel-{w}")).spawn(move || loop {
                        let job = match jobs.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok((i, x)) = job else { return };
                        let out = catch_unwind(AssertUnwindSafe(|| f(x))).unwrap_or_else(|p| {
                            Err(element_error(
                                "map_parallel",
                                i,
                                format!("the map function panicked: {}", panic_text(&*p)),
                            ))
                        });
                        if results.send((i, out)).is_err() {
                            return;
                        }
                    })?;
                }
                Ok(())
            })();
            drop(result_tx);
            if let Err(source) = spawned {
                return Box::new(std::iter::once(Err(Error::Io {
                    context: "map_parallel: starting a worker thread".into(),
                    source,
                })));
            }
            Box::new(Ordered {
                results: result_rx,
                tokens: token_tx,
                pending: BTreeMap::new(),
                next: 0,
                ended,
            })
        }))
    }

    /// Produces elements on a background thread into a queue of `buffer_size`, so that making
    /// element `k+1` (reading, batching, padding) overlaps the consumer's work on element `k`
    /// (TF's `prefetch`). Order and errors are kept; a panic upstream becomes an error.
    ///
    /// # Errors
    /// [`Error::Config`] if `buffer_size` is 0.
    pub fn prefetch(&self, buffer_size: usize) -> Result<Dataset<T>> {
        if buffer_size == 0 {
            return Err(Error::config("prefetch", "buffer_size must be > 0, got 0"));
        }
        let up = self.clone();
        Ok(Dataset::from_factory(move |key| -> Iter<T> {
            let (tx, rx) = sync_channel::<Result<T>>(buffer_size);
            let up = up.clone();
            let spawned = std::thread::Builder::new().name("prefetch".into()).spawn(move || {
                let mut count = 0u64;
                let mut input = up.iter_keyed(key);
                loop {
                    match catch_unwind(AssertUnwindSafe(|| input.next())) {
                        Ok(Some(r)) => {
                            if tx.send(r).is_err() {
                                return;
                            }
                        }
                        Ok(None) => return,
                        Err(p) => {
                            let message = format!("the pipeline panicked: {}", panic_text(&*p));
                            let _ = tx.send(Err(element_error("prefetch", count, message)));
                            return;
                        }
                    }
                    count += 1;
                }
            });
            match spawned {
                Ok(_) => Box::new(rx.into_iter()),
                Err(source) => Box::new(std::iter::once(Err(Error::Io {
                    context: "prefetch: starting the producer thread".into(),
                    source,
                }))),
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::range;
    use std::time::Duration;

    #[test]
    fn map_parallel_keeps_the_order() {
        // Later elements finish first: a worker sleeps longer for small inputs.
        let ds = range(40)
            .map_parallel(4, |x| {
                std::thread::sleep(Duration::from_micros(((40 - x) * 50) as u64));
                Ok(x * x)
            })
            .unwrap();
        assert_eq!(ds.collect().unwrap(), (0..40).map(|x| x * x).collect::<Vec<_>>());
        assert_eq!(ds.take(3).collect().unwrap(), [0, 1, 4], "an early drop stops the threads");
        assert!(matches!(range(1).map_parallel(0, Ok), Err(Error::Config { .. })));
    }

    #[test]
    fn a_worker_error_or_panic_reaches_the_consumer_in_order() {
        let ds = range(20)
            .map_parallel(3, |x| if x == 11 { Err(Error::invalid("user", "eleven")) } else { Ok(x) })
            .unwrap();
        let got: Vec<Result<i64>> = ds.iter().collect();
        assert_eq!(got.len(), 12);
        assert_eq!(got[11].as_ref().unwrap_err().to_string(), "user: eleven");
        let ds = range(20)
            .map_parallel(3, |x| {
                assert!(x != 5, "five is not allowed");
                Ok(x)
            })
            .unwrap();
        let e = ds.collect().unwrap_err().to_string();
        assert!(
            e.starts_with("map_parallel: element 5: the map function panicked: five is not allowed"),
            "{e}"
        );
    }

    #[test]
    fn prefetch_keeps_order_and_errors_and_overlaps() {
        let ds = range(50).prefetch(3).unwrap();
        assert_eq!(ds.collect().unwrap(), range(50).collect().unwrap());
        let failing = range(5).try_map(|x| if x == 2 { Err(Error::invalid("src", "bad")) } else { Ok(x) });
        let got: Vec<Result<i64>> = failing.prefetch(2).unwrap().iter().collect();
        assert_eq!(got.len(), 3);
        assert!(got[2].is_err());
        let panicking = range(5).map(|x| {
            assert!(x != 3, "boom");
            x
        });
        let e = panicking.prefetch(2).unwrap().collect().unwrap_err().to_string();
        assert!(e.starts_with("prefetch: element 3: the pipeline panicked: boom"), "{e}");
        // The producer runs ahead: after the consumer waits once, the queue is full.
        let produced = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let p = Arc::clone(&produced);
        let ds = range(100).map(move |x| {
            p.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            x
        });
        let mut it = ds.prefetch(4).unwrap().iter();
        assert_eq!(it.next().unwrap().unwrap(), 0);
        std::thread::sleep(Duration::from_millis(100));
        let n = produced.load(std::sync::atomic::Ordering::SeqCst);
        assert!((5..=7).contains(&n), "made {n}: one taken, four queued, one waiting to be queued");
        assert!(matches!(range(1).prefetch(0), Err(Error::Config { .. })));
    }
}
