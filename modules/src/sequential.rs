//! `Sequential`: modules and closures applied one after the other (Sonnet's
//! `snt.Sequential`, PyTorch's `nn.Sequential`).

use crate::error::Result;
use crate::module::{Forward, Mode, Module};
use crate::store::Scope;
use tch::Tensor;

/// A function member of a [`Sequential`]: `(x, mode) -> y`.
type LayerFn = Box<dyn Fn(&Tensor, Mode) -> Result<Tensor> + Send>;

enum Layer {
    Module(Box<dyn Forward>),
    Fn(LayerFn),
}

/// Applies its members in order, each to the previous one's output: `x` → `f_n(..f_1(x))`.
/// Members are modules ([`Forward`]) or closures `Fn(&Tensor, Mode) -> Result<Tensor>`
/// (an activation, a reshape); with no member it is the identity.
///
/// Its scope (`sequential`, `sequential_1`, …) is a convenient parent for the members, but
/// members may have been built anywhere: the member modules are its
/// [children](Module::children), so [`Module::variables`] is the concatenation of the member
/// modules' variables, in member order, without repeats (a module pushed twice, or two
/// modules sharing a variable, list it once), then any other variable under its own scope
/// (e.g. of a module a closure captures, if it was built there; variables of a captured
/// module built elsewhere are not listed). [`Module::is_built`] is true when every member
/// module is built, and [`Module::regularization_loss`] sums the regularizers of exactly the
/// listed variables.
///
/// ```
/// use couplet_modules::{Activation, Linear, LinearConfig, Mode, Module, Sequential, Store};
/// # fn main() -> couplet_modules::Result<()> {
/// let store = Store::cpu();
/// let seq = Sequential::new(&store.root())?;
/// let l0 = Linear::new(seq.scope(), LinearConfig::new(8))?;
/// let l1 = Linear::new(seq.scope(), LinearConfig::new(2))?;
/// let seq = seq.push(l0).add_fn(|x, _| Activation::Relu.apply(x)).push(l1);
/// let y = seq.forward_t(&tch::Tensor::zeros([3, 4], (tch::Kind::Float, tch::Device::Cpu)), Mode::Eval)?;
/// assert_eq!(y.size(), [3, 2]);
/// assert_eq!(seq.variables()?.len(), 4); // sequential/linear/{w,b}, sequential/linear_1/{w,b}
/// # Ok(())
/// # }
/// ```
pub struct Sequential {
    scope: Scope,
    layers: Vec<Layer>,
}

impl std::fmt::Debug for Sequential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let members: Vec<String> = self
            .layers
            .iter()
            .map(|l| match l {
                Layer::Module(m) => m.name().to_string(),
                Layer::Fn(_) => "<fn>".to_string(),
            })
            .collect();
        f.debug_struct("Sequential").field("scope", &self.scope.path()).field("members", &members).finish()
    }
}

impl Sequential {
    /// An empty `Sequential` in a new child scope `sequential` (or `sequential_1`, …) of
    /// `parent`.
    ///
    /// # Errors
    /// None in practice: the name `sequential` is always valid.
    pub fn new(parent: &Scope) -> Result<Self> {
        Self::named(parent, "sequential")
    }

    /// Like [`Sequential::new`] with the child scope named `name`.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) if `name` is not a valid scope name.
    pub fn named(parent: &Scope, name: &str) -> Result<Self> {
        Ok(Sequential { scope: parent.child(name)?, layers: Vec::new() })
    }

    /// Appends a module.
    pub fn push(mut self, module: impl Forward + 'static) -> Self {
        self.layers.push(Layer::Module(Box::new(module)));
        self
    }

    /// Appends an already boxed module.
    pub fn push_boxed(mut self, module: Box<dyn Forward>) -> Self {
        self.layers.push(Layer::Module(module));
        self
    }

