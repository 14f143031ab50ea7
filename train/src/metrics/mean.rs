//! [`Mean`]: the weighted mean of everything seen (`tf.metrics.mean`).

use super::check::{defined, finite, floating, ratio};
use super::Metric;
use couplet_modules::{Error, Result, TorchContext};
use tch::{Kind, Tensor};

/// The (weighted) mean of every value given since the last reset, e.g. of per-batch losses.
#[derive(Clone, Debug)]
pub struct Mean {
    name: String,
    total: f64,
    weight: f64,
}

impl Mean {
    /// A mean reported under `name` (e.g. `loss`).
    pub fn new(name: impl Into<String>) -> Self {
        Mean { name: name.into(), total: 0.0, weight: 0.0 }
    }

    fn scope(&self) -> String {
        format!("metrics/{}", self.name)
    }

    /// Adds one value with weight `weight` (>= 0; 1 for a plain mean).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a non-finite value or a negative/non-finite weight.
    pub fn update_value(&mut self, value: f64, weight: f64) -> Result<()> {
        if !value.is_finite() {
            return Err(Error::invalid(self.scope(), format!("value must be finite, got {value}")));
        }
        if !(weight.is_finite() && weight >= 0.0) {
            return Err(Error::invalid(
                self.scope(),
                format!("weight must be finite and >= 0, got {weight}"),
            ));
        }
        self.total += value * weight;
        self.weight += weight;
        Ok(())
    }

    /// Adds every element of `values` (any shape, floating point), each with weight 1, or
    /// with the matching element of `weights` (the same shape, >= 0).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an undefined or non-floating tensor, a non-finite
    /// element or a negative weight; [`Error::Shape`] for weights of another shape.
    pub fn update(&mut self, values: &Tensor, weights: Option<&Tensor>) -> Result<()> {
        let scope = self.scope();
        floating(&scope, "values", values)?;
        finite(&scope, "values", values)?;
        let (total, weight) = match weights {
            None => {
                let sum = values.f_sum(Kind::Double).ctx(&scope)?;
                (f64::try_from(&sum).ctx(&scope)?, values.numel() as f64)
            }
            Some(w) => {
                defined(&scope, "weights", w)?;
                if w.size() != values.size() {
                    return Err(Error::shape(
                        &scope,
                        "weights",
                        format!("{:?} (the values' shape)", values.size()),
                        w.size(),
                    ));
                }
                let w = w.f_to_kind(Kind::Double).ctx(&scope)?;
                finite(&scope, "weights", &w)?;
                let negative = w.f_lt(0.0).ctx(&scope)?;
                if super::check::count(&scope, &negative)? > 0 {
                    return Err(Error::invalid(&scope, "weights must be >= 0"));
                }
                let product = values.f_to_kind(Kind::Double).and_then(|v| v.f_mul(&w)).ctx(&scope)?;
                let total = f64::try_from(&product.f_sum(Kind::Double).ctx(&scope)?).ctx(&scope)?;
                (total, f64::try_from(&w.f_sum(Kind::Double).ctx(&scope)?).ctx(&scope)?)
            }
        };
        self.total += total;
        self.weight += weight;
        Ok(())
    }
}

impl Metric for Mean {
    fn name(&self) -> &str {
        &self.name
    }

    fn result(&self) -> Result<f64> {
        ratio(&self.scope(), self.total, self.weight)
    }

    fn reset(&mut self) {
        self.total = 0.0;
        self.weight = 0.0;
    }
}
