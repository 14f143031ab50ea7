//! `ZoneoutWrapper`: zoneout on a core's state (Krueger et al. 2016; Sonnet v1
//! `ZoneoutWrapper`).

use crate::core::{InnerStep, RnnCore, Wrapper};
use crate::state::State;
use couplet_modules::{Error, Mode, Module, Result, Scope, TorchContext};
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Configuration of a [`ZoneoutWrapper`]: zoneout probabilities (the probability of keeping
/// an element's previous value), each in `[0, 1)`; 0 disables zoneout of that leaf.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ZoneoutConfig {
    /// Zoneout probability of LSTM `h` and of single-tensor states (vanilla RNN, GRU).
    /// Default 0.05 (Sonnet v1 `lstm_with_zoneout`: `keep_prob_h = 0.95`; Krueger et al.).
    pub zoneout_h: f64,
    /// Zoneout probability of LSTM `c`. Default 0.5 (Sonnet v1 `keep_prob_c = 0.5`).
    pub zoneout_c: f64,
}

impl Default for ZoneoutConfig {
    fn default() -> Self {
        ZoneoutConfig { zoneout_h: 0.05, zoneout_c: 0.5 }
    }
}

impl ZoneoutConfig {
    /// The default configuration (`zoneout_h = 0.05`, `zoneout_c = 0.5`).
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the zoneout probability of LSTM `h` and of single-tensor states.
    pub fn with_zoneout_h(mut self, p: f64) -> Self {
        self.zoneout_h = p;
        self
    }
    /// Sets the zoneout probability of LSTM `c`.
    pub fn with_zoneout_c(mut self, p: f64) -> Self {
        self.zoneout_c = p;
        self
    }
}

/// Zoneout around a core: each state element keeps its previous value with probability `p`.
/// With `s` the previous state and `s_new` the core's new state, per leaf:
/// - [`Mode::Train`]: `s' = s + mask ⊙ (s_new − s)`, `mask ~ Bernoulli(1 − p)` per element,
///   fresh at every step (so each element is exactly `s` or `s_new` up to rounding);
/// - [`Mode::Eval`]: `s' = (1 − p) s_new + p s` (Sonnet's deterministic blend).
///
/// Leaves: `State::Tensor` and LSTM `h` use `zoneout_h`, LSTM `c` uses `zoneout_c`, tuples
/// (e.g. a wrapped stack) apply this to each element. A leaf with `p = 0` is `s_new` exactly.
///
/// The output is the core's own output, not zoned out (Sonnet v1's `ZoneoutWrapper`); for an
/// LSTM it is the new `h` before zoneout, while the state carries the zoned-out `h`.
/// Variables: the core's (the wrapper has none).
pub struct ZoneoutWrapper<C = Box<dyn RnnCore>> {
    scope: Scope,
    config: ZoneoutConfig,
    core: C,
}

impl<C: RnnCore> std::fmt::Debug for ZoneoutWrapper<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZoneoutWrapper")
            .field("scope", &self.scope.path())
            .field("config", &self.config)
            .field("core", &self.core.name())
            .finish()
    }
}

fn check_prob(module: &str, what: &str, p: f64) -> Result<()> {
    if (0.0..1.0).contains(&p) {
        Ok(())
    } else {
        Err(Error::config(module, format!("{what} must be in [0, 1), got {p}")))
    }
}

impl<C: RnnCore> ZoneoutWrapper<C> {
    /// Wraps `core` in a new child scope `zoneout_wrapper` (or `zoneout_wrapper_1`, …) of
    /// `parent`.
    ///
    /// # Errors
    /// [`Error::Config`] if a zoneout probability is outside `[0, 1)` (naming it and its value).
    pub fn new(parent: &Scope, core: C, config: ZoneoutConfig) -> Result<Self> {
        Self::named(parent, "zoneout_wrapper", core, config)
    }

    /// Like [`ZoneoutWrapper::new`] with the child scope named `name`.
    pub fn named(parent: &Scope, name: &str, core: C, config: ZoneoutConfig) -> Result<Self> {
        Self::in_scope(parent.child(name)?, core, config)
    }

    /// Like [`ZoneoutWrapper::new`] in an existing `scope`.
    pub fn in_scope(scope: Scope, core: C, config: ZoneoutConfig) -> Result<Self> {
        check_prob(scope.path(), "zoneout_h", config.zoneout_h)?;
        check_prob(scope.path(), "zoneout_c", config.zoneout_c)?;
        Ok(ZoneoutWrapper { scope, config, core })
    }

