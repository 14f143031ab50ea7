//! The variable store and its scopes.
//!
//! A [`Store`] owns every variable of a model, on one device and with one floating-point kind.
//! It wraps a tch [`VarStore`] (so tch's own tools still see every variable) and adds what
//! Sonnet users rely on: a creation-ordered registry, trainable flags, regularizers, and
//! unique hierarchical names handed out by [`Scope`]s.
//!
//! A [`Scope`] is a cheap, clonable handle on a store plus a path such as `gan/generator`.
//! [`Scope::child`] hands out unique child names the way Sonnet does (`linear`, `linear_1`, …),
//! so two modules built from the same parent never share a name, and every variable gets a
//! stable, checkpoint-friendly name like `gan/generator/mlp/linear_1/w`.
//!
//! ```
//! use couplet_modules::{Store, Initializer};
//! # fn main() -> couplet_modules::Result<()> {
//! let store = Store::cpu();
//! let gan = store.root().child("gan")?;
//! let a = gan.child("linear")?;
//! let b = gan.child("linear")?;
//! assert_eq!((a.path(), b.path()), ("gan/linear", "gan/linear_1"));
//! let w = a.var("w", &[3, 2]).init(Initializer::Ones).create()?;
//! assert_eq!(w.size(), [3, 2]);
//! assert_eq!(store.variable_names(), ["gan/linear/w"]);
//! # Ok(())
//! # }
//! ```

use crate::error::{Error, Result, TorchContext};
use crate::init::{Fans, Initializer};
use crate::regularizer::Regularizer;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// One variable of a store: its full scoped name, its tensor (sharing storage with the
/// store's), whether optimizers should train it, and its regularizer.
#[derive(Debug)]
pub struct Variable {
    name: String,
    tensor: Tensor,
    trainable: bool,
    regularizer: Option<Regularizer>,
}

impl Variable {
    /// Full scoped name, e.g. `gan/generator/linear/w`.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The variable's tensor. It shares storage with the store: writing into it (under
    /// `no_grad`) changes the model.
    pub fn tensor(&self) -> &Tensor {
        &self.tensor
    }
    /// Whether the variable is trainable (requires gradients).
    pub fn trainable(&self) -> bool {
        self.trainable
    }
    /// The regularizer attached at creation, if any.
    pub fn regularizer(&self) -> Option<&Regularizer> {
        self.regularizer.as_ref()
    }
}

impl Clone for Variable {
    fn clone(&self) -> Self {
        Variable {
            name: self.name.clone(),
            tensor: self.tensor.shallow_clone(),
            trainable: self.trainable,
            regularizer: self.regularizer.clone(),
        }
    }
}

#[derive(Default)]
struct Registry {
    variables: Vec<Variable>,
    index: HashMap<String, usize>,
    taken: HashSet<String>,
}

struct Inner {
    var_store: VarStore,
    registry: Mutex<Registry>,
}

/// A model's variables, on one device and of one floating-point kind. Clones share the store.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("device", &self.device())
            .field("kind", &self.kind())
            .field("variables", &self.variable_names())
            .finish()
    }
}

impl Store {
    /// An empty store whose variables live on `device` as `f32`.
    pub fn new(device: Device) -> Self {
        Self::on(device, Kind::Float)
    }

    /// An empty store on the CPU, as `f32`.
    pub fn cpu() -> Self {
        Self::new(Device::Cpu)
    }

    /// An empty store whose variables live on `device` with floating-point `kind`
    /// (`Float`, `Double`, `Half` or `BFloat16`).
    ///
    /// # Errors
    /// [`Error::Config`] naming `store` for any other kind (variables are trained by gradients).
    pub fn with_kind(device: Device, kind: Kind) -> Result<Self> {
        if !matches!(kind, Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16) {
            return Err(Error::config(
                "store",
                format!("kind must be Float, Double, Half or BFloat16, got {kind:?}"),
            ));
        }
        Ok(Self::on(device, kind))
    }

