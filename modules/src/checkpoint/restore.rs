//! Restoring variables in place from a checkpoint file ([`restore`], [`restore_with`]):
//! strict by default, or partial with [`RestoreOptions`], with an optional scope-prefix
//! mapping between file and variables.

use super::checkpointable::Checkpointable;
use super::format::{ParsedFile, OPTIMIZERS_KEY, OPTIMIZER_SCOPE};
use crate::error::{Error, Result};
use crate::store::Variable;
use crate::util::shape_str;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::Tensor;

/// Restores every variable of `target` from `path`, strictly: the file must hold exactly
/// these names, with the same shapes. Values are copied in place (under `no_grad`), converted
/// to each variable's kind and device.
///
/// # Errors
/// [`Error::NotBuilt`] for an unbuilt lazy module. [`Error::Checkpoint`] naming `path` if the
/// file is missing, truncated or not safetensors, or if it does not match: the message lists
/// every variable missing in the file, every unexpected tensor and every shape mismatch with
/// both shapes (`linear/w: variable [3, 2], file [2, 3]`); if a tensor's bytes do not match
/// the CRC-32C checksum couplet stored for it (a corrupted file; see
/// [`RestoreOptions::skip_checksums`]); or if a value is not finite once converted to its
/// variable's kind (NaN weights, `1e10` into a `Half` store). Nothing is written on error.
///
/// In a file written by [`CheckpointManager::save_with_optimizers`](super::CheckpointManager::save_with_optimizers) the optimizer state
/// (the keys under `optimizer/`) is not part of the model: it is ignored here and by
/// [`restore_with`].
pub fn restore(target: &(impl Checkpointable + ?Sized), path: impl AsRef<Path>) -> Result<RestoreReport> {
    restore_with(target, path, &RestoreOptions::strict())
}

/// Restores the variables of `target` from `path` as `options` allow (e.g.
/// [`RestoreOptions::partial`] restores the intersection), reporting what was restored and
/// what was skipped.
///
/// # Errors
/// As [`restore`], for the differences `options` do not allow; shape mismatches are always
/// errors.
pub fn restore_with(
    target: &(impl Checkpointable + ?Sized),
    path: impl AsRef<Path>,
    options: &RestoreOptions,
) -> Result<RestoreReport> {
    let vars = target.checkpoint_variables()?;
    restore_vars(path.as_ref(), &vars, options)
}

/// How [`restore_with`] matches a file's tensors to variables.
///
/// The default is strict: every variable must have a tensor of the same shape in the file and
/// every tensor of the file must belong to a variable. Shape mismatches are always errors.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RestoreOptions {
    /// Leave variables that have no tensor in the file unchanged (listed in
    /// [`RestoreReport::missing`]) instead of failing. Default `false`.
    pub allow_missing: bool,
    /// Ignore tensors of the file that match no variable (listed in
    /// [`RestoreReport::unexpected`]) instead of failing. Default `false`.
    pub allow_unexpected: bool,
    /// A scope path removed from the front of every file key before matching, e.g. `gan` maps
    /// the key `gan/generator/linear/w` to `generator/linear/w`; keys outside this scope are
    /// unexpected. Default empty (keys used as they are).
    pub strip_prefix: String,
    /// A scope path put in front of every (stripped) file key to give the variable name, e.g.
    /// `model` maps `linear/w` to `model/linear/w`. Default empty.
    pub add_prefix: String,
    /// Read tensors without checking the CRC-32C checksums couplet stores in its files (to
    /// salvage a corrupted checkpoint). Default `false`: a tensor whose bytes do not match
    /// its checksum is an error. Files without checksums (other writers) are never checked.
    pub skip_checksums: bool,
}

impl RestoreOptions {
    /// Strict matching (the default).
    pub fn strict() -> Self {
        Self::default()
    }
    /// Restores the intersection: missing variables and unexpected tensors are allowed.
    pub fn partial() -> Self {
        RestoreOptions { allow_missing: true, allow_unexpected: true, ..Self::default() }
    }
    /// Sets whether variables missing from the file are allowed.
    pub fn with_allow_missing(mut self, allow: bool) -> Self {
        self.allow_missing = allow;
        self
    }
    /// Sets whether tensors of the file that match no variable are allowed.
    pub fn with_allow_unexpected(mut self, allow: bool) -> Self {
        self.allow_unexpected = allow;
        self
    }
    /// Maps file keys under scope `strip` to variables under scope `add` (either may be
    /// empty): the key `{strip}/rest` restores the variable `{add}/rest`.
    pub fn with_prefix_map(mut self, strip: &str, add: &str) -> Self {
        self.strip_prefix = strip.to_string();
        self.add_prefix = add.to_string();
        self
    }

