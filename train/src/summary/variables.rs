//! Summaries of a model's variables and gradients, as TensorFlow users wrote them by hand:
//! a histogram and the zero fraction of each.

use super::histogram::{zero_fraction, Histogram};
use super::writer::SummaryWriter;
use couplet_modules::{Error, Result, Variable};

/// Writes, for each variable, a histogram of its values under `variables/<name>` and the
/// fraction of its elements equal to zero under `variables/<name>/zero_fraction`, at `step`.
///
/// # Errors
/// [`Error::InvalidArgument`] naming the variable when it holds a NaN or an infinity (the
/// first such variable; nothing is written for it or after it); [`Error::Io`] if the writer
/// thread failed.
pub fn summarize_variables(writer: &SummaryWriter, variables: &[Variable], step: i64) -> Result<()> {
    for v in variables {
        summarize(writer, &format!("variables/{}", v.name()), v.tensor(), step)?;
    }
    Ok(())
}

/// Writes, for each variable that has a gradient, a histogram of the gradient under
/// `gradients/<name>` and its zero fraction under `gradients/<name>/zero_fraction`, at
/// `step`. Variables without a gradient (frozen, or not used by the loss) are skipped.
///
/// # Errors
/// As [`summarize_variables`], for the gradients.
pub fn summarize_gradients(writer: &SummaryWriter, variables: &[Variable], step: i64) -> Result<()> {
    for v in variables {
        let grad = v.tensor().grad();
        if grad.defined() {
            summarize(writer, &format!("gradients/{}", v.name()), &grad, step)?;
        }
    }
    Ok(())
}

fn summarize(writer: &SummaryWriter, tag: &str, values: &tch::Tensor, step: i64) -> Result<()> {
    let histogram =
        Histogram::from_tensor(values).map_err(|e| Error::invalid("summary", format!("{tag}: {e}")))?;
    writer.add_histogram_values(tag, &histogram, step)?;
    writer.add_scalar(&format!("{tag}/zero_fraction"), zero_fraction(values)?, step)
}
