use super::*;
use crate::{Forward, Linear, LinearConfig, Mode, Module, Store};
use tch::{Device, Kind};

fn linear(store: &Store) -> Linear {
    Linear::new(&store.root().child("net").unwrap(), LinearConfig::new(3).with_input_size(4)).unwrap()
}

fn x(batch: i64) -> Tensor {
    Tensor::randn([batch, 4], (Kind::Float, Device::Cpu))
}

#[test]
fn variables_become_named_parameters_shared_with_the_store() {
    let store = Store::cpu();
    let lin = linear(&store);
    let mut e = Exporter::new("m").unwrap();
    e.add_variables(&lin.variables().unwrap()).unwrap();
    e.trace("forward", &[x(2)], |i| Ok(vec![lin.forward_t(&i[0], Mode::Eval)?])).unwrap();
    assert_eq!(e.parameter_names(), ["net.linear.w", "net.linear.b"]);
    let loaded = e.to_cmodule().unwrap();
    let names: Vec<String> = loaded.named_parameters().unwrap().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["net.linear.w", "net.linear.b"]);
    // Another batch size, same numbers as eager.
    let input = x(7);
    let got = loaded.forward_ts(&[&input]).unwrap();
    let want = lin.forward_t(&input, Mode::Eval).unwrap();
    assert!(got.allclose(&want, 1e-6, 1e-6, false));
    // The parameters are the variables, not copies frozen at trace time: a later update of
    // the store shows in what is saved.
    let _ = tch::no_grad(|| store.get("net/linear/b").unwrap().tensor().shallow_clone().fill_(5.0));
    let zero = Tensor::zeros([1, 4], (Kind::Float, Device::Cpu));
    let y = e.to_cmodule().unwrap().forward_ts(&[zero]).unwrap();
    assert!(y.allclose(&Tensor::full([1, 3], 5.0, (Kind::Float, Device::Cpu)), 0.0, 0.0, false));
}

#[test]
fn unregistered_variables_that_require_grad_are_refused() {
    let store = Store::cpu();
    let lin = linear(&store);
    let mut e = Exporter::new("m").unwrap();
    let err = e.trace("forward", &[x(2)], |i| Ok(vec![lin.forward_t(&i[0], Mode::Eval)?])).unwrap_err();
    assert!(matches!(err, Error::Untraceable { .. }), "{err}");
    assert!(err.to_string().contains("requires grad"), "{err}");
    assert!(!is_tracing(), "the failed recording is abandoned");
    // The exporter is still usable.
    e.add_variables(&lin.variables().unwrap()).unwrap();
    e.trace("forward", &[x(2)], |i| Ok(vec![lin.forward_t(&i[0], Mode::Eval)?])).unwrap();
}

#[test]
fn variables_read_through_a_copy_are_refused_not_frozen() {
    let store = Store::cpu();
    let lin = linear(&store);
    let w = store.get("net/linear/w").unwrap();
    let mut e = Exporter::new("m").unwrap();
    e.add_variables(std::slice::from_ref(&w)).unwrap();
    // A detach inside the trace is recorded (an aten::detach of the parameter) ...
    e.trace("inside", &[x(2)], |i| Ok(vec![i[0].matmul(&w.tensor().detach())])).unwrap();
    // ... but a copy made before it (e.g. a cached view of a weight) would be baked in.
    let cached = w.tensor().detach();
    let err = e.trace("forward", &[x(2)], |i| Ok(vec![i[0].matmul(&cached)])).unwrap_err();
    assert!(matches!(err, Error::Untraceable { .. }), "{err}");
    assert!(err.to_string().contains("net.linear.w"), "{err}");
    drop(lin);
}

#[test]
fn host_decisions_refuse_to_be_traced() {
    assert!(ensure_not_tracing("beam", "x", "y").is_ok());
    let mut e = Exporter::new("m").unwrap();
    let err = e
        .trace("forward", &[x(2)], |i| {
            assert!(is_tracing());
            ensure_not_tracing("beam_search", "stops at end tokens", "export one step")?;
            Ok(vec![i[0].shallow_clone()])
        })
        .unwrap_err();
    assert_eq!(err.to_string(), "beam_search: cannot be traced: stops at end tokens; export one step");
    assert!(!is_tracing());
}

