//! Optimizer state in checkpoint files: alone ([`save_optimizer`], [`restore_optimizer`]) or
//! beside a model in a [`CheckpointManager`](super::CheckpointManager)'s numbered checkpoints
//! (`CheckpointManager::save_with_optimizers`,
//! `CheckpointManager::restore_latest_with_optimizers`, in `manager.rs`), like TensorFlow's
//! `tf.train.Checkpoint(model=..., optimizer=...)` or a PyTorch training checkpoint holding
//! `model.state_dict()` and `optimizer.state_dict()`.

use super::save::{load, save_tensors};
use crate::error::{Error, Result};
use crate::optim::Optimizer;
use std::collections::BTreeMap;
use std::path::Path;

/// Saves the state of `optimizer` ([`Optimizer::state_tensors`]: keys
/// `{variable}/{slot}`, e.g. `gan/generator/linear/w/exp_avg`) to the safetensors file
/// `path`, atomically. An optimizer that has not stepped yet writes a file with no tensors.
/// The variables themselves are not saved: save the model with [`save`](super::save).
///
/// # Errors
/// [`Error::Torch`] if copying the state fails; [`Error::Checkpoint`] naming `path` if the
/// file cannot be written.
pub fn save_optimizer(optimizer: &(impl Optimizer + ?Sized), path: impl AsRef<Path>) -> Result<()> {
    save_tensors(&optimizer.state_tensors()?, path, &BTreeMap::new())
}

/// Restores the state of `optimizer` from a file written by [`save_optimizer`], strictly
/// ([`Optimizer::load_state_tensors`]): the optimizer must be of the same type and options,
/// over variables of the same names and shapes. The state is replaced as a whole; variables
/// with no state in the file get none (they had not been updated).
///
/// # Errors
/// [`Error::Checkpoint`] naming `path` if the file is missing, truncated or not safetensors,
/// or does not match the optimizer (the message lists every missing or unexpected key, shape
/// mismatch and invalid step count); the state is unchanged on error.
pub fn restore_optimizer(optimizer: &mut (impl Optimizer + ?Sized), path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let tensors = load(path)?;
    optimizer.load_state_tensors(&tensors).map_err(|e| in_file(path, None, e))
}