    /// Sets whether checksums are skipped (see [`RestoreOptions::skip_checksums`]).
    pub fn with_skip_checksums(mut self, skip: bool) -> Self {
        self.skip_checksums = skip;
        self
    }

    /// The variable name a file key restores, or `None` if the key is outside `strip_prefix`.
    fn variable_name(&self, key: &str) -> Option<String> {
        let strip = self.strip_prefix.trim_end_matches('/');
        let add = self.add_prefix.trim_end_matches('/');
        let rest = if strip.is_empty() { key } else { key.strip_prefix(strip)?.strip_prefix('/')? };
        Some(if add.is_empty() { rest.to_string() } else { format!("{add}/{rest}") })
    }
}

/// What a restore did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreReport {
    /// Variables whose values were replaced, in the order they were given.
    pub restored: Vec<String>,
    /// Variables with no tensor in the file, left unchanged (only with `allow_missing`).
    pub missing: Vec<String>,
    /// File keys that matched no variable, ignored (only with `allow_unexpected`), sorted.
    pub unexpected: Vec<String>,
    /// The file's `__metadata__` strings (e.g. `step`), empty if it has none.
    pub metadata: BTreeMap<String, String>,
}

/// Fails if two variables share a name: a file cannot hold both.
pub(crate) fn check_unique(path: &Path, vars: &[Variable]) -> Result<()> {
    let mut seen = HashMap::with_capacity(vars.len());
    for v in vars {
        if seen.insert(v.name(), ()).is_some() {
            return Err(Error::checkpoint(path, format!("the variable {} is listed twice", v.name())));
        }
    }
    Ok(())
}

/// Restores `vars` from `path` as `options` allow. Everything is checked (names, shapes,
/// dtypes, decoding) before the first variable is written.
pub(crate) fn restore_vars(
    path: &Path,
    vars: &[Variable],
    options: &RestoreOptions,
) -> Result<RestoreReport> {
    check_unique(path, vars)?;
    let file = ParsedFile::read_with(path, !options.skip_checksums)?;
    // Optimizer state saved beside the model is not part of it (see `optimizer.rs`).
    let exclude = file.metadata().contains_key(OPTIMIZERS_KEY).then_some(OPTIMIZER_SCOPE);
    plan(&file, path, vars, options, exclude)?.apply(path)
}

/// A checked restore, ready to be written by [`Plan::apply`]: the decoded values of the
/// matched variables and the report.
pub(crate) struct Plan<'a> {
    values: Vec<(&'a Variable, Tensor)>,
    report: RestoreReport,
}