#[test]
fn bad_names_and_nested_or_empty_traces_are_errors() {
    assert!(matches!(Exporter::new("a.b"), Err(Error::InvalidArgument { .. })));
    let store = Store::cpu();
    let odd = store.root().child("1st").unwrap();
    let v = odd.var("w", &[2]).create().unwrap();
    drop(v);
    let mut e = Exporter::new("m").unwrap();
    let err = e.add_variables(&store.variables()).unwrap_err();
    assert!(err.to_string().contains("\"1st\" is not a TorchScript identifier"), "{err}");
    let err = e.trace("forward", &[x(1)], |_| Ok(vec![])).unwrap_err();
    assert!(err.to_string().contains("no tensors"), "{err}");
    e.trace("forward", &[x(1)], |i| Ok(vec![i[0].relu()])).unwrap();
    let err = e.trace("forward", &[x(1)], |i| Ok(vec![i[0].relu()])).unwrap_err();
    assert!(err.to_string().contains("new identifier"), "{err}");
    let mut inner = Exporter::new("n").unwrap();
    let err = e
        .trace("other", &[x(1)], |i| {
            inner.trace("forward", i, |j| Ok(vec![j[0].relu()]))?;
            Ok(vec![i[0].relu()])
        })
        .unwrap_err();
    assert!(err.to_string().contains("already recording"), "{err}");
}

