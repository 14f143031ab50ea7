//! Histograms in TensorFlow's default bucket layout (`tensorflow/core/lib/histogram`):
//! buckets whose edges grow by 10% from `1e-12` up to `1e20`, mirrored for negative values,
//! with `0` and `±f64::MAX` as edges, so a histogram written by couplet bins values exactly as
//! `tf.summary.histogram` (v1) does.

use super::proto::HistogramProto;
use couplet_modules::{Error, Result, TorchContext};
use std::sync::OnceLock;
use tch::{Kind, Tensor};

/// The right edges of TensorFlow's default histogram buckets, increasing: `-f64::MAX`, the
/// negated positive edges in reverse, `0`, then `1e-12, 1.1e-12, ..` (each the previous
/// times 1.1, while below `1e20`) and `f64::MAX`. 1549 edges.
pub fn default_bucket_limits() -> &'static [f64] {
    static LIMITS: OnceLock<Vec<f64>> = OnceLock::new();
    LIMITS.get_or_init(|| {
        let mut positive = Vec::new();
        let mut v = 1.0e-12;
        while v < 1.0e20 {
            positive.push(v);
            v *= 1.1;
        }
        positive.push(f64::MAX);
        let mut limits: Vec<f64> = positive.iter().rev().map(|v| -v).collect();
        limits.push(0.0);
        limits.extend_from_slice(&positive);
        limits
    })
}

/// A histogram being filled: counts over [`default_bucket_limits`] plus the running min, max,
/// count, sum and sum of squares. Bucket `i` counts the values `v` with
/// `limits[i - 1] <= v < limits[i]` (TensorFlow's `upper_bound` rule).
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<f64>,
    min: f64,
    max: f64,
    num: f64,
    sum: f64,
    sum_squares: f64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Histogram {
            counts: vec![0.0; default_bucket_limits().len()],
            min: f64::MAX,
            max: -f64::MAX,
            num: 0.0,
            sum: 0.0,
            sum_squares: 0.0,
        }
    }

    /// Adds `values`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] from `summary/histogram` naming the first NaN or infinite
    /// value (TensorFlow's histogram op refuses them too); nothing is added then.
    pub fn add_all(&mut self, values: &[f64]) -> Result<()> {
        if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(Error::invalid(
                "summary/histogram",
                format!("value {i} is {v}: histograms take finite values only"),
            ));
        }
        let limits = default_bucket_limits();
        for &v in values {
            let bucket = limits.partition_point(|&limit| limit <= v);
            // `v < f64::MAX` or `v == f64::MAX`; the latter lands past the last edge, which
            // TensorFlow clamps into the last bucket.
            self.counts[bucket.min(limits.len() - 1)] += 1.0;
            self.min = self.min.min(v);
            self.max = self.max.max(v);
            self.sum += v;
            self.sum_squares += v * v;
        }
        self.num += values.len() as f64;
        Ok(())
    }

    /// A histogram of every element of `values` (any shape, any real kind, any device).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an undefined tensor or a NaN/infinite element;
    /// [`Error::Torch`] if the copy to the CPU fails.
    pub fn from_tensor(values: &Tensor) -> Result<Self> {
        if !values.defined() {
            return Err(Error::invalid("summary/histogram", "the tensor is undefined"));
        }
        let flat = values
            .f_detach()
            .and_then(|t| t.f_to_kind(Kind::Double))
            .and_then(|t| t.f_flatten(0, -1))
            .and_then(|t| t.f_to_device(tch::Device::Cpu))
            .ctx("summary/histogram")?;
        let data = Vec::<f64>::try_from(&flat).ctx("summary/histogram")?;
        let mut h = Histogram::new();
        h.add_all(&data)?;
        Ok(h)
    }

    /// How many values were added.
    pub fn count(&self) -> f64 {
        self.num
    }

    /// The histogram as TensorFlow encodes it: runs of empty buckets merged into the next
    /// edge (`EncodeToProto(.., preserve_zero_buckets = false)`), min/max `0` when empty.
    pub fn to_proto(&self) -> HistogramProto {
        let limits = default_bucket_limits();
        let mut bucket_limit = Vec::new();
        let mut bucket = Vec::new();
        let mut i = 0;
        while i < self.counts.len() {
            let (mut end, mut count) = (limits[i], self.counts[i]);
            let mut j = i + 1;
            while count <= 0.0 && j < self.counts.len() && self.counts[j] <= 0.0 {
                end = limits[j];
                count = self.counts[j];
                j += 1;
            }
            bucket_limit.push(end);
            bucket.push(count);
            i = j;
        }
        let empty = self.num == 0.0;
        HistogramProto {
            min: if empty { 0.0 } else { self.min },
            max: if empty { 0.0 } else { self.max },
            num: self.num,
            sum: self.sum,
            sum_squares: self.sum_squares,
            bucket_limit,
            bucket,
        }
    }
}