/// Matches `vars` (with unique names) to the tensors of `file` as `options` allow, ignoring
/// the keys under the scope `exclude` (another part of the file, e.g. optimizer state), and
/// decodes the values, writing nothing.
pub(crate) fn plan<'a>(
    file: &ParsedFile,
    path: &Path,
    vars: &'a [Variable],
    options: &RestoreOptions,
    exclude: Option<&str>,
) -> Result<Plan<'a>> {
    let mut by_variable = HashMap::new();
    let mut unexpected = Vec::new();
    let excluded =
        |key: &str| exclude.is_some_and(|e| key.strip_prefix(e).is_some_and(|r| r.starts_with('/')));
    for key in file.names().filter(|k| !excluded(k)) {
        match options.variable_name(key) {
            Some(name) => {
                by_variable.insert(name, key);
            }
            None => unexpected.push(key.to_string()),
        }
    }
    let mut matched = Vec::new();
    let mut missing = Vec::new();
    let mut mismatched = Vec::new();
    for v in vars {
        let Some(key) = by_variable.remove(v.name()) else {
            missing.push(v.name().to_string());
            continue;
        };
        let (want, got) = (v.tensor().size(), file.shape(key)?);
        if want == got {
            matched.push((v, key));
        } else {
            let key_note = if key == v.name() { String::new() } else { format!(" (file key {key})") };
            mismatched.push(format!(
                "{}{key_note}: variable {}, file {}",
                v.name(),
                shape_str(&want),
                shape_str(&got)
            ));
        }
    }
    unexpected.extend(by_variable.into_values().map(str::to_string));
    unexpected.sort();

    let mut problems = Vec::new();
    if !missing.is_empty() && !options.allow_missing {
        problems.push(format!("missing in file ({}): {}", missing.len(), missing.join(", ")));
    }
    if !unexpected.is_empty() && !options.allow_unexpected {
        problems.push(format!("unexpected in file ({}): {}", unexpected.len(), unexpected.join(", ")));
    }
    if !mismatched.is_empty() {
        problems.push(format!("shape mismatches ({}): {}", mismatched.len(), mismatched.join("; ")));
    }
    if !problems.is_empty() {
        return Err(Error::checkpoint(
            path,
            format!("does not match the variables: {}", problems.join("; ")),
        ));
    }

    let values = matched
        .iter()
        .map(|&(v, key)| Ok((v, checked_value(file, path, v, key)?)))
        .collect::<Result<Vec<_>>>()?;
    let report = RestoreReport {
        restored: matched.iter().map(|(v, _)| v.name().to_string()).collect(),
        missing,
        unexpected,
        metadata: file.metadata().clone(),
    };
    Ok(Plan { values, report })
}

/// Decodes `key` for `v`, converted to the variable's kind: a floating-point variable gets
/// only finite values (NaN weights, or `1e10` restored into a `Half` store, are errors) and
/// an integer variable no floating-point values.
fn checked_value(file: &ParsedFile, path: &Path, v: &Variable, key: &str) -> Result<Tensor> {
    let value = file.tensor(key)?;
    let kind = v.tensor().kind();
    let bad = |m: String| Error::checkpoint(path, format!("{}: {m}", v.name()));
    if value.is_floating_point() && !v.tensor().is_floating_point() {
        return Err(bad(format!("file kind {:?} for a {kind:?} variable", value.kind())));
    }
    let converted = value.f_to_kind(kind).map_err(|e| bad(format!("cannot convert: {e}")))?;
    crate::util::check_all_finite("", &format!("the file's values in {kind:?}"), &converted)
        .map_err(|e| bad(e.to_string().trim_start_matches(": ").to_string()))?;
    Ok(converted)
}

impl Plan<'_> {
    /// Copies the values into the variables, in place (under `no_grad`).
    pub(crate) fn apply(self, path: &Path) -> Result<RestoreReport> {
        tch::no_grad(|| {
            for (v, value) in &self.values {
                // `copy_` converts the file's kind and device to the variable's; the shallow
                // clone shares the variable's storage.
                v.tensor()
                    .shallow_clone()
                    .f_copy_(value)
                    .map_err(|e| Error::checkpoint(path, format!("{}: cannot copy: {e}", v.name())))?;
            }
            Ok::<_, Error>(())
        })?;
        Ok(self.report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_map_is_by_whole_scope_components() {
        let o = RestoreOptions::default().with_prefix_map("gan", "model/");
        assert_eq!(o.variable_name("gan/g/w").as_deref(), Some("model/g/w"));
        assert_eq!(o.variable_name("gan_1/g/w"), None);
        assert_eq!(o.variable_name("gan"), None);
        let o = RestoreOptions::default().with_prefix_map("", "m");
        assert_eq!(o.variable_name("w").as_deref(), Some("m/w"));
        assert_eq!(RestoreOptions::strict().variable_name("a/w").as_deref(), Some("a/w"));
    }

    #[test]
    fn options_round_trip_through_serde_with_defaults() {
        let o: RestoreOptions = serde_json::from_str(r#"{"allow_missing": true}"#).unwrap();
        assert_eq!(o, RestoreOptions::strict().with_allow_missing(true));
        let json = serde_json::to_string(&RestoreOptions::partial()).unwrap();
        assert_eq!(serde_json::from_str::<RestoreOptions>(&json).unwrap(), RestoreOptions::partial());
    }
}