#[test]
fn saved_files_load_with_libtorch() {
    let dir = std::env::temp_dir().join(format!("couplet-export-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("relu.pt");
    let mut e = Exporter::new("m").unwrap();
    e.trace("forward", &[x(2)], |i| Ok(vec![i[0].relu(), i[0].sigmoid()])).unwrap();
    e.save(&path).unwrap();
    let loaded = tch::CModule::load(&path).unwrap();
    let input = x(3);
    let out = loaded.forward_is(&[tch::IValue::Tensor(input.shallow_clone())]).unwrap();
    let tch::IValue::Tuple(parts) = out else { panic!("a tuple of two outputs") };
    assert_eq!(parts.len(), 2);
    let err = e.save(dir.join("missing/x.pt")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A one-layer LSTM kernel (hidden 3) over `x [B, T, 4]` (batch first) from `h0`, `c0`
/// `[1, B, 3]`: its outputs `[B, T, 3]`.
fn lstm(x: &Tensor, h0: &Tensor, c0: &Tensor) -> Result<Tensor> {
    let opts = (Kind::Float, Device::Cpu);
    let w_ih = Tensor::linspace(-1.0, 1.0, 48, opts).reshape([12, 4]);
    let w_hh = Tensor::linspace(1.0, -1.0, 36, opts).reshape([12, 3]);
    let (y, _, _) = x.f_lstm(&[h0, c0], &[&w_ih, &w_hh], false, 1, 0.0, false, false, true).ctx("lstm")?;
    Ok(y)
}

#[test]
fn rows_repeated_to_the_inputs_batch_follow_it_after_export() {
    let row = Tensor::from_slice(&[1.5f32, -2.0, f32::INFINITY]).reshape([1, 3]);
    let flags = Tensor::from_slice(&[true, false]).reshape([1, 1, 2]);
    let counts = Tensor::from_slice(&[4i64]).reshape([1, 1]);
    let mut e = Exporter::new("m").unwrap();
    let like = || Tensor::zeros([2, 0, 5], (Kind::Double, Device::Cpu));
    e.trace("forward", &[like()], |i| {
        Ok(vec![
            repeat_to_batch_of(&i[0], &row)?,
            repeat_to_batch_of(&i[0], &flags)?,
            repeat_to_batch_of(&i[0], &counts)?,
        ])
    })
    .unwrap();
    let loaded = e.to_cmodule().unwrap();
    for b in [1, 5] {
        let like = Tensor::zeros([b, 7, 5], (Kind::Double, Device::Cpu));
        let tch::IValue::Tuple(parts) = loaded.forward_is(&[tch::IValue::Tensor(like)]).unwrap() else {
            panic!("three outputs")
        };
        let parts: Vec<Tensor> =
            parts.into_iter().map(|p| if let tch::IValue::Tensor(t) = p { t } else { panic!() }).collect();
        assert!(parts[0].equal(&row.repeat([b, 1])), "{b}");
        assert!(parts[1].equal(&flags.repeat([b, 1, 1])), "{b}");
        assert!(parts[2].equal(&counts.repeat([b, 1])), "{b}");
    }
    assert!(matches!(repeat_to_batch_of(&like(), &row.repeat([2, 1])), Err(Error::Shape { .. })));
    assert!(matches!(repeat_to_batch_of(&Tensor::from(1.0), &row), Err(Error::Shape { .. })));
}

#[test]
fn a_recurrent_kernel_given_a_state_of_another_batch_raises_instead_of_corrupting_memory() {
    let opts = (Kind::Float, Device::Cpu);
    let x = |b: i64| Tensor::linspace(-2.0, 2.0, b * 5 * 4, opts).reshape([b, 5, 4]);
    // A zero state of host sizes: fixed at the traced batch (2).
    let mut fixed = Exporter::new("m").unwrap();
    fixed
        .trace("forward", &[x(2)], |i| {
            let zeros = Tensor::zeros([1, 2, 3], opts);
            Ok(vec![lstm(&i[0], &zeros, &zeros)?])
        })
        .unwrap();
    let fixed = fixed.to_cmodule().unwrap();
    let zeros = |b: i64| Tensor::zeros([1, b, 3], opts);
    let want = |b: i64| lstm(&x(b), &zeros(b), &zeros(b)).unwrap();
    assert!(fixed.forward_ts(&[x(2)]).unwrap().equal(&want(2)));
    for b in [1, 3, 64] {
        let err = fixed.forward_ts(&[x(b)]).unwrap_err().to_string();
        assert!(
            err.contains("initial state has batch size 2 (fixed when traced")
                && err.contains(&format!("the input has batch size {b}")),
            "{err}"
        );
    }
    // The same state built from the input follows its batch, bit for bit as eager.
    let mut dynamic = Exporter::new("m").unwrap();
    dynamic
        .trace("forward", &[x(2)], |i| {
            let zeros = repeat_to_batch_of(&i[0], &Tensor::zeros([1, 3], opts))?.unsqueeze(0);
            Ok(vec![lstm(&i[0], &zeros, &zeros)?])
        })
        .unwrap();
    let dynamic = dynamic.to_cmodule().unwrap();
    for b in [1, 2, 3, 64] {
        assert!(dynamic.forward_ts(&[x(b)]).unwrap().equal(&want(b)), "{b}");
    }
}

#[test]
fn sizes_fixed_on_the_host_are_checked_when_the_method_runs() {
    let mut e = Exporter::new("m").unwrap();
    // A flatten to [-1, 4 * n] with a host n: another n would silently regroup the rows.
    e.trace("forward", &[x(2)], |i| {
        check_traced_size(&i[0], -1, "x [B, 4]")?;
        Ok(vec![i[0].reshape([-1, 8])])
    })
    .unwrap();
    let loaded = e.to_cmodule().unwrap();
    assert_eq!(loaded.forward_ts(&[x(6)]).unwrap().size(), [3, 8]);
    let err = loaded.forward_ts(&[Tensor::zeros([4, 2], (Kind::Float, Device::Cpu))]).unwrap_err();
    assert!(
        err.to_string()
            .contains("couplet export: x [B, 4] must have size 4 in dimension 1 (fixed when traced), got 2"),
        "{err}"
    );
    assert!(check_traced_size(&x(2), 1, "x").is_ok(), "outside a trace: nothing recorded");
    assert!(matches!(check_traced_size(&x(2), 2, "x"), Err(Error::Shape { .. })));
}
