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