    /// The configuration.
    pub fn config(&self) -> &ZoneoutConfig {
        &self.config
    }

    /// The wrapped core.
    pub fn core(&self) -> &C {
        &self.core
    }

    fn zone_leaf(&self, prev: &Tensor, new: &Tensor, p: f64, mode: Mode) -> Result<Tensor> {
        let name = self.name();
        if prev.size() != new.size() {
            let expected = format!("{:?} (the core's new state)", new.size());
            return Err(Error::shape(name, "state", expected, prev.size()));
        }
        if p == 0.0 {
            return Ok(new.shallow_clone());
        }
        match mode {
            Mode::Train => {
                let mask = new.f_empty_like().ctx(name)?.f_bernoulli_float_(1.0 - p).ctx(name)?;
                prev.f_add(&new.f_sub(prev).ctx(name)?.f_mul(&mask).ctx(name)?).ctx(name)
            }
            Mode::Eval => {
                new.f_mul_scalar(1.0 - p).ctx(name)?.f_add(&prev.f_mul_scalar(p).ctx(name)?).ctx(name)
            }
        }
    }

    fn zoneout(&self, prev: &State, new: &State, mode: Mode) -> Result<State> {
        let (ph, pc) = (self.config.zoneout_h, self.config.zoneout_c);
        Ok(match (prev, new) {
            (State::Empty, State::Empty) => State::Empty,
            (State::Tensor(s), State::Tensor(n)) => State::Tensor(self.zone_leaf(s, n, ph, mode)?),
            (State::Lstm { h, c }, State::Lstm { h: nh, c: nc }) => {
                State::Lstm { h: self.zone_leaf(h, nh, ph, mode)?, c: self.zone_leaf(c, nc, pc, mode)? }
            }
            (State::Tuple(a), State::Tuple(b)) if a.len() == b.len() => {
                State::Tuple(a.iter().zip(b).map(|(s, n)| self.zoneout(s, n, mode)).collect::<Result<_>>()?)
            }
            _ => {
                return Err(Error::invalid(
                    self.name(),
                    format!(
                        "the core's new state {:?} does not match the state {:?}",
                        new.size(),
                        prev.size()
                    ),
                ))
            }
        })
    }
}

impl<C: RnnCore> Module for ZoneoutWrapper<C> {
    fn scope(&self) -> &Scope {
        &self.scope
    }
    /// The wrapped core: the wrapper is built when it is, and lists its variables.
    fn children(&self) -> Vec<&dyn Module> {
        vec![&self.core]
    }
}

impl<C: RnnCore> Wrapper for ZoneoutWrapper<C> {
    type Inner = C;

    fn inner(&self) -> &C {
        &self.core
    }

