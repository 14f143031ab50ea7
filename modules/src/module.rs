//! The [`Module`] trait every couplet module implements, the [`Forward`] trait of modules
//! that map one tensor to one tensor, and the explicit training/evaluation [`Mode`]. (The
//! helpers for lazy building and input checks are in [`crate::util`].)

use crate::error::{Error, Result};
use crate::store::{regularization_sum, Scope, Variable};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use tch::Tensor;

/// Whether a call trains or evaluates. Passed explicitly to every call whose behaviour
/// differs (dropout, batch norm, zoneout); couplet has no global training flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Training: dropout drops, batch norm uses and updates batch statistics.
    Train,
    /// Evaluation: dropout is the identity, batch norm uses its moving statistics.
    Eval,
}

impl Mode {
    /// `true` for [`Mode::Train`].
    pub fn is_training(self) -> bool {
        self == Mode::Train
    }
}

/// A module: something that owns variables under a [`Scope`] and may hold other modules,
/// its [children](Module::children).
///
/// A module's variables are its children's variables, in child order, followed by every other
/// variable under its own scope, in creation order; each variable is listed once (by name),
/// however many children share it. So a leaf module (no children) lists the variables under
/// its scope, and a composite lists its parts wherever they were built. A composite only has
/// to say what its parts are:
///
/// ```
/// use couplet_modules::{Linear, LinearConfig, Module, Scope, Store};
/// struct TwoLayer { scope: Scope, hidden: Linear, out: Linear }
/// impl Module for TwoLayer {
///     fn scope(&self) -> &Scope { &self.scope }
///     fn children(&self) -> Vec<&dyn Module> { vec![&self.hidden, &self.out] }
/// }
/// # fn main() -> couplet_modules::Result<()> {
/// let store = Store::cpu();
/// let scope = store.root().child("two_layer")?;
/// let hidden = Linear::new(&scope, LinearConfig::new(8))?; // lazy: built by its first call
/// let out = Linear::new(&scope, LinearConfig::new(2))?;
/// let m = TwoLayer { scope, hidden, out };
/// assert!(!m.is_built()); // follows from the children
/// assert!(m.variables().is_err()); // NotBuilt naming `two_layer/linear`
/// # Ok(())
/// # }
/// ```
///
/// and [`Module::is_built`], [`Module::variables`] (with the trainable and non-trainable
/// subsets) and [`Module::regularization_loss`] follow. Modules with lazy variables of their
/// own override [`Module::is_built`] (and include their children's state in it).
pub trait Module: Send {
    /// The module's scope (its unique path in the store).
    fn scope(&self) -> &Scope;

    /// The modules this one holds and applies (its parts), in the order their variables are
    /// listed. Default: none (a leaf module).
    fn children(&self) -> Vec<&dyn Module> {
        Vec::new()
    }

    /// Whether every variable exists. Lazy modules (whose sizes come from their first
    /// input) are not built until that first call. Default: every child is built (true for a
    /// module without children).
    fn is_built(&self) -> bool {
        self.children().iter().all(|c| c.is_built())
    }

    /// The module's full scoped name, e.g. `gan/generator`.
    fn name(&self) -> &str {
        self.scope().path()
    }

    /// Every variable of the module: its children's, in child order, then the other
    /// variables under its scope, in creation order; each listed once.
    ///
    /// # Errors
    /// [`Error::NotBuilt`] naming the first child that is not built, or this module if it
    /// still waits for its first input.
    fn variables(&self) -> Result<Vec<Variable>> {
        let children = self.children();
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for child in &children {
            for v in child.variables()? {
                if seen.insert(v.name().to_string()) {
                    out.push(v);
                }
            }
        }
        if !self.is_built() {
            return Err(Error::NotBuilt { module: self.name().to_string() });
        }
        out.extend(self.scope().variables().into_iter().filter(|v| seen.insert(v.name().to_string())));
        Ok(out)
    }

    /// The trainable subset of [`Module::variables`]: what an optimizer for this module takes.
    ///
    /// # Errors
    /// [`Error::NotBuilt`] if the module still waits for its first input.
    fn trainable_variables(&self) -> Result<Vec<Variable>> {
        Ok(self.variables()?.into_iter().filter(Variable::trainable).collect())
    }

    /// The non-trainable subset of [`Module::variables`] (moving statistics, frozen
    /// embeddings).
    ///
    /// # Errors
    /// [`Error::NotBuilt`] if the module still waits for its first input.
    fn non_trainable_variables(&self) -> Result<Vec<Variable>> {
        Ok(self.variables()?.into_iter().filter(|v| !v.trainable()).collect())
    }

    /// The sum of the regularizers of [`Module::variables`], each variable counted once (a
    /// zero scalar of the store's kind if none has a regularizer).
    ///
    /// # Errors
    /// [`Error::NotBuilt`] if the module still waits for its first input;
    /// [`Error::Torch`] naming the variable if libtorch fails.
    fn regularization_loss(&self) -> Result<Tensor> {
        regularization_sum(self.scope(), &self.variables()?)
    }
}

/// A module that maps one tensor to one tensor: what [`Sequential`](crate::Sequential) and
/// [`Mlp`](crate::Mlp) compose. Every such module implements it; modules whose behaviour does
/// not depend on the mode ignore it.
///
/// The naming follows tch: a module whose result cannot depend on the mode also has an
/// inherent `forward(x)` ([`Linear`](crate::Linear), [`LayerNorm`](crate::LayerNorm), the
/// convolutions, ...); a mode-dependent module ([`Mlp`](crate::Mlp),
/// [`Sequential`](crate::Sequential), [`Dropout`](crate::Dropout),
/// [`BatchNorm`](crate::BatchNorm), and the multi-input attention modules) has
/// `forward_t(.., mode)` and no `forward`. Generic code calls `Forward::forward_t(x, mode)`.
pub trait Forward: Module {
    /// Applies the module to `x`.
    ///
    /// # Errors
    /// A typed [`Error`] naming the module when `x` has the wrong rank, size or kind.
    fn forward_t(&self, x: &Tensor, mode: Mode) -> Result<Tensor>;
}

/// A boxed module is the module: every method forwards to it, overrides included.
impl<M: Module + ?Sized> Module for Box<M> {
    fn scope(&self) -> &Scope {
        (**self).scope()
    }
    fn children(&self) -> Vec<&dyn Module> {
        (**self).children()
    }
    fn is_built(&self) -> bool {
        (**self).is_built()
    }
    fn name(&self) -> &str {
        (**self).name()
    }
    fn variables(&self) -> Result<Vec<Variable>> {
        (**self).variables()
    }
    fn trainable_variables(&self) -> Result<Vec<Variable>> {
        (**self).trainable_variables()
    }
    fn non_trainable_variables(&self) -> Result<Vec<Variable>> {
        (**self).non_trainable_variables()
    }
    fn regularization_loss(&self) -> Result<Tensor> {
        (**self).regularization_loss()
    }
}

impl<F: Forward + ?Sized> Forward for Box<F> {
    fn forward_t(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        (**self).forward_t(x, mode)
    }
}