    /// Appends a function `(x, mode) -> y`, e.g. `|x, _| Activation::Relu.apply(x)`.
    pub fn add_fn(mut self, f: impl Fn(&Tensor, Mode) -> Result<Tensor> + Send + 'static) -> Self {
        self.layers.push(Layer::Fn(Box::new(f)));
        self
    }

    /// Number of members (modules and functions).
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether there is no member (the `Sequential` is then the identity).
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// The member modules, in order (functions are skipped).
    pub fn modules(&self) -> impl Iterator<Item = &dyn Forward> {
        self.layers.iter().filter_map(|l| match l {
            Layer::Module(m) => Some(m.as_ref()),
            Layer::Fn(_) => None,
        })
    }

    /// Applies every member in order: `x` → the last member's output (`x` itself, shallow
    /// cloned, with no member). `mode` is passed to every member.
    ///
    /// # Errors
    /// The first member error, unchanged (it names the member module).
    pub fn forward_t(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        crate::util::check_defined(self.scope.path(), "input", x)?;
        let mut h = x.shallow_clone();
        for layer in &self.layers {
            h = match layer {
                Layer::Module(m) => m.forward_t(&h, mode)?,
                Layer::Fn(f) => f(&h, mode)?,
            };
        }
        Ok(h)
    }
}

impl Module for Sequential {
    fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The member modules, in member order (functions are skipped).
    fn children(&self) -> Vec<&dyn Module> {
        self.layers
            .iter()
            .filter_map(|l| match l {
                Layer::Module(m) => Some(m as &dyn Module),
                Layer::Fn(_) => None,
            })
            .collect()
    }
}

