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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::proto::{EventWhat, Value};
    use crate::summary::read_events;
    use couplet_modules::Store;
    use tch::{Kind, Tensor};

    /// The scalars (tag, value) and histograms (tag, count) of an events file.
    type Written = (Vec<(String, f32)>, Vec<(String, f64)>);

    fn written(path: &std::path::Path) -> Written {
        let (mut scalars, mut histograms) = (Vec::new(), Vec::new());
        for e in read_events(path).unwrap() {
            if let Some(EventWhat::Summary(s)) = e.what {
                for v in s.value {
                    match v.value {
                        Some(Value::SimpleValue(x)) => scalars.push((v.tag, x)),
                        Some(Value::Histo(h)) => histograms.push((v.tag, h.num)),
                        other => panic!("unexpected {other:?}"),
                    }
                }
            }
        }
        (scalars, histograms)
    }

    #[test]
    fn a_histogram_and_zero_fraction_per_variable_and_gradient() {
        let store = Store::cpu();
        let scope = store.root().child("net").unwrap();
        let mut w = scope.var("w", &[2, 2]).create().unwrap();
        let mut b = scope.var("b", &[3]).create().unwrap();
        tch::no_grad(|| {
            w.copy_(&Tensor::from_slice(&[0.0f32, 1.0, 0.0, 0.0]).reshape([2, 2]));
            b.copy_(&Tensor::from_slice(&[1.0f32, 2.0, 3.0]));
        });
        // Only w gets a gradient: d sum(w * [[0, 2], [0, 0]]) / dw.
        (&w * Tensor::from_slice(&[0.0f32, 2.0, 0.0, 0.0]).reshape([2, 2])).sum(Kind::Float).backward();
        let dir = std::env::temp_dir().join(format!("couplet-summary-variables-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let writer = SummaryWriter::new(&dir).unwrap();
        let mut variables = store.variables();
        variables.sort_by(|a, b| a.name().cmp(b.name()));
        summarize_variables(&writer, &variables, 7).unwrap();
        summarize_gradients(&writer, &variables, 7).unwrap();
        let path = writer.path().to_path_buf();
        writer.close().unwrap();
        let (scalars, histograms) = written(&path);
        assert_eq!(
            scalars,
            vec![
                ("variables/net/b/zero_fraction".to_string(), 0.0),
                ("variables/net/w/zero_fraction".to_string(), 0.75),
                ("gradients/net/w/zero_fraction".to_string(), 0.75),
            ]
        );
        assert_eq!(
            histograms,
            vec![
                ("variables/net/b".to_string(), 3.0),
                ("variables/net/w".to_string(), 4.0),
                ("gradients/net/w".to_string(), 4.0),
            ]
        );
        // A non-finite variable is refused, naming it.
        tch::no_grad(|| b.copy_(&Tensor::from_slice(&[1.0f32, f32::NAN, 3.0])));
        let writer = SummaryWriter::new(&dir).unwrap();
        let e = summarize_variables(&writer, &variables, 8).unwrap_err();
        assert!(e.to_string().starts_with("summary: variables/net/b: "), "{e}");
        writer.close().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
