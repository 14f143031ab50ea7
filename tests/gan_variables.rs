//! The GAN proof: a generator and a discriminator built from `Linear` modules in their own
//! scopes, called many times on the same variables, trained by two optimizers over the split
//! variable lists. A discriminator step moves only discriminator variables even though its
//! loss runs through the generator, and the reverse.
mod common;

use couplet::{
    Adam, AdamConfig, AdamW, AdamWConfig, Linear, LinearConfig, Module, Optimizer, Scope, Store, Variable,
};
use std::collections::BTreeSet;
use tch::{Device, Kind, Tensor};

/// Two `Linear` layers with a tanh between them, in one scope.
struct TwoLayer {
    scope: Scope,
    hidden: Linear,
    out: Linear,
}

impl TwoLayer {
    fn new(parent: &Scope, name: &str, hidden: i64, out: i64) -> couplet::Result<Self> {
        let scope = parent.child(name)?;
        // Lazy layers: their variables are created by the first call.
        let hidden = Linear::new(&scope, LinearConfig::new(hidden))?;
        let out = Linear::new(&scope, LinearConfig::new(out))?;
        Ok(TwoLayer { scope, hidden, out })
    }

    fn forward(&self, x: &Tensor) -> couplet::Result<Tensor> {
        self.out.forward(&self.hidden.forward(x)?.tanh())
    }
}

impl Module for TwoLayer {
    fn scope(&self) -> &Scope {
        &self.scope
    }
    /// The parts: `is_built`, `variables` and `regularization_loss` follow from them.
    fn children(&self) -> Vec<&dyn Module> {
        vec![&self.hidden, &self.out]
    }
}

/// A GAN under `gan/`: `gan/generator/…` maps noise `z [B, 4]` to samples `[B, 3]`,
/// `gan/discriminator/…` maps samples to logits `[B, 1]`.
struct Gan {
    generator: TwoLayer,
    discriminator: TwoLayer,
}

impl Gan {
    fn new(parent: &Scope) -> couplet::Result<Self> {
        let scope = parent.child("gan")?;
        Ok(Gan {
            generator: TwoLayer::new(&scope, "generator", 8, 3)?,
            discriminator: TwoLayer::new(&scope, "discriminator", 6, 1)?,
        })
    }
    fn generator(&self, z: &Tensor) -> couplet::Result<Tensor> {
        self.generator.forward(z)
    }
    fn discriminator(&self, x: &Tensor) -> couplet::Result<Tensor> {
        self.discriminator.forward(x)
    }
}

fn names(vars: &[Variable]) -> Vec<String> {
    vars.iter().map(|v| v.name().to_string()).collect()
}

fn snapshot(vars: &[Variable]) -> Vec<Tensor> {
    vars.iter().map(|v| v.tensor().copy()).collect()
}

/// Asserts every variable is bit-identical to its snapshot (`same`) or every one differs.
#[track_caller]
fn assert_all(vars: &[Variable], before: &[Tensor], same: bool) {
    for (v, b) in vars.iter().zip(before) {
        assert_eq!(
            v.tensor().equal(b),
            same,
            "{} {}",
            v.name(),
            if same { "changed" } else { "did not change" }
        );
    }
}

/// Asserts every variable has a defined, non-zero gradient.
#[track_caller]
fn assert_has_grads(vars: &[Variable]) {
    for v in vars {
        let g = v.tensor().grad();
        assert!(
            g.defined() && g.abs().sum(Kind::Double).double_value(&[]) > 0.0,
            "{} has no gradient",
            v.name()
        );
    }
}

fn noise() -> Tensor {
    Tensor::randn([16, 4], (Kind::Float, Device::Cpu))
}

#[test]
fn generator_and_discriminator_steps_touch_only_their_own_variables() -> couplet::Result<()> {
    tch::manual_seed(7);
    let store = Store::cpu();
    let gan = Gan::new(&store.root())?;
    let real = Tensor::randn([16, 3], (Kind::Float, Device::Cpu)) + 2.0;
    // The first calls build the variables; later calls reuse them.
    let logits = gan.discriminator(&gan.generator(&noise())?)?;
    assert_eq!(logits.size(), [16, 1]);
    let expected = [
        "gan/generator/linear/w",
        "gan/generator/linear/b",
        "gan/generator/linear_1/w",
        "gan/generator/linear_1/b",
        "gan/discriminator/linear/w",
        "gan/discriminator/linear/b",
        "gan/discriminator/linear_1/w",
        "gan/discriminator/linear_1/b",
    ];
    assert_eq!(store.variable_names(), expected);
    for _ in 0..3 {
        assert_eq!(gan.generator(&noise())?.size(), [16, 3]);
        assert_eq!(gan.discriminator(&real)?.size(), [16, 1]);
    }
    assert_eq!(store.len(), 8, "repeated calls create no variable");

    // The split: each sub-module's trainable variables, the same as its scope's listing.
    let g_vars = gan.generator.trainable_variables()?;
    let d_vars = gan.discriminator.trainable_variables()?;
    assert_eq!(names(&g_vars), expected[..4]);
    assert_eq!(names(&d_vars), expected[4..]);
    assert_eq!(names(&g_vars), names(&gan.generator.scope().variables()));
    assert_eq!(names(&d_vars), names(&gan.discriminator.scope().variables()));
    let g_set: BTreeSet<_> = names(&g_vars).into_iter().collect();
    let d_set: BTreeSet<_> = names(&d_vars).into_iter().collect();
    assert!(g_set.is_disjoint(&d_set));
    let all: BTreeSet<_> = store.variable_names().into_iter().collect();
    assert_eq!(g_set.union(&d_set).cloned().collect::<BTreeSet<_>>(), all);

    let mut g_opt = Adam::new(g_vars.clone(), AdamConfig::new(1e-2))?;
    let mut d_opt = AdamW::new(d_vars.clone(), AdamWConfig::new(1e-2))?;
    for round in 0..3 {
        // Discriminator step: real → 1, fake → 0. The loss runs through the generator (not
        // detached), so generator variables get gradients too, but d_opt must not use them.
        g_opt.zero_grad();
        d_opt.zero_grad();
        let fake = gan.generator(&noise())?;
        let d_loss = gan.discriminator(&real)?.neg().softplus().mean(Kind::Float)
            + gan.discriminator(&fake)?.softplus().mean(Kind::Float);
        d_loss.backward();
        assert_has_grads(&g_vars);
        assert_has_grads(&d_vars);
        let (g_before, d_before) = (snapshot(&g_vars), snapshot(&d_vars));
        d_opt.step()?;
        assert_all(&g_vars, &g_before, true);
        assert_all(&d_vars, &d_before, false);

        // Generator step: fool the discriminator. Gradients reach the discriminator too.
        g_opt.zero_grad();
        d_opt.zero_grad();
        let g_loss = gan.discriminator(&gan.generator(&noise())?)?.neg().softplus().mean(Kind::Float);
        g_loss.backward();
        assert_has_grads(&g_vars);
        assert_has_grads(&d_vars);
        let (g_before, d_before) = (snapshot(&g_vars), snapshot(&d_vars));
        g_opt.step()?;
        assert_all(&g_vars, &g_before, false);
        assert_all(&d_vars, &d_before, true);
        assert_eq!(store.len(), 8, "round {round} created variables");
    }
    // The optimizers' updates are the store's variables: the store sees the trained values.
    let w = store.get("gan/generator/linear/w").unwrap();
    assert!(w.tensor().equal(g_vars[0].tensor()));
    Ok(())
}
