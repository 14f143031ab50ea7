//! [`Checkpointable`]: what can be saved and restored (a store, a scope, a module, a list of
//! variables).

#[cfg(doc)]
use crate::error::Error;
use crate::error::Result;
use crate::module::Module;
use crate::store::{Scope, Store, Variable};

/// Something whose variables can be saved and restored: a [`Store`], a [`Scope`], a module,
/// or a list of [`Variable`]s.
pub trait Checkpointable {
    /// The variables to save or restore, with their full scoped names.
    ///
    /// # Errors
    /// [`Error::NotBuilt`] for a lazy module that has not seen its first input.
    fn checkpoint_variables(&self) -> Result<Vec<Variable>>;
}

impl Checkpointable for Store {
    fn checkpoint_variables(&self) -> Result<Vec<Variable>> {
        Ok(self.variables())
    }
}

impl Checkpointable for Scope {
    fn checkpoint_variables(&self) -> Result<Vec<Variable>> {
        Ok(self.variables())
    }
}

impl Checkpointable for [Variable] {
    fn checkpoint_variables(&self) -> Result<Vec<Variable>> {
        Ok(self.to_vec())
    }
}

impl Checkpointable for Vec<Variable> {
    fn checkpoint_variables(&self) -> Result<Vec<Variable>> {
        Ok(self.clone())
    }
}

impl<M: Module + ?Sized> Checkpointable for M {
    fn checkpoint_variables(&self) -> Result<Vec<Variable>> {
        self.variables()
    }
}
