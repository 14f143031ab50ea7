//! couplet's typed error, shared by every crate of the workspace.
//!
//! Every error that comes from a module names the module's scope first, as Sonnet does:
//! `"linear: input must be [B, 4], got [8, 5]"`. Bad input from a user is always one of these
//! values; couplet checks shapes and values before they reach libtorch, and wraps the few errors
//! libtorch can still raise (out of memory, device mismatches) as [`Error::Torch`].

use std::path::PathBuf;

/// The result type of every fallible couplet call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in couplet.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An input (or a variable) does not have the shape the module needs.
    /// Displayed as `"{module}: {what} must be {expected}, got {actual}"`.
    #[error("{module}: {what} must be {expected}, got {actual}")]
    Shape {
        /// Scope of the module that refused the input, e.g. `gan/generator/linear_1`.
        module: String,
        /// What was checked: `input`, `lengths`, `mask`, …
        what: String,
        /// What the module accepts, e.g. `[B, 4]`.
        expected: String,
        /// What it got, e.g. `[8, 5]`.
        actual: String,
    },
    /// A value is out of its valid range: a negative length, a keep probability outside
    /// `(0, 1]`, a token id past the vocabulary.
    #[error("{module}: {message}")]
    InvalidArgument {
        /// Scope of the module (or name of the function) that refused the value.
        module: String,
        /// What is wrong, with the offending values.
        message: String,
    },
    /// A module was asked for its variables before its lazy shapes were known.
    #[error("{module}: not built yet: its variables are created from the first input's shape, so call it on an input first")]
    NotBuilt {
        /// Scope of the module.
        module: String,
    },
    /// A configuration that can never work: a zero size, an unknown initializer key, an
    /// empty stack.
    #[error("{module}: bad configuration: {message}")]
    Config {
        /// Scope (or type) of the module being configured.
        module: String,
        /// What is wrong and what would be accepted.
        message: String,
    },
    /// Saving or restoring a checkpoint failed: a missing, truncated or mismatched file.
    #[error("checkpoint {}: {message}", path.display())]
    Checkpoint {
        /// The checkpoint file or folder.
        path: PathBuf,
        /// What went wrong, e.g. the list of missing and unexpected variables.
        message: String,
    },
    /// An I/O error outside checkpoints (plots, data files).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Code that cannot be recorded by TorchScript tracing (see `couplet_modules::export`):
    /// its result depends on host-side decisions (lengths, stopping at an end token) that a
    /// trace would bake in, or libtorch's tracer refused the run. The message says what can
    /// be exported instead.
    #[error("{module}: cannot be traced: {message}")]
    Untraceable {
        /// Scope of the module (or the export method) that refused.
        module: String,
        /// Why, and what to export instead.
        message: String,
    },
    /// A distributed operation failed: a rendezvous that timed out, a peer that died or never
    /// arrived, a collective that c10d refused. Displayed as `"distributed/{op}: {message}"`.
    #[error("distributed/{op}: {message}")]
    Distributed {
        /// The operation: `store`, `gloo`, `all_reduce`, `wait`, …
        op: String,
        /// What c10d (or couplet's check before calling it) reported.
        message: String,
    },
    /// An error raised by libtorch itself, with the module that made the call.
    #[error("{module}: libtorch: {}", torch_message(source))]
    Torch {
        /// Scope of the module that made the call.
        module: String,
        /// The error libtorch reported.
        #[source]
        source: tch::TchError,
    },
}

impl Error {
    /// A [`Error::Shape`] error.
    pub fn shape(
        module: impl Into<String>,
        what: impl Into<String>,
        expected: impl Into<String>,
        actual: impl std::fmt::Debug,
    ) -> Self {
        Error::Shape {
            module: module.into(),
            what: what.into(),
            expected: expected.into(),
            actual: format!("{actual:?}"),
        }
    }

    /// An [`Error::InvalidArgument`] error.
    pub fn invalid(module: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidArgument { module: module.into(), message: message.into() }
    }

    /// A [`Error::Config`] error.
    pub fn config(module: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config { module: module.into(), message: message.into() }
    }

    /// A [`Error::Distributed`] error.
    pub fn distributed(op: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Distributed { op: op.into(), message: message.into() }
    }

    /// A [`Error::Checkpoint`] error.
    pub fn checkpoint(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Checkpoint { path: path.into(), message: message.into() }
    }
}

/// libtorch's message without the C++ backtrace it appends.
fn torch_message(e: &tch::TchError) -> String {
    // libtorch appends its C++ frame list ("Exception raised from …", "frame #0: …") on the
    // lines after the message: only the first line is kept.
    e.to_string().lines().next().unwrap_or_default().trim_end().to_string()
}

/// Attaches a module name to libtorch's errors: `tensor.f_matmul(&w).ctx("linear")?`.
pub trait TorchContext<T> {
    /// Wraps a [`tch::TchError`] as [`Error::Torch`] naming `module`.
    fn ctx(self, module: &str) -> Result<T>;
}

impl<T> TorchContext<T> for std::result::Result<T, tch::TchError> {
    fn ctx(self, module: &str) -> Result<T> {
        self.map_err(|source| Error::Torch { module: module.to_string(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_error_reads_like_sonnet() {
        let e = Error::shape("linear", "input", "[B, 4]", [8, 5]);
        assert_eq!(e.to_string(), "linear: input must be [B, 4], got [8, 5]");
    }

    #[test]
    fn distributed_errors_name_the_operation() {
        let e = Error::distributed("all_reduce", "Connection closed by peer");
        assert_eq!(e.to_string(), "distributed/all_reduce: Connection closed by peer");
    }

    #[test]
    fn torch_errors_name_the_module() {
        let a = tch::Tensor::zeros([2, 3], (tch::Kind::Float, tch::Device::Cpu));
        let b = tch::Tensor::zeros([4, 5], (tch::Kind::Float, tch::Device::Cpu));
        let e = a.f_matmul(&b).ctx("mlp/linear").unwrap_err();
        assert!(matches!(e, Error::Torch { ref module, .. } if module == "mlp/linear"));
        assert!(e.to_string().starts_with("mlp/linear: libtorch: "), "{e}");
        assert!(!e.to_string().contains("Exception raised from"), "{e}");
        assert!(!e.to_string().contains('\n'), "only libtorch's first line is kept: {e}");
    }
}
