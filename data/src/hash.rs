//! The stable string hash of hash buckets and crossed columns: TF's own, FarmHash's
//! `Fingerprint64` (from the `farmhash` crate, checked against values TensorFlow computes in
//! the fixtures), and TF's `FingerprintCat64` to combine fingerprints.

/// FarmHash `Fingerprint64` of `bytes` (what TF's `string_to_hash_bucket_fast` and
/// `tf.fingerprint` use).
pub fn fingerprint64(bytes: &[u8]) -> u64 {
    farmhash::fingerprint64(bytes)
}

/// TF's `FingerprintCat64(a, b)` (`tensorflow/core/platform/fingerprint.h`), which
/// `tf.sparse.cross_hashed` chains from the key `0xDECAFCAFFE` over a cross's features.
pub fn fingerprint_cat64(a: u64, b: u64) -> u64 {
    const MUL: u64 = 0xc6a4_a793_5bd1_e995;
    let shift_mix = |v: u64| v ^ (v >> 47);
    let mut result = a ^ MUL;
    result ^= shift_mix(b.wrapping_mul(MUL)).wrapping_mul(MUL);
    result = result.wrapping_mul(MUL);
    result = shift_mix(result).wrapping_mul(MUL);
    shift_mix(result)
}

/// TF's `string_to_hash_bucket_fast(bytes, num_buckets)`: `fingerprint64(bytes) % num_buckets`
/// (`num_buckets > 0`, checked by the callers).
pub fn hash_bucket(bytes: &[u8], num_buckets: u64) -> i64 {
    (fingerprint64(bytes) % num_buckets.max(1)) as i64
}