/// A mismatch reported by [`Optimizer::load_state_tensors`] as an [`Error::Checkpoint`]
/// naming `path` (and the optimizer's name in a manager's checkpoint); other errors as they are.
pub(super) fn in_file(path: &Path, name: Option<&str>, e: Error) -> Error {
    match e {
        Error::InvalidArgument { module, message } => {
            let name = name.map(|n| format!("optimizer {n:?} ({module}): ")).unwrap_or(format!("{module}: "));
            Error::checkpoint(path, format!("{name}{message}"))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{read_metadata, restore, CheckpointManager, TestDir};
    use crate::optim::{Adam, AdamConfig, RmsProp, RmsPropConfig, Sgd, SgdConfig};
    use crate::{Linear, LinearConfig, Module, Store, Variable};
    use tch::Tensor;
    use tch::{Device, Kind};

    /// A GAN-like model: `gan/generator/linear` (2 → 3) and `gan/discriminator/linear`
    /// (3 → 1), with values depending on `seed`.
    struct Gan {
        store: Store,
        g: Vec<Variable>,
        d: Vec<Variable>,
    }

    fn gan(seed: f64) -> Gan {
        let store = Store::cpu();
        let root = store.root().child("gan").unwrap();
        let g =
            Linear::new(&root.child("generator").unwrap(), LinearConfig::new(3).with_input_size(2)).unwrap();
        let d = Linear::new(&root.child("discriminator").unwrap(), LinearConfig::new(1).with_input_size(3))
            .unwrap();
        for (i, v) in store.variables().iter().enumerate() {
            let n = v.tensor().numel() as i64;
            let values = (Tensor::arange(n, (Kind::Float, Device::Cpu)) + seed + i as f64).cos();
            tch::no_grad(|| v.tensor().shallow_clone().copy_(&values.reshape(v.tensor().size())));
        }
        let (g, d) = (g.trainable_variables().unwrap(), d.trainable_variables().unwrap());
        Gan { store, g, d }
    }

    /// Sets the gradients of step `t` on `vars` to fixed values (no global RNG).
    fn set_grads(vars: &[Variable], t: i64) {
        for (i, v) in vars.iter().enumerate() {
            let mut p = v.tensor().shallow_clone();
            p.zero_grad();
            let n = p.numel() as i64;
            let g = ((Tensor::arange(n, (Kind::Float, Device::Cpu)) + 1.0) * 0.9 + t as f64 + i as f64).sin();
            (v.tensor() * g.reshape(p.size())).sum(Kind::Float).backward();
        }
    }

    fn train(opts: &mut [&mut dyn Optimizer], steps: std::ops::Range<i64>) {
        for t in steps {
            for opt in opts.iter_mut() {
                set_grads(opt.variables(), t);
                opt.step().unwrap();
            }
        }
    }

    fn same(a: &Store, b: &Store) -> bool {
        a.variables().iter().zip(b.variables()).all(|(x, y)| x.tensor().equal(y.tensor()))
    }

    fn opts(m: &Gan) -> (Adam, Sgd) {
        let g = Adam::new(m.g.clone(), AdamConfig::new(0.05).with_amsgrad(true)).unwrap();
        let d = Sgd::new(m.d.clone(), SgdConfig::new(0.1).with_momentum(0.9)).unwrap();
        (g, d)
    }

    #[test]
    fn save_and_restore_optimizer_continue_exactly() {
        let dir = TestDir::new("optim_file");
        let path = dir.join("opt.safetensors");
        let a = gan(0.0);
        let mut opt_a = RmsProp::new(a.g.clone(), RmsPropConfig::new(0.01).with_momentum(0.5)).unwrap();
        train(&mut [&mut opt_a], 0..3);
        save_optimizer(&opt_a, &path).unwrap();
        crate::checkpoint::save(&a.store, dir.join("model.safetensors")).unwrap();
        let names: Vec<String> = load(&path).unwrap().into_keys().collect();
        assert_eq!(
            names,
            [
                "gan/generator/linear/b/momentum_buffer",
                "gan/generator/linear/b/square_avg",
                "gan/generator/linear/b/step",
                "gan/generator/linear/w/momentum_buffer",
                "gan/generator/linear/w/square_avg",
                "gan/generator/linear/w/step",
            ]
        );

        let (b, c) = (gan(1.0), gan(2.0));
        restore(&b.store, dir.join("model.safetensors")).unwrap();
        restore(&c.store, dir.join("model.safetensors")).unwrap();
        let mut opt_b = RmsProp::new(b.g.clone(), RmsPropConfig::new(0.01).with_momentum(0.5)).unwrap();
        let dyn_b: &mut dyn Optimizer = &mut opt_b;
        restore_optimizer(dyn_b, &path).unwrap();
        let mut opt_c = RmsProp::new(c.g.clone(), RmsPropConfig::new(0.01).with_momentum(0.5)).unwrap();
        for opt in [&mut opt_a, &mut opt_b, &mut opt_c] {
            train(&mut [opt], 3..6);
        }
        assert!(same(&a.store, &b.store), "restored optimizer diverged");
        assert!(!same(&a.store, &c.store), "a fresh optimizer must differ");
    }

    #[test]
    fn restore_optimizer_mismatch_is_a_checkpoint_error() {
        let dir = TestDir::new("optim_file_mismatch");
        let path = dir.join("opt.safetensors");
        let m = gan(0.0);
        let (mut g, _) = opts(&m);
        train(&mut [&mut g], 0..1);
        save_optimizer(&g, &path).unwrap();
        let mut plain = Adam::new(m.g.clone(), AdamConfig::new(0.05)).unwrap();
        let e = restore_optimizer(&mut plain, &path).unwrap_err();
        assert!(matches!(&e, Error::Checkpoint { path: p, .. } if p == &path), "{e}");
        assert_eq!(
            e.to_string(),
            format!(
                "checkpoint {}: adam: state does not match the variables: unexpected (2): \
                 gan/generator/linear/b/max_exp_avg_sq, gan/generator/linear/w/max_exp_avg_sq",
                path.display()
            )
        );
        assert!(plain.state_tensors().unwrap().is_empty(), "nothing loaded on error");
        let e = restore_optimizer(&mut plain, dir.join("missing.safetensors")).unwrap_err();
        assert!(e.to_string().contains("cannot read"), "{e}");
    }

    #[test]
    fn an_unstepped_optimizer_saves_an_empty_file() {
        let dir = TestDir::new("optim_file_empty");
        let path = dir.join("opt.safetensors");
        let m = gan(0.0);
        let (g, _) = opts(&m);
        save_optimizer(&g as &dyn Optimizer, &path).unwrap();
        assert!(load(&path).unwrap().is_empty());
        // Restoring it into a stepped optimizer removes its state.
        let (mut g2, _) = opts(&m);
        train(&mut [&mut g2], 0..1);
        restore_optimizer(&mut g2, &path).unwrap();
        assert!(g2.state_tensors().unwrap().is_empty());
    }

    #[test]
    fn manager_round_trip_with_two_optimizers() {
        let dir = TestDir::new("optim_manager");
        let manager = CheckpointManager::new(&*dir, Some(2)).unwrap();
        let a = gan(0.0);
        let (mut ga, mut da) = opts(&a);
        train(&mut [&mut ga, &mut da], 0..3);
        let path =
            manager.save_with_optimizers(&a.store, &[("generator", &ga), ("discriminator", &da)], 3).unwrap();
        assert_eq!(path, manager.path_for(3));
        let meta = read_metadata(&path).unwrap();
        assert_eq!(meta["step"], "3");
        assert_eq!(meta["optimizers"], "generator,discriminator");
        let keys: Vec<String> = load(&path).unwrap().into_keys().collect();
        for key in [
            "gan/generator/linear/w",
            "gan/discriminator/linear/b",
            "optimizer/generator/gan/generator/linear/w/exp_avg",
            "optimizer/generator/gan/generator/linear/w/step",
            "optimizer/discriminator/gan/discriminator/linear/w/momentum_buffer",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key} not in {keys:?}");
        }
        assert_eq!(keys.len(), 4 + 2 * 4 + 2);

        let (b, c) = (gan(1.0), gan(2.0));
        let (mut gb, mut db) = opts(&b);
        let step = manager
            .restore_latest_with_optimizers(
                &b.store,
                &mut [("discriminator", &mut db), ("generator", &mut gb)],
            )
            .unwrap();
        assert_eq!(step, Some(3));
        // The model alone restores from the same file, for evaluation.
        assert_eq!(manager.restore_latest(&c.store).unwrap(), Some(3));
        assert!(same(&a.store, &c.store) && same(&a.store, &b.store));
        let (mut gc, mut dc) = opts(&c);
        train(&mut [&mut ga, &mut da], 3..6);
        train(&mut [&mut gb, &mut db], 3..6);
        train(&mut [&mut gc, &mut dc], 3..6);
        assert!(same(&a.store, &b.store), "restored training diverged");
        assert!(!same(&a.store, &c.store), "fresh optimizers must differ");
    }

    #[test]
    fn manager_without_checkpoint_restores_nothing() {
        let dir = TestDir::new("optim_manager_empty");
        let manager = CheckpointManager::new(&*dir, None).unwrap();
        let m = gan(0.0);
        let (mut g, _) = opts(&m);
        assert_eq!(manager.restore_latest_with_optimizers(&m.store, &mut [("g", &mut g)]).unwrap(), None);
    }

    #[test]
    fn manager_mismatches_are_errors_that_change_nothing() {
        let dir = TestDir::new("optim_manager_errors");
        let manager = CheckpointManager::new(&*dir, None).unwrap();
        let a = gan(0.0);
        let (mut ga, mut da) = opts(&a);
        train(&mut [&mut ga, &mut da], 0..2);
        let path =
            manager.save_with_optimizers(&a.store, &[("generator", &ga), ("discriminator", &da)], 2).unwrap();

        let b = gan(1.0);
        let snapshot: Vec<Tensor> = b.store.variables().iter().map(|v| v.tensor().copy()).collect();
        let unchanged =
            |store: &Store| store.variables().iter().zip(&snapshot).all(|(v, s)| v.tensor().equal(s));
        let (mut gb, mut db) = opts(&b);
        let e = manager.restore_latest_with_optimizers(&b.store, &mut [("generator", &mut gb)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "checkpoint {}: holds the optimizers [discriminator, generator], but [generator] were given",
                path.display()
            )
        );
        // The discriminator given as an RMSProp: the generator (loaded first) gets its state back.
        let mut wrong = RmsProp::new(b.d.clone(), RmsPropConfig::new(0.1)).unwrap();
        let e = manager
            .restore_latest_with_optimizers(
                &b.store,
                &mut [("generator", &mut gb), ("discriminator", &mut wrong)],
            )
            .unwrap_err();
        assert!(matches!(&e, Error::Checkpoint { path: p, .. } if p == &path), "{e}");
        assert_eq!(
            e.to_string(),
            format!(
                "checkpoint {}: optimizer \"discriminator\" (rmsprop): state does not match the variables: \
                 unexpected (2): gan/discriminator/linear/b/momentum_buffer, \
                 gan/discriminator/linear/w/momentum_buffer",
                path.display()
            )
        );
        assert!(gb.state_tensors().unwrap().is_empty(), "the generator's load was undone");
        assert!(unchanged(&b.store), "the model is not written on error");
        // A model that does not match: nothing changes either.
        let other = Store::cpu();
        let _ = Linear::new(&other.root(), LinearConfig::new(1).with_input_size(1)).unwrap();
        let e = manager
            .restore_latest_with_optimizers(&other, &mut [("generator", &mut gb), ("discriminator", &mut db)])
            .unwrap_err();
        assert!(e.to_string().contains("does not match the variables: missing in file (2): linear/w"), "{e}");
        assert!(gb.state_tensors().unwrap().is_empty() && db.state_tensors().unwrap().is_empty());
        // A checkpoint saved without optimizers.
        manager.save(&b.store, 5).unwrap();
        let e = manager.restore_latest_with_optimizers(&b.store, &mut []).unwrap_err();
        assert!(e
            .to_string()
            .ends_with("holds no optimizer state (it was written by save, not save_with_optimizers)"));
    }

    #[test]
    fn bad_names_are_invalid_arguments() {
        let dir = TestDir::new("optim_manager_names");
        let manager = CheckpointManager::new(&*dir, None).unwrap();
        let m = gan(0.0);
        let (g, d) = opts(&m);
        for (names, message) in [
            (["a/b", "d"], "checkpoint_manager: optimizer name \"a/b\" must be non-empty ASCII letters, digits, '_' or '-'"),
            (["", "d"], "checkpoint_manager: optimizer name \"\" must be non-empty ASCII letters, digits, '_' or '-'"),
            (["g", "g"], "checkpoint_manager: optimizer name \"g\" is given twice"),
        ] {
            let e = manager.save_with_optimizers(&m.store, &[(names[0], &g), (names[1], &d)], 1).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
            assert_eq!(e.to_string(), message);
        }
        let clash = Store::cpu();
        let _ =
            Linear::new(&clash.root().child("optimizer").unwrap(), LinearConfig::new(1).with_input_size(1));
        let e = manager.save_with_optimizers(&clash, &[], 1).unwrap_err();
        assert!(
            e.to_string().starts_with("checkpoint_manager: variable \"optimizer/linear/w\" lies under"),
            "{e}"
        );
        assert!(manager.checkpoints().unwrap().is_empty(), "nothing was written");
    }
}
