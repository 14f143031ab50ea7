"""The tf.data half of the couplet::data side-by-side (benches/data.rs builds the same corpus).

    PY=$(bash scripts/fixtures/tf_env.sh) && "$PY" scripts/bench/tfdata.py [N]

Sequence i has length 1 + (i * 7919 + 13) % 200 and tokens (i + j) % 1000. Prints elements/s
(median of 3 full passes) of padded_batch(64).prefetch(2) and
bucket_by_sequence_length(boundaries 10..190, batch 64).prefetch(2), and the time a consumer
doing 2 ms of work per batch waits for data.
"""

import sys
import time

import numpy as np
import tensorflow as tf

assert tf.__version__ == "2.21.0", tf.__version__
N = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
BATCH = 64


def corpus(n):
    i = np.arange(n, dtype=np.int64)
    lengths = 1 + (i * 7919 + 13) % 200
    starts = np.repeat(i, lengths)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    values = (starts + offsets) % 1000
    ragged = tf.RaggedTensor.from_row_lengths(values, lengths)
    return tf.data.Dataset.from_tensor_slices(ragged).map(lambda x: x)


def padded(ds):
    return ds.padded_batch(BATCH).prefetch(2)


def bucketed(ds):
    boundaries = [10 * k for k in range(1, 20)]
    return ds.bucket_by_sequence_length(lambda x: tf.shape(x)[0], boundaries, [BATCH] * (len(boundaries) + 1)).prefetch(2)


def elements_per_second(ds):
    start = time.perf_counter()
    n = 0
    for b in ds:
        n += int(b.shape[0])
    return n / (time.perf_counter() - start)


def consumer_wait(ds, work=0.002):
    waited, start = 0.0, time.perf_counter()
    it = iter(ds)
    while True:
        t = time.perf_counter()
        try:
            next(it)
        except StopIteration:
            break
        waited += time.perf_counter() - t
        busy = time.perf_counter()
        while time.perf_counter() - busy < work:
            pass
    return waited, time.perf_counter() - start


ds = corpus(N)
print(f"tf.data {tf.__version__} corpus={N} batch={BATCH}")
print("padded_batch+prefetch elements/s: %.0f" % sorted(elements_per_second(padded(ds)) for _ in range(3))[1])
print("bucket_by_sequence_length+prefetch elements/s: %.0f" % sorted(elements_per_second(bucketed(ds)) for _ in range(3))[1])
small = corpus(min(N, 64_000))
waited, total = consumer_wait(bucketed(small))
print("consumer wait (bucketed, 2 ms work per batch, %d sequences): %.1f ms of %.1f ms (%.2f%%)" % (min(N, 64_000), waited * 1e3, total * 1e3, 100 * waited / total))
