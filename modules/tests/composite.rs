//! A user's own composite module, written here with only the public API: declaring its
//! children is enough for `is_built`, `variables` and `regularization_loss` to follow.

use couplet_modules::{
    Error, Forward, Initializer, Linear, LinearConfig, Mode, Module, Regularizer, Result, Scope, Store,
};
use tch::{Device, Kind, Tensor};

/// `x → out(tanh(hidden(x))) · scale`, with lazy layers, an outside `shared` layer applied
/// first, and a variable `scale` of its own.
struct Encoder {
    scope: Scope,
    shared: Linear,
    hidden: Linear,
    out: Linear,
    scale: Tensor,
}

impl Encoder {
    fn new(parent: &Scope, shared: Linear) -> Result<Self> {
        let scope = parent.child("encoder")?;
        let scale = scope
            .var("scale", &[])
            .init(Initializer::Constant { value: 2.0 })
            .regularizer(Some(Regularizer::L2 { scale: 0.5 }))
            .create()?;
        let hidden = Linear::new(
            &scope,
            LinearConfig::new(3)
                .with_initializer("w", Initializer::Constant { value: -1.0 })
                .with_regularizer("w", Regularizer::L1 { scale: 0.25 }),
        )?;
        let out = Linear::new(&scope, LinearConfig::new(1).with_bias(false))?;
        Ok(Encoder { scope, shared, hidden, out, scale })
    }
}

impl Module for Encoder {
    fn scope(&self) -> &Scope {
        &self.scope
    }
    fn children(&self) -> Vec<&dyn Module> {
        vec![&self.shared, &self.hidden, &self.out]
    }
}

impl Forward for Encoder {
    fn forward_t(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let h = self.hidden.forward_t(&self.shared.forward_t(x, mode)?, mode)?.tanh();
        Ok(self.out.forward_t(&h, mode)? * &self.scale)
    }
}

fn names(module: &dyn Module) -> Vec<String> {
    module.variables().unwrap().iter().map(|v| v.name().to_string()).collect()
}

fn shared_layer(store: &Store) -> Linear {
    let config = LinearConfig::new(2)
        .with_input_size(2)
        .with_initializer("w", Initializer::Ones)
        .with_regularizer("w", Regularizer::L1 { scale: 1.0 });
    Linear::named(&store.root(), "shared", config).unwrap()
}

#[test]
fn a_users_composite_is_built_lists_and_regularizes_through_its_children() {
    let store = Store::cpu();
    let enc = Encoder::new(&store.root(), shared_layer(&store)).unwrap();
    // Built follows from the lazy children: not before the first call.
    assert!(!enc.is_built());
    match enc.variables() {
        Err(Error::NotBuilt { module }) => assert_eq!(module, "encoder/linear"),
        other => panic!("expected NotBuilt, got {other:?}"),
    }
    assert!(matches!(enc.regularization_loss(), Err(Error::NotBuilt { .. })));
    assert!(matches!(enc.trainable_variables(), Err(Error::NotBuilt { .. })));

    let y = enc.forward_t(&Tensor::ones([4, 2], (Kind::Float, Device::Cpu)), Mode::Train).unwrap();
    assert_eq!(y.size(), [4, 1]);
    assert!(enc.is_built());
    // Children first, in child order (the outside `shared` too), then the composite's own.
    assert_eq!(
        names(&enc),
        [
            "shared/w",
            "shared/b",
            "encoder/linear/w",
            "encoder/linear/b",
            "encoder/linear_1/w",
            "encoder/scale"
        ]
    );
    // shared/w: L1 of four ones = 4; encoder/linear/w: 0.25 · L1 of six -1s = 1.5;
    // encoder/scale: 0.5 · 2² = 2.
    let loss = enc.regularization_loss().unwrap().double_value(&[]);
    assert!((loss - 7.5).abs() < 1e-6, "{loss}");
}

#[test]
fn shared_children_are_listed_and_regularized_once_and_boxes_forward_everything() {
    let store = Store::cpu();
    let shared = shared_layer(&store);
    // A second view of the same layer: the scope of `shared`, no children.
    struct Alias(Scope);
    impl Module for Alias {
        fn scope(&self) -> &Scope {
            &self.0
        }
    }
    struct Pair {
        scope: Scope,
        a: Box<dyn Module>,
        b: Box<dyn Module>,
    }
    impl Module for Pair {
        fn scope(&self) -> &Scope {
            &self.scope
        }
        fn children(&self) -> Vec<&dyn Module> {
            vec![&self.a, &self.b]
        }
    }
    let alias = Alias(shared.scope().clone());
    let enc = Encoder::new(&store.root(), shared).unwrap();
    let _ = enc.forward_t(&Tensor::ones([1, 2], (Kind::Float, Device::Cpu)), Mode::Eval).unwrap();
    let pair = Pair { scope: store.root().child("pair").unwrap(), a: Box::new(enc), b: Box::new(alias) };
    assert_eq!(pair.variables().unwrap().len(), 6, "shared/{{w,b}} once");
    let loss = pair.regularization_loss().unwrap().double_value(&[]);
    assert!((loss - 7.5).abs() < 1e-6, "{loss}");
    // A boxed module is the module: its regularization loss is its own, not its scope's.
    let boxed: Box<dyn Module> = Box::new(pair);
    assert_eq!(boxed.children().len(), 2);
    let loss = boxed.regularization_loss().unwrap().double_value(&[]);
    assert!((loss - 7.5).abs() < 1e-6, "{loss}");
    assert_eq!(boxed.trainable_variables().unwrap().len(), 6);
}

#[test]
fn a_box_includes_the_regularization_of_parts_built_outside_its_scope() {
    let store = Store::cpu();
    let enc: Box<dyn Forward> = Box::new(Encoder::new(&store.root(), shared_layer(&store)).unwrap());
    let _ = enc.forward_t(&Tensor::ones([1, 2], (Kind::Float, Device::Cpu)), Mode::Eval).unwrap();
    // `shared` lives outside `encoder/`: a scope-based sum would miss its 4.
    let loss = enc.regularization_loss().unwrap().double_value(&[]);
    assert!((loss - 7.5).abs() < 1e-6, "{loss}");
    assert!((enc.scope().regularization_loss().unwrap().double_value(&[]) - 3.5).abs() < 1e-6);
}