    fn on(device: Device, kind: Kind) -> Self {
        let mut var_store = VarStore::new(device);
        var_store.set_kind(kind);
        Store { inner: Arc::new(Inner { var_store, registry: Mutex::new(Registry::default()) }) }
    }

    /// The device every variable lives on.
    pub fn device(&self) -> Device {
        self.inner.var_store.device()
    }

    /// The floating-point kind of every variable.
    pub fn kind(&self) -> Kind {
        self.inner.var_store.kind()
    }

    /// The root scope (empty path). Modules are built from its children.
    pub fn root(&self) -> Scope {
        Scope { store: self.clone(), path: String::new() }
    }

    /// The wrapped tch store, for interoperating with tch's own `nn` tools. Variables are
    /// registered there under the same scoped names.
    pub fn var_store(&self) -> &VarStore {
        &self.inner.var_store
    }

    /// Every variable, in creation order.
    pub fn variables(&self) -> Vec<Variable> {
        self.registry().variables.clone()
    }

    /// Every variable's name, in creation order.
    pub fn variable_names(&self) -> Vec<String> {
        self.registry().variables.iter().map(|v| v.name.clone()).collect()
    }

    /// The variable called `name`, if there is one.
    pub fn get(&self, name: &str) -> Option<Variable> {
        let registry = self.registry();
        registry.index.get(name).map(|&i| registry.variables[i].clone())
    }

    /// Number of variables.
    pub fn len(&self) -> usize {
        self.registry().variables.len()
    }

    /// Whether the store holds no variable yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock cannot leave the registry half-updated (every
        // update is a single push/insert after all fallible work), so poisoning is ignored.
        self.inner.registry.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A store and a path in it. Cheap to clone; modules keep theirs to name errors and to list
/// their variables.
#[derive(Clone)]
pub struct Scope {
    store: Store,
    path: String,
}

impl std::fmt::Debug for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Scope({:?})", self.path)
    }
}

fn check_name(scope: &str, name: &str) -> Result<()> {
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if valid {
        Ok(())
    } else {
        let scope = if scope.is_empty() { "<root>" } else { scope };
        Err(Error::config(
            scope,
            format!("name {name:?} must be non-empty ASCII letters, digits, '_' or '-'"),
        ))
    }
}

impl Scope {
    /// Full path, e.g. `gan/generator/linear_1`; empty for the root.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The last component of the path (the module's own name).
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or("")
    }

    /// The store this scope belongs to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The store's device.
    pub fn device(&self) -> Device {
        self.store.device()
    }

    /// The store's floating-point kind.
    pub fn kind(&self) -> Kind {
        self.store.kind()
    }

    fn join(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}/{}", self.path, name)
        }
    }

    /// A new child scope named `name`, or `name_1`, `name_2`, … if that name is already
    /// taken in this scope (Sonnet's unique naming).
    ///
    /// # Errors
    /// [`Error::Config`] if `name` is empty or has characters other than ASCII letters,
    /// digits, `_` and `-`.
    pub fn child(&self, name: &str) -> Result<Scope> {
        check_name(&self.path, name)?;
        let mut registry = self.store.registry();
        let mut candidate = self.join(name);
        let mut i = 1;
        while registry.taken.contains(&candidate) {
            candidate = self.join(&format!("{name}_{i}"));
            i += 1;
        }
        registry.taken.insert(candidate.clone());
        Ok(Scope { store: self.store.clone(), path: candidate })
    }

    /// Checks that `x` has the store's floating-point kind, so a wrong dtype is a clear error
    /// naming this scope instead of a libtorch one.
    ///
    /// # Errors
    /// [`Error::Shape`] naming this scope and `{what} kind`, e.g.
    /// `"linear: input kind must be Float, got Double"`.
    pub fn check_kind(&self, what: &str, x: &Tensor) -> Result<()> {
        crate::util::check_defined(self.path(), what, x)?;
        if x.kind() == self.kind() {
            Ok(())
        } else {
            Err(Error::shape(self.path(), format!("{what} kind"), format!("{:?}", self.kind()), x.kind()))
        }
    }

    /// Starts creating the variable `name` of `shape` in this scope. Defaults: zeros,
    /// trainable, no regularizer, fans from the shape (TF convention, see [`Fans`]).
    pub fn var<'a>(&'a self, name: &'a str, shape: &'a [i64]) -> VarBuilder<'a> {
        VarBuilder {
            scope: self,
            name,
            shape,
            init: Initializer::Zeros,
            fans: None,
            trainable: true,
            regularizer: None,
        }
    }

    /// Every variable under this scope (this scope's and its descendants'), in creation order.
    pub fn variables(&self) -> Vec<Variable> {
        let prefix = format!("{}/", self.path);
        self.store
            .registry()
            .variables
            .iter()
            .filter(|v| self.path.is_empty() || v.name.starts_with(&prefix))
            .cloned()
            .collect()
    }

    /// The sum of the regularization losses of every variable under this scope; a zero
    /// scalar when none has a regularizer.
    ///
    /// # Errors
    /// [`Error::Torch`] naming the variable if libtorch fails.
    pub fn regularization_loss(&self) -> Result<Tensor> {
        regularization_sum(self, &self.variables())
    }
}

