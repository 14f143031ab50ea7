//! `format_variables` and `log_variables`: a table of variables with their shapes, kinds,
//! trainable flags and devices, and totals (Sonnet's `snt.format_variables` /
//! `snt.log_variables`).

use crate::error::{Error, Result};
use crate::store::Variable;
use std::io::Write;

/// Formats `variables` as an org-mode table (Sonnet v2's default `tablefmt="orgtbl"`), in the
/// given order, with one row per variable and a totals line:
///
/// ```text
/// | Variable   | Shape  | Type  | Trainable | Device |
/// |------------+--------+-------+-----------+--------|
/// | linear/w   | [4, 3] | Float | true      | Cpu    |
/// | linear/b   | [3]    | Float | true      | Cpu    |
/// Total: 2 variables (2 trainable), 15 parameters (15 trainable), 60 bytes
/// ```
///
/// Element and byte counts saturate at `u64::MAX` rather than overflow.
pub fn format_variables(variables: &[Variable]) -> String {
    let header = ["Variable", "Shape", "Type", "Trainable", "Device"].map(String::from);
    let rows: Vec<[String; 5]> = variables
        .iter()
        .map(|v| {
            let t = v.tensor();
            [
                v.name().to_string(),
                format!("{:?}", t.size()),
                format!("{:?}", t.kind()),
                v.trainable().to_string(),
                format!("{:?}", t.device()),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String; 5]| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, &w)| format!("{c:<w$}")).collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let mut out = line(&header);
    let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w + 2)).collect();
    out.push_str(&format!("|{}|\n", rule.join("+")));
    for row in &rows {
        out.push_str(&line(row));
    }
    let (mut params, mut trainable_params, mut bytes, mut trainable) = (0u64, 0u64, 0u64, 0usize);
    for v in variables {
        let t = v.tensor();
        let n = t
            .size()
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(u64::try_from(d).ok()?))
            .unwrap_or(u64::MAX);
        params = params.saturating_add(n);
        bytes = bytes.saturating_add(n.saturating_mul(t.kind().elt_size_in_bytes() as u64));
        if v.trainable() {
            trainable += 1;
            trainable_params = trainable_params.saturating_add(n);
        }
    }
    out.push_str(&format!(
        "Total: {} variables ({trainable} trainable), {params} parameters ({trainable_params} trainable), {bytes} bytes\n",
        variables.len()
    ));
    out
}

/// Writes [`format_variables`]'s table to `out` (Sonnet logs it at info level; pass
/// `std::io::stderr()` for the same effect).
///
/// # Errors
/// [`Error::Io`] if writing fails.
pub fn log_variables(variables: &[Variable], out: &mut impl Write) -> Result<()> {
    out.write_all(format_variables(variables).as_bytes())
        .map_err(|source| Error::Io { context: "log_variables".to_string(), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Linear, LinearConfig, Module, Store};

    #[test]
    fn table_lists_every_variable_with_totals() {
        let store = Store::cpu();
        let lin = Linear::new(&store.root(), LinearConfig::new(3).with_input_size(4)).unwrap();
        let frozen = store.root().var("frozen", &[2]).trainable(false).create().unwrap();
        assert_eq!(frozen.size(), [2]);
        let mut vars = lin.variables().unwrap();
        vars.extend(store.get("frozen"));
        let table = format_variables(&vars);
        let expected = "\
| Variable | Shape  | Type  | Trainable | Device |
|----------+--------+-------+-----------+--------|
| linear/w | [4, 3] | Float | true      | Cpu    |
| linear/b | [3]    | Float | true      | Cpu    |
| frozen   | [2]    | Float | false     | Cpu    |
Total: 3 variables (2 trainable), 17 parameters (15 trainable), 68 bytes
";
        assert_eq!(table, expected);
        let mut out = Vec::new();
        log_variables(&vars, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), expected);
        assert_eq!(
            format_variables(&[]).lines().last(),
            Some("Total: 0 variables (0 trainable), 0 parameters (0 trainable), 0 bytes")
        );
    }
}