impl Forward for Sequential {
    fn forward_t(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        Sequential::forward_t(self, x, mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Variable;
    use crate::{
        Activation, Dropout, DropoutConfig, Error, Initializer, Linear, LinearConfig, Regularizer, Store,
    };
    use tch::{Device, Kind};

    fn names(vars: Vec<Variable>) -> Vec<String> {
        vars.iter().map(|v| v.name().to_string()).collect()
    }

    fn constant_linear(scope: &Scope, out: i64, input: i64, w: f64) -> Linear {
        let config = LinearConfig::new(out)
            .with_input_size(input)
            .with_initializer("w", Initializer::Constant { value: w })
            .with_initializer("b", Initializer::Constant { value: -1.0 });
        Linear::new(scope, config).unwrap()
    }

    #[test]
    fn mixes_modules_and_closures_by_hand() {
        let store = Store::cpu();
        let seq = Sequential::new(&store.root()).unwrap();
        let l0 = constant_linear(seq.scope(), 2, 2, 1.0);
        let l1 = constant_linear(seq.scope(), 1, 2, 2.0);
        let seq = seq.push(l0).add_fn(|x, _| Activation::Relu.apply(x)).push(l1).add_fn(|x, _| Ok(x * 10));
        assert_eq!(seq.len(), 4);
        let x = Tensor::from_slice(&[2.0f32, 1.0, -3.0, 1.0]).view([2, 2]);
        // Row 0: relu(3 - 1) = [2, 2] → 2·4 - 1 = 7 → 70. Row 1: relu(-2 - 1) = 0 → -1 → -10.
        let y = Vec::<f32>::try_from(seq.forward_t(&x, Mode::Eval).unwrap().flatten(0, -1)).unwrap();
        assert_eq!(y, [70.0, -10.0]);
    }

    #[test]
    fn mode_reaches_members() {
        let store = Store::cpu();
        let seq = Sequential::new(&store.root()).unwrap();
        let drop = Dropout::new(seq.scope(), DropoutConfig::new(0.5)).unwrap();
        let seq =
            seq.push(drop).add_fn(|x, mode| Ok(if mode.is_training() { x + 1 } else { x.shallow_clone() }));
        let x = Tensor::ones([1000], (Kind::Float, Device::Cpu));
        assert!(seq.forward_t(&x, Mode::Eval).unwrap().equal(&x));
        let y = seq.forward_t(&x, Mode::Train).unwrap();
        // Dropped: 0 + 1; kept: 2 + 1.
        assert_eq!(y.eq(1.0).logical_or(&y.eq(3.0)).all().int64_value(&[]), 1);
        assert!(y.eq(1.0).any().int64_value(&[]) == 1 && y.eq(3.0).any().int64_value(&[]) == 1);
    }

    #[test]
    fn lists_member_variables_wherever_they_were_built() {
        let store = Store::cpu();
        let outside = constant_linear(&store.root(), 3, 2, 1.0);
        let seq = Sequential::new(&store.root()).unwrap();
        let inside = Linear::new(seq.scope(), LinearConfig::new(2)).unwrap();
        let seq = seq.push(outside).add_fn(|x, _| Activation::Tanh.apply(x)).push(inside);
        assert!(!seq.is_built(), "the lazy member is not built yet");
        assert!(
            matches!(seq.variables(), Err(Error::NotBuilt { ref module }) if module == "sequential/linear")
        );
        let _ = seq.forward_t(&Tensor::zeros([1, 2], (Kind::Float, Device::Cpu)), Mode::Eval).unwrap();
        assert!(seq.is_built());
        let want = ["linear/w", "linear/b", "sequential/linear/w", "sequential/linear/b"];
        assert_eq!(names(seq.variables().unwrap()), want);
        assert_eq!(names(seq.trainable_variables().unwrap()), want);
        assert_eq!(seq.name(), "sequential");
        // An empty Sequential is the identity and has no variables.
        let empty = Sequential::named(&store.root(), "empty").unwrap();
        let x = Tensor::ones([2], (Kind::Float, Device::Cpu));
        assert!(empty.forward_t(&x, Mode::Train).unwrap().equal(&x));
        assert!(empty.is_empty() && empty.variables().unwrap().is_empty());
    }

    /// A module that owns nothing itself and lists the variables under another's scope.
    struct SameScope(Scope);

    impl Module for SameScope {
        fn scope(&self) -> &Scope {
            &self.0
        }
    }

    impl Forward for SameScope {
        fn forward_t(&self, x: &Tensor, _mode: Mode) -> Result<Tensor> {
            Ok(x.shallow_clone())
        }
    }

    #[test]
    fn shared_variables_are_listed_once_and_regularized_once() {
        let store = Store::cpu();
        let config = LinearConfig::new(2)
            .with_input_size(2)
            .with_initializer("w", Initializer::Ones)
            .with_regularizer("w", Regularizer::L1 { scale: 1.0 });
        let lin = Linear::new(&store.root(), config).unwrap();
        // A second module over the same scope lists the same variables.
        let alias = SameScope(lin.scope().clone());
        let inner = Sequential::new(&store.root()).unwrap().push(lin);
        let outer = Sequential::new(&store.root()).unwrap().push(inner).push(alias).push(constant_linear(
            &store.root(),
            2,
            2,
            1.0,
        ));
        assert_eq!(names(outer.variables().unwrap()), ["linear/w", "linear/b", "linear_1/w", "linear_1/b"]);
        // L1 of `linear/w` (four ones) counted once; linear_1 has no regularizer.
        assert_eq!(outer.regularization_loss().unwrap().double_value(&[]), 4.0);
    }

    #[test]
    fn member_errors_pass_through() {
        let store = Store::cpu();
        let seq = Sequential::new(&store.root()).unwrap();
        let lin = constant_linear(seq.scope(), 2, 3, 1.0);
        let seq = seq.push(lin);
        let e = seq.forward_t(&Tensor::zeros([1, 4], (Kind::Float, Device::Cpu)), Mode::Eval).unwrap_err();
        assert_eq!(e.to_string(), "sequential/linear: input must be [.., 3], got [1, 4]");
    }

    #[test]
    fn is_send() {
        fn send<T: Send>() {}
        send::<Sequential>();
    }
}
