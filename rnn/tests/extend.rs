//! Extending couplet-rnn from outside the crate with only its public API: a new core (an LSTM
//! written by hand) and a new wrapper (scaled outputs), each a few dozen lines, reach the fused
//! route where their inner core allows, and compute what stepping them computes.

use couplet_modules::{Mode, Module, Result, Scope, Store, TorchContext};
use couplet_rnn::{
    dynamic_rnn, unroll_route, InnerStep, RnnCore, Route, SequenceContext, SequenceMaps, State, StateSize,
    TorchCellKind, TorchCellWeights, UnrollOptions, Wrapper,
};
use tch::{Kind, Tensor};

// ---- A new core: an LSTM (PyTorch gate order i, f, g, o), fusable as `nn.LSTM`. ----
struct MyLstm {
    scope: Scope,
    hidden: i64,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
}

impl MyLstm {
    fn new(parent: &Scope, input: i64, hidden: i64) -> Result<Self> {
        let scope = parent.child("my_lstm")?;
        let var = |name: &str, shape: &[i64]| scope.var(name, shape).create();
        let (w_ih, w_hh) =
            (var("weight_ih", &[4 * hidden, input])?, var("weight_hh", &[4 * hidden, hidden])?);
        let (b_ih, b_hh) = (var("bias_ih", &[4 * hidden])?, var("bias_hh", &[4 * hidden])?);
        Ok(MyLstm { scope, hidden, w_ih, w_hh, b_ih, b_hh })
    }
}

impl Module for MyLstm {
    fn scope(&self) -> &Scope {
        &self.scope
    }
}

impl RnnCore for MyLstm {
    fn step(&self, x: &Tensor, state: &State, _mode: Mode) -> Result<(Tensor, State)> {
        let State::Lstm { h, c } = state else {
            return Err(couplet_modules::Error::invalid(self.name(), "state must be State::Lstm"));
        };
        let linear = |a: &Tensor, w: &Tensor, b: &Tensor| a.f_linear(w, Some(b)).ctx(self.name());
        let gates = (linear(x, &self.w_ih, &self.b_ih)? + linear(h, &self.w_hh, &self.b_hh)?).chunk(4, 1);
        let (i, f, g, o) = (gates[0].sigmoid(), gates[1].sigmoid(), gates[2].tanh(), gates[3].sigmoid());
        let c = f * c + i * g;
        let h = o * c.tanh();
        Ok((h.shallow_clone(), State::Lstm { h, c }))
    }
    fn output_shape(&self) -> Vec<i64> {
        vec![self.hidden]
    }
    fn state_size(&self) -> StateSize {
        StateSize::lstm(self.hidden, self.hidden)
    }
    fn torch_layers(&self, input_size: i64) -> Result<Option<Vec<TorchCellWeights>>> {
        Ok((input_size == self.w_ih.size()[1]).then(|| {
            let bias = Some((&self.b_ih, &self.b_hh));
            vec![TorchCellWeights::from_weights(TorchCellKind::Lstm, &self.w_ih, &self.w_hh, bias, None)]
        }))
    }
}

// ---- A new wrapper: outputs scaled by a constant, the state untouched. ----
struct Scaled<C> {
    scope: Scope,
    core: C,
    scale: f64,
}

impl<C: RnnCore> Module for Scaled<C> {
    fn scope(&self) -> &Scope {
        &self.scope
    }
    fn children(&self) -> Vec<&dyn Module> {
        vec![&self.core]
    }
}

impl<C: RnnCore> Wrapper for Scaled<C> {
    type Inner = C;
    fn inner(&self) -> &C {
        &self.core
    }
    fn after_step(&self, inner: InnerStep<'_, C>, state: &State, mode: Mode) -> Result<(Tensor, State)> {
        let (output, state) = inner.run(state, mode)?;
        Ok((output.f_mul_scalar(self.scale).ctx(self.name())?, state))
    }
    fn sequence_maps(&self, _mode: Mode) -> Option<&dyn SequenceMaps> {
        Some(self)
    }
}

impl<C: RnnCore> SequenceMaps for Scaled<C> {
    fn inner_core(&self) -> &dyn RnnCore {
        &self.core
    }
    fn map_outputs(&self, outputs: &Tensor, _seq: &SequenceContext) -> Result<Tensor> {
        outputs.f_mul_scalar(self.scale).ctx(self.name()) // padded zeros stay zero
    }
}

// ---- Proof. ----
fn close(a: &Tensor, b: &Tensor) {
    assert_eq!(a.size(), b.size());
    let diff = (a - b).abs().max().double_value(&[]);
    assert!(diff < 1e-5, "max difference {diff}");
}

#[test]
fn a_users_core_and_wrapper_take_the_fused_route_and_match_their_steps() {
    tch::manual_seed(11);
    let store = Store::cpu();
    let root = store.root();
    let lstm = MyLstm::new(&root, 3, 4).unwrap();
    let scaled =
        Scaled { scope: root.child("scaled").unwrap(), core: MyLstm::new(&root, 3, 4).unwrap(), scale: 2.0 };
    let x = Tensor::randn([5, 7, 3], (Kind::Float, tch::Device::Cpu));
    let lengths = [7i64, 3, 0, 5, 7];
    for options in [UnrollOptions::train(), UnrollOptions::train().with_lengths(&lengths)] {
        // The new core is plain: the fused kernels run it, and they agree with its steps
        // (with these lengths over the padded batch, cheaper than three segments).
        let fused_route = if options.lengths.is_some() { Route::Padded } else { Route::Fused };
        assert_eq!(unroll_route(&lstm, &x, &options).unwrap(), fused_route);
        let (fused, fused_state) = dynamic_rnn(&lstm, &x, &options).unwrap();
        let (looped, loop_state) = dynamic_rnn(&lstm, &x, &options.with_route(Route::Loop)).unwrap();
        close(&fused, &looped);
        close(fused_state.leaves()[1], loop_state.leaves()[1]);
        // The new wrapper splits around its core, which runs fused.
        assert_eq!(unroll_route(&scaled, &x, &options).unwrap(), Route::Split);
        assert_eq!(unroll_route(scaled.inner(), &x, &options).unwrap(), fused_route);
        let (split, _) = dynamic_rnn(&scaled, &x, &options).unwrap();
        let (stepped, _) = dynamic_rnn(&scaled, &x, &options.with_route(Route::Loop)).unwrap();
        let (inner, _) = dynamic_rnn(scaled.inner(), &x, &options).unwrap();
        close(&split, &stepped);
        close(&split, &(inner * 2.0));
    }
    // The wrapper's variables are its core's (children), its scope's name prefixes nothing.
    let names: Vec<_> = scaled.variables().unwrap().iter().map(|v| v.name().to_string()).collect();
    assert_eq!(
        names,
        ["my_lstm_1/weight_ih", "my_lstm_1/weight_hh", "my_lstm_1/bias_ih", "my_lstm_1/bias_hh"]
    );
}