    /// The core's step (on the raw or projected input: zoneout acts on the state only), then
    /// zoneout of its new state against `state`.
    ///
    /// # Errors
    /// The core's errors; [`Error::InvalidArgument`] / [`Error::Shape`] if the core's new
    /// state does not have `state`'s structure and shapes.
    fn after_step(&self, inner: InnerStep<'_, C>, state: &State, mode: Mode) -> Result<(Tensor, State)> {
        let (output, new) = inner.run(state, mode)?;
        Ok((output, self.zoneout(state, &new, mode)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_cores::{leaves, t, v, Accum, LstmLike};
    use couplet_modules::Store;
    use tch::{Device, Kind};

    #[test]
    fn eval_blends_new_and_previous_state() {
        let store = Store::cpu();
        let z = ZoneoutWrapper::new(
            &store.root(),
            Accum::new(&store.root(), 2, 1.0),
            ZoneoutConfig::new().with_zoneout_h(0.25),
        )
        .unwrap();
        let s = State::Tensor(t(&[1.0, 2.0], 1));
        let (o, s2) = z.step(&t(&[2.0, 2.0], 1), &s, Mode::Eval).unwrap();
        // s_new = [3, 4]: 0.75 · [3, 4] + 0.25 · [1, 2] = [2.5, 3.5]; the output is s_new.
        assert_eq!(leaves(&s2), [vec![2.5, 3.5]]);
        assert_eq!(v(&o), [3.0, 4.0]);
    }

    #[test]
    fn eval_uses_separate_probabilities_for_h_and_c() {
        let store = Store::cpu();
        let config = ZoneoutConfig::new().with_zoneout_h(0.5).with_zoneout_c(0.25);
        let z = ZoneoutWrapper::new(&store.root(), LstmLike::new(&store.root(), 1), config).unwrap();
        let s = State::Lstm { h: t(&[1.0], 1), c: t(&[2.0], 1) };
        let (o, s2) = z.step(&t(&[2.0], 1), &s, Mode::Eval).unwrap();
        // c_new = 4, h_new = 1 + 8 = 9: h' = 0.5 · 9 + 0.5 · 1 = 5, c' = 0.75 · 4 + 0.25 · 2 = 3.5.
        assert_eq!(leaves(&s2), [vec![5.0], vec![3.5]]);
        assert_eq!(v(&o), [9.0]);
    }

    #[test]
    fn train_keeps_each_element_old_or_new() {
        tch::manual_seed(7);
        let store = Store::cpu();
        let config = ZoneoutConfig::new().with_zoneout_h(0.0).with_zoneout_c(0.5);
        let z = ZoneoutWrapper::new(&store.root(), LstmLike::new(&store.root(), 16), config).unwrap();
        let opts = (Kind::Float, Device::Cpu);
        let s = State::Lstm { h: Tensor::rand([32, 16], opts), c: Tensor::rand([32, 16], opts) };
        let x = Tensor::rand([32, 16], opts) + 0.5;
        let (_, s2) = z.step(&x, &s, Mode::Train).unwrap();
        let (_, new) = z.core().step(&x, &s, Mode::Train).unwrap();
        let (old, new, zoned) = (leaves(&s), leaves(&new), leaves(&s2));
        // h: p = 0, exactly the new h.
        assert_eq!(zoned[0], new[0]);
        // c: each element the old or the new value (x > 0 makes them differ), about half each.
        let mut kept_new = 0;
        for ((z, o), n) in zoned[1].iter().zip(&old[1]).zip(&new[1]) {
            assert!(z == o || z == n, "{z} is neither {o} nor {n}");
            kept_new += usize::from(z == n);
        }
        let frac = kept_new as f64 / zoned[1].len() as f64;
        assert!((0.4..0.6).contains(&frac), "{frac}");
    }

    #[test]
    fn probabilities_outside_zero_one_are_config_errors() {
        let store = Store::cpu();
        for (config, what) in [
            (ZoneoutConfig::new().with_zoneout_h(1.0), "zoneout_h must be in [0, 1), got 1"),
            (ZoneoutConfig::new().with_zoneout_c(-0.1), "zoneout_c must be in [0, 1), got -0.1"),
            (ZoneoutConfig::new().with_zoneout_h(f64::NAN), "zoneout_h must be in [0, 1), got NaN"),
        ] {
            let e = ZoneoutWrapper::new(&store.root(), Accum::boxed(&store.root(), 1), config).unwrap_err();
            assert!(matches!(e, Error::Config { .. }), "{e}");
            assert!(e.to_string().contains(what), "{e}");
        }
    }

    #[test]
    fn projection_delegates_to_the_core() {
        let store = Store::cpu();
        let z = ZoneoutWrapper::new(&store.root(), Accum::new(&store.root(), 2, 0.5), ZoneoutConfig::new())
            .unwrap();
        let xs = t(&[1.0, 2.0, 3.0, 4.0], 2).view([2, 1, 2]);
        let proj = z.projection().unwrap();
        let p = proj.project_inputs(&xs).unwrap();
        let s = State::Tensor(t(&[1.0, 1.0], 1));
        let (a, sa) = z.step(&xs.get(1), &s, Mode::Eval).unwrap();
        let (b, sb) = proj.step_projected(&p.get(1), &s, Mode::Eval).unwrap();
        assert_eq!((v(&a), leaves(&sa)), (v(&b), leaves(&sb)));
        // s_new = 1 + 0.5 · [3, 4] = [2.5, 3]; 0.95 · s_new + 0.05 · 1.
        assert!(v(&b).iter().zip([2.5f32, 3.0]).all(|(x, e)| *x == e));
        assert!(leaves(&sb)[0].iter().zip([2.425f32, 2.9]).all(|(x, e)| (x - e).abs() < 1e-6));
    }

    #[test]
    fn variables_are_the_cores_and_wrapper_is_send() {
        let store = Store::cpu();
        let z =
            ZoneoutWrapper::new(&store.root(), Accum::boxed(&store.root(), 2), ZoneoutConfig::new()).unwrap();
        let names: Vec<_> = z.variables().unwrap().iter().map(|v| v.name().to_string()).collect();
        assert_eq!(names, ["accum/w"]);
        assert_eq!(z.name(), "zoneout_wrapper");
        fn send<T: Send>() {}
        send::<ZoneoutWrapper>();
    }
}