/// The fraction of elements of `values` equal to zero (`tf.nn.zero_fraction`); 0 for an empty
/// tensor.
///
/// # Errors
/// [`Error::InvalidArgument`] for an undefined tensor; [`Error::Torch`] if libtorch fails.
pub fn zero_fraction(values: &Tensor) -> Result<f64> {
    if !values.defined() {
        return Err(Error::invalid("summary/zero_fraction", "the tensor is undefined"));
    }
    let n = values.numel();
    if n == 0 {
        return Ok(0.0);
    }
    let zeros = values.f_eq(0.0).and_then(|t| t.f_sum(Kind::Int64)).ctx("summary/zero_fraction")?;
    let zeros = i64::try_from(&zeros).ctx("summary/zero_fraction")?;
    Ok(zeros as f64 / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_limits_follow_tensorflow() {
        let l = default_bucket_limits();
        // 774 positive edges below 1e20 (1e-12 * 1.1^k < 1e20 for k < 774), their negatives,
        // zero and +-DBL_MAX.
        assert_eq!(l.len(), 2 * 774 + 3);
        assert_eq!(l[0], -f64::MAX);
        assert_eq!(l[l.len() - 1], f64::MAX);
        let zero = l.iter().position(|&v| v == 0.0).unwrap();
        assert_eq!(zero, 775);
        assert_eq!(l[zero + 1], 1e-12);
        assert!((l[zero + 2] - 1.1e-12).abs() < 1e-27);
        assert_eq!(l[zero - 1], -1e-12);
        assert!(l.windows(2).all(|w| w[0] < w[1]));
        assert!(l[l.len() - 2] < 1e20 && l[l.len() - 2] * 1.1 >= 1e20);
    }

    #[test]
    fn values_fall_in_their_tensorflow_buckets_and_empty_runs_merge() {
        let mut h = Histogram::new();
        // 0 lands in the bucket ending at 1e-12; 1.0 in the bucket whose edge is the first
        // above 1.0; -1.0 in the bucket ending at the first edge above -1.
        h.add_all(&[0.0, 1.0, 1.0, -1.0]).unwrap();
        let p = h.to_proto();
        assert_eq!((p.min, p.max, p.num, p.sum, p.sum_squares), (-1.0, 1.0, 4.0, 1.0, 3.0));
        let l = default_bucket_limits();
        let above = |v: f64| *l.iter().find(|&&e| e > v).unwrap();
        let filled: Vec<(f64, f64)> =
            p.bucket_limit.iter().zip(&p.bucket).filter(|(_, &c)| c > 0.0).map(|(&e, &c)| (e, c)).collect();
        assert_eq!(filled, vec![(above(-1.0), 1.0), (1e-12, 1.0), (above(1.0), 2.0)]);
        // Between filled buckets, every run of empty ones is a single entry, and the last entry
        // (the run up to DBL_MAX) closes the list.
        assert!(p.bucket.windows(2).all(|w| w[0] > 0.0 || w[1] > 0.0));
        assert_eq!(*p.bucket_limit.last().unwrap(), f64::MAX);
        assert_eq!(p.bucket.iter().sum::<f64>(), 4.0);
        assert_eq!(p.bucket.len(), 7);
    }

    #[test]
    fn non_finite_and_undefined_inputs_are_refused() {
        let mut h = Histogram::new();
        let e = h.add_all(&[1.0, f64::NAN]).unwrap_err();
        assert_eq!(e.to_string(), "summary/histogram: value 1 is NaN: histograms take finite values only");
        assert_eq!(h.count(), 0.0);
        assert!(Histogram::from_tensor(&Tensor::new()).is_err());
        let t = Tensor::from_slice(&[1.0f32, f32::INFINITY]);
        assert!(Histogram::from_tensor(&t).unwrap_err().to_string().contains("value 1 is inf"));
    }

    #[test]
    fn zero_fraction_counts_exact_zeros() {
        let t = Tensor::from_slice(&[0.0f32, 1.0, 0.0, -2.0]).reshape([2, 2]);
        assert_eq!(zero_fraction(&t).unwrap(), 0.5);
        assert_eq!(zero_fraction(&Tensor::zeros([0], (Kind::Float, tch::Device::Cpu))).unwrap(), 0.0);
        let h = Histogram::from_tensor(&t).unwrap();
        assert_eq!(h.count(), 4.0);
    }
}