/// The sum of the regularizers of `variables` (a zero scalar of `scope`'s kind and device
/// when none has one): what [`Scope::regularization_loss`] and
/// [`Module::regularization_loss`](crate::Module::regularization_loss) return.
pub(crate) fn regularization_sum(scope: &Scope, variables: &[Variable]) -> Result<Tensor> {
    let module = if scope.path.is_empty() { "<root>" } else { scope.path.as_str() };
    let mut total = Tensor::f_zeros([], (scope.kind(), scope.device())).ctx(module)?;
    for v in variables {
        if let Some(r) = &v.regularizer {
            total = total.f_add(&r.loss(&v.tensor).ctx(&v.name)?).ctx(&v.name)?;
        }
    }
    Ok(total)
}

/// Builder for one variable, from [`Scope::var`].
pub struct VarBuilder<'a> {
    scope: &'a Scope,
    name: &'a str,
    shape: &'a [i64],
    init: Initializer,
    fans: Option<Fans>,
    trainable: bool,
    regularizer: Option<Regularizer>,
}

impl VarBuilder<'_> {
    /// The initializer (default zeros).
    pub fn init(mut self, init: Initializer) -> Self {
        self.init = init;
        self
    }
    /// The fans used by variance-scaling initializers (default: from the shape, TF rules).
    pub fn fans(mut self, fans: Fans) -> Self {
        self.fans = Some(fans);
        self
    }
    /// Whether optimizers train the variable (default true).
    pub fn trainable(mut self, trainable: bool) -> Self {
        self.trainable = trainable;
        self
    }
    /// A regularizer whose loss [`Scope::regularization_loss`] includes.
    pub fn regularizer(mut self, regularizer: Option<Regularizer>) -> Self {
        self.regularizer = regularizer;
        self
    }

    /// Creates, initializes and registers the variable, returning its tensor.
    ///
    /// # Errors
    /// [`Error::Config`] if the name is invalid or already used in this scope, or if the
    /// shape has a negative dimension; [`Error::Torch`] if libtorch fails to allocate.
    pub fn create(self) -> Result<Tensor> {
        let scope = self.scope;
        let module = if scope.path.is_empty() { "<root>" } else { scope.path.as_str() };
        check_name(module, self.name)?;
        if self.shape.iter().any(|&d| d < 0) {
            return Err(Error::config(
                module,
                format!("variable {:?} has a negative dimension in {:?}", self.name, self.shape),
            ));
        }
        crate::util::config_size(
            module,
            &format!("variable {:?} of shape {:?}", self.name, self.shape),
            self.shape,
        )?;
        if let Some(r) = &self.regularizer {
            r.check(module)?;
        }
        let full = scope.join(self.name);
        let fans = self.fans.unwrap_or_else(|| Fans::from_shape(self.shape));
        let tensor =
            tch::no_grad(|| self.init.create(&full, self.shape, fans, (scope.kind(), scope.device())))?;
        let mut registry = scope.store.registry();
        if registry.taken.contains(&full) {
            return Err(Error::config(module, format!("a variable or scope {full:?} already exists")));
        }
        let tensor = scope.store.inner.var_store.root().add(&full, tensor, self.trainable);
        registry.taken.insert(full.clone());
        let position = registry.variables.len();
        registry.index.insert(full.clone(), position);
        registry.variables.push(Variable {
            name: full,
            tensor: tensor.shallow_clone(),
            trainable: self.trainable,
            regularizer: self.regularizer,
        });
        Ok(tensor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_get_unique_sonnet_names() {
        let store = Store::cpu();
        let gan = store.root().child("gan").unwrap();
        let g = gan.child("generator").unwrap();
        let names: Vec<_> = (0..3).map(|_| g.child("linear").unwrap().path().to_string()).collect();
        assert_eq!(names, ["gan/generator/linear", "gan/generator/linear_1", "gan/generator/linear_2"]);
        assert_eq!(store.root().child("gan").unwrap().path(), "gan_1");
        assert_eq!(g.name(), "generator");
    }

    #[test]
    fn variables_are_listed_by_scope_in_creation_order() {
        let store = Store::cpu();
        let a = store.root().child("a").unwrap();
        let ab = a.child("b").unwrap();
        let c = store.root().child("c").unwrap();
        let _ = ab.var("w", &[2]).create().unwrap();
        let _ = c.var("w", &[1]).trainable(false).create().unwrap();
        let _ = a.var("v", &[3]).create().unwrap();
        let names = |vs: Vec<Variable>| vs.iter().map(|v| v.name().to_string()).collect::<Vec<_>>();
        assert_eq!(names(a.variables()), ["a/b/w", "a/v"]);
        assert_eq!(names(store.root().variables()), ["a/b/w", "c/w", "a/v"]);
        assert!(!store.get("c/w").unwrap().trainable());
        assert!(!store.get("c/w").unwrap().tensor().requires_grad());
        assert!(store.get("a/v").unwrap().tensor().requires_grad());
        // tch's VarStore sees the same variables under the same names.
        let mut tch_names: Vec<_> = store.var_store().variables().into_keys().collect();
        tch_names.sort();
        assert_eq!(tch_names, ["a/b/w", "a/v", "c/w"]);
        // A prefix that is not a whole component does not match: `a` must not list `ab/…`.
        let ab2 = store.root().child("ab").unwrap();
        let _ = ab2.var("w", &[1]).create().unwrap();
        assert_eq!(names(a.variables()), ["a/b/w", "a/v"]);
    }

    #[test]
    fn duplicate_and_invalid_names_are_errors() {
        let store = Store::cpu();
        let s = store.root().child("lin").unwrap();
        let _ = s.var("w", &[1]).create().unwrap();
        let e = s.var("w", &[1]).create().unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{e}");
        assert!(e.to_string().contains("\"lin/w\" already exists"), "{e}");
        for bad in ["", "a/b", "a.b", "a b"] {
            assert!(matches!(store.root().child(bad), Err(Error::Config { .. })), "{bad:?}");
        }
        assert!(matches!(s.var("v", &[-1]).create(), Err(Error::Config { .. })));
    }

    #[test]
    fn store_kind_and_device_apply_to_variables() {
        let store = Store::with_kind(Device::Cpu, Kind::Double).unwrap();
        let w = store.root().child("m").unwrap().var("w", &[2, 2]).init(Initializer::Ones).create().unwrap();
        assert_eq!(w.kind(), Kind::Double);
        assert_eq!(w.device(), Device::Cpu);
        for kind in [Kind::Int64, Kind::Bool, Kind::ComplexFloat] {
            let e = Store::with_kind(Device::Cpu, kind).unwrap_err();
            assert!(matches!(e, Error::Config { .. }), "{e}");
            let expected = format!("kind must be Float, Double, Half or BFloat16, got {kind:?}");
            assert!(e.to_string().starts_with("store: ") && e.to_string().ends_with(&expected), "{e}");
        }
    }
}
