//! TensorFlow checkpoints made by `scripts/fixtures/tf_checkpoint.py` (tensorflow-cpu 2.21.0,
//! tf-keras 2.21.0), read with couplet's TensorBundle reader, loaded into couplet modules
//! through the TF/Keras converters, and run: every output and final state must equal
//! TensorFlow's to 1e-9 in f64. The expected values are themselves a TF checkpoint
//! (`expected.*`, written by `tf.raw_ops.SaveV2`).

use couplet::attention::tf_weights::{save_tf_attention_layer, save_tf_bahdanau, save_tf_luong};
use couplet::attention::{
    memory_mask, AttentionDecoderConfig, AttentionDecoderCore, AttentionMechanism, BahdanauAttention,
    BahdanauConfig, LuongAttention, LuongConfig,
};
use couplet::checkpoint::tf::{latest_checkpoint, TfCheckpoint, TfCheckpointWriter, TfDType, TfLoader};
use couplet::rnn::tf_weights::{
    load_keras_gru, load_keras_lstm, load_tf_basic_rnn_cell, load_tf_gru_cell, load_tf_lstm_cell,
    save_keras_gru, save_keras_lstm, save_tf_basic_rnn_cell, save_tf_gru_cell, save_tf_lstm_cell,
};
use couplet::rnn::{
    dynamic_rnn, Gru, GruConfig, Lstm, LstmConfig, PaddedOutputs, RnnCore, StackedRnn, StackedRnnConfig,
    State, UnrollOptions, VanillaRnn, VanillaRnnConfig,
};
use couplet::{
    BatchNorm, BatchNormConfig, DataFormat, Embed, EmbedConfig, Error, LayerNorm, LayerNormConfig, Linear,
    LinearConfig, Mode, Store,
};
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

const TOL: f64 = 1e-9;

fn dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tf").join(name)
}

fn expected(name: &str) -> TfCheckpoint {
    TfCheckpoint::open(dir(name).join("expected")).unwrap()
}

fn close(actual: &Tensor, expected: &Tensor, what: &str) {
    assert_eq!(actual.size(), expected.size(), "{what}: shapes");
    let gap = (actual.to_kind(Kind::Double) - expected.to_kind(Kind::Double)).abs().max().double_value(&[]);
    assert!(gap <= TOL, "{what}: max |couplet - tf| = {gap:e}");
}

fn store() -> Store {
    Store::with_kind(Device::Cpu, Kind::Double).unwrap()
}

#[test]
fn a_saver_checkpoint_lists_names_shapes_and_dtypes() {
    let prefix = latest_checkpoint(dir("tf1_cells")).unwrap().unwrap();
    assert!(prefix.ends_with("model.ckpt-7"), "{}", prefix.display());
    let ckpt = TfCheckpoint::open(&prefix).unwrap();
    let kernel = ckpt.info("rnn/multi_rnn_cell/cell_0/lstm_cell/kernel").unwrap();
    assert_eq!((kernel.dtype, kernel.shape.as_slice()), (TfDType::Double, &[2 + 3, 16][..]));
    let step = ckpt.info("global_step").unwrap();
    assert_eq!((step.dtype, step.shape.len()), (TfDType::Int64, 0));
    assert_eq!(ckpt.tensor("global_step").unwrap().int64_value(&[]), 7);
    assert_eq!(ckpt.names().count(), 13);
    // The lengths TF saved come back as int64, exactly.
    let lengths = expected("tf1_cells").tensor("lengths").unwrap();
    assert_eq!(Vec::<i64>::try_from(&lengths).unwrap(), [5, 2, 0]);
}

/// MultiRNNCell [LSTMCell(peepholes, num_proj=3), GRUCell(5), BasicRNNCell(3)] under
/// dynamic_rnn with lengths [5, 2, 0].
#[test]
fn tf1_cells_in_a_multi_rnn_cell_match_tensorflow() {
    let ckpt = TfCheckpoint::open(latest_checkpoint(dir("tf1_cells")).unwrap().unwrap()).unwrap();
    let store = store();
    let root = store.root().child("encoder").unwrap();
    let lstm = Lstm::named(&root, "lstm", LstmConfig::new(4).with_peepholes(true).with_proj_size(3)).unwrap();
    let gru = Gru::named(&root, "gru", GruConfig::new(5).with_reset_after(false)).unwrap();
    let rnn = VanillaRnn::named(&root, "rnn", VanillaRnnConfig::new(3)).unwrap();
    let mut loader = TfLoader::new(&ckpt);
    load_tf_lstm_cell(&mut loader, "rnn/multi_rnn_cell/cell_0/lstm_cell", &lstm, 1.0).unwrap();
    load_tf_gru_cell(&mut loader, "rnn/multi_rnn_cell/cell_1/gru_cell", &gru).unwrap();
    load_tf_basic_rnn_cell(&mut loader, "rnn/multi_rnn_cell/cell_2/basic_rnn_cell", &rnn).unwrap();
    let report = loader.finish().unwrap();
    assert_eq!(report.loaded.len(), 12);

    let stack =
        StackedRnn::new(&root, vec![Box::new(lstm), Box::new(gru), Box::new(rnn)], StackedRnnConfig::new())
            .unwrap();
    let want = expected("tf1_cells");
    let lengths = Vec::<i64>::try_from(&want.tensor("lengths").unwrap()).unwrap();
    let (out, state) = dynamic_rnn(
        &stack,
        &want.tensor("inputs").unwrap(),
        &UnrollOptions::eval().with_lengths(&lengths[..]),
    )
    .unwrap();
    close(&out, &want.tensor("outputs").unwrap(), "outputs");
    let layers = state.as_tuple().unwrap();
    let State::Lstm { h, c } = &layers[0] else { panic!("an LSTM state, got {:?}", layers[0]) };
    close(h, &want.tensor("state_0_h").unwrap(), "lstm h (projected)");
    close(c, &want.tensor("state_0_c").unwrap(), "lstm c");
    close(layers[1].h().unwrap(), &want.tensor("state_1").unwrap(), "gru h");
    close(layers[2].h().unwrap(), &want.tensor("state_2").unwrap(), "basic rnn h");
}

#[test]
fn a_wrong_name_map_is_reported_all_at_once() {
    let ckpt = TfCheckpoint::open(latest_checkpoint(dir("tf1_cells")).unwrap().unwrap()).unwrap();
    let store = store();
    let lstm = Lstm::new(&store.root(), LstmConfig::new(4).with_peepholes(true).with_proj_size(3)).unwrap();
    let small = Gru::new(&store.root(), GruConfig::new(6).with_reset_after(false)).unwrap();
    let mut loader = TfLoader::new(&ckpt);
    load_tf_lstm_cell(&mut loader, "rnn/multi_rnn_cell/cell_0/lstm_cel", &lstm, 1.0).unwrap();
    load_tf_gru_cell(&mut loader, "rnn/multi_rnn_cell/cell_1/gru_cell", &small).unwrap();
    let e = loader.finish().unwrap_err();
    assert!(matches!(e, Error::Checkpoint { .. }));
    let e = e.to_string();
    assert!(
        e.contains("model.ckpt-7.index: load: missing [\"rnn/multi_rnn_cell/cell_0/lstm_cel/kernel\""),
        "{e}"
    );
    assert!(e.contains("unexpected [\"rnn/multi_rnn_cell/cell_0/lstm_cell/bias\""), "{e}");
    assert!(
        e.contains("rnn/multi_rnn_cell/cell_1/gru_cell/gates/kernel must be [_, 12], got [8, 10]"),
        "{e}"
    );
    assert!(!e.contains("global_step"), "TF bookkeeping is not unexpected: {e}");
    // A reset_after = true GRU cannot compute TF 1's GRUCell.
    let after = Gru::named(&store.root(), "after", GruConfig::new(5)).unwrap();
    let mut loader = TfLoader::new(&ckpt);
    assert!(matches!(
        load_tf_gru_cell(&mut loader, "rnn/multi_rnn_cell/cell_1/gru_cell", &after),
        Err(Error::Config { .. })
    ));
}

/// tf_keras Embedding -> LSTM -> GRU(reset_after=True) -> GRU(reset_after=False) -> Dense ->
/// LayerNormalization -> BatchNormalization, from `model.save_weights` (object-based names).
#[test]
fn a_keras_model_matches_layer_by_layer() {
    let ckpt = TfCheckpoint::open(latest_checkpoint(dir("keras")).unwrap().unwrap()).unwrap();
    let store = store();
    let root = store.root();
    let embed = Embed::new(&root, EmbedConfig::new(7, 3)).unwrap();
    let lstm = Lstm::new(&root, LstmConfig::new(4)).unwrap();
    let gru_after = Gru::named(&root, "gru_after", GruConfig::new(3)).unwrap();
    let gru_before = Gru::named(&root, "gru_before", GruConfig::new(2).with_reset_after(false)).unwrap();
    let dense = Linear::new(&root, LinearConfig::new(3)).unwrap();
    let layer_norm = LayerNorm::new(&root, LayerNormConfig::new().with_eps(1e-3)).unwrap();
    let batch_norm = BatchNorm::new(
        &root,
        BatchNormConfig::new()
            .with_data_format(DataFormat::ChannelsLast)
            .with_eps(1e-3)
            .with_test_local_stats(false),
    )
    .unwrap();
    let mut loader = TfLoader::new(&ckpt);
    loader.embedding("layer_with_weights-0", &embed).unwrap();
    load_keras_lstm(&mut loader, "layer_with_weights-1/cell", &lstm).unwrap();
    load_keras_gru(&mut loader, "layer_with_weights-2/cell", &gru_after).unwrap();
    load_keras_gru(&mut loader, "layer_with_weights-3/cell", &gru_before).unwrap();
    loader.dense("layer_with_weights-4", &dense).unwrap();
    loader.layer_norm("layer_with_weights-5", &layer_norm).unwrap();
    loader.batch_norm("layer_with_weights-6", &batch_norm).unwrap();
    assert_eq!(loader.finish().unwrap().loaded.len(), 18);

    let want = expected("keras");
    let e = embed.forward(&want.tensor("ids").unwrap()).unwrap();
    close(&e, &want.tensor("embedding").unwrap(), "embedding");
    let run = |core: &dyn RnnCore, x: &Tensor| dynamic_rnn(core, x, &UnrollOptions::eval()).unwrap().0;
    let l1 = run(&lstm, &e);
    close(&l1, &want.tensor("lstm").unwrap(), "keras lstm");
    let g1 = run(&gru_after, &l1);
    close(&g1, &want.tensor("gru_after").unwrap(), "keras gru reset_after=True");
    let g2 = run(&gru_before, &g1);
    close(&g2, &want.tensor("gru_before").unwrap(), "keras gru reset_after=False");
    let d = dense.forward(&g2).unwrap();
    close(&d, &want.tensor("dense").unwrap(), "dense");
    let ln = layer_norm.forward(&d).unwrap();
    close(&ln, &want.tensor("layer_norm").unwrap(), "layer norm");
    let bn = batch_norm.forward_t(&ln, Mode::Eval).unwrap();
    close(&bn, &want.tensor("batch_norm").unwrap(), "batch norm (moving statistics)");
}

#[test]
fn a_keras_gru_with_the_other_reset_after_is_a_mismatch() {
    let ckpt = TfCheckpoint::open(latest_checkpoint(dir("keras")).unwrap().unwrap()).unwrap();
    let store = store();
    let gru = Gru::new(&store.root(), GruConfig::new(3).with_reset_after(false)).unwrap();
    let mut loader = TfLoader::new(&ckpt);
    load_keras_gru(&mut loader, "layer_with_weights-2/cell", &gru).unwrap();
    let e = loader.finish_partial().unwrap_err().to_string();
    assert!(
        e.contains("bias must be [9] (reset_after=False) as gru has reset_after = false, got [2, 9]"),
        "{e}"
    );
}

/// `LSTMCell(4, num_proj=3, proj_clip=0.05)`: the clip is active in the fixture (the script
/// checks that TF's largest output is exactly 0.05).
#[test]
fn proj_clip_matches_tensorflow_and_needs_a_projection() {
    let ckpt = TfCheckpoint::open(latest_checkpoint(dir("tf1_proj_clip")).unwrap().unwrap()).unwrap();
    let store = store();
    let config = LstmConfig::new(4).with_proj_size(3).with_proj_clip(0.05);
    let lstm = Lstm::new(&store.root(), config.clone()).unwrap();
    let mut loader = TfLoader::new(&ckpt);
    load_tf_lstm_cell(&mut loader, "rnn/lstm_cell", &lstm, 1.0).unwrap();
    loader.finish().unwrap();
    let want = expected("tf1_proj_clip");
    let (out, state) = dynamic_rnn(&lstm, &want.tensor("inputs").unwrap(), &UnrollOptions::eval()).unwrap();
    close(&out, &want.tensor("outputs").unwrap(), "clipped outputs");
    let State::Lstm { h, c } = &state else { panic!("an LSTM state") };
    close(h, &want.tensor("h").unwrap(), "h");
    close(c, &want.tensor("c").unwrap(), "c");
    // Without the clip the outputs differ from TF's.
    let unclipped = Lstm::named(&store.root(), "unclipped", LstmConfig::new(4).with_proj_size(3)).unwrap();
    let mut loader = TfLoader::new(&ckpt);
    load_tf_lstm_cell(&mut loader, "rnn/lstm_cell", &unclipped, 1.0).unwrap();
    let free = dynamic_rnn(&unclipped, &want.tensor("inputs").unwrap(), &UnrollOptions::eval()).unwrap().0;
    assert!(free.abs().max().double_value(&[]) > 0.05);

    let bad = |c: LstmConfig| Lstm::named(&store.root(), "bad", c).unwrap_err().to_string();
    assert!(bad(LstmConfig::new(4).with_proj_clip(0.1)).contains("needs a projection"));
    assert!(bad(LstmConfig::new(4).with_proj_size(3).with_proj_clip(0.0)).contains("proj_clip must be > 0"));
    assert!(
        bad(LstmConfig::new(4).with_proj_size(3).with_proj_clip(f64::NAN)).contains("proj_clip must be > 0")
    );
}

/// tf_keras `Masking(0.0) -> LSTM(return_sequences, return_state)` over rows of lengths
/// [5, 2, 0]: Keras repeats each row's last output past its length where TF writes zeros;
/// the final states agree.
#[test]
fn keras_masking_carries_the_last_output_forward() {
    let ckpt = TfCheckpoint::open(latest_checkpoint(dir("keras_mask")).unwrap().unwrap()).unwrap();
    let store = store();
    let lstm = Lstm::new(&store.root(), LstmConfig::new(4)).unwrap();
    let mut loader = TfLoader::new(&ckpt);
    load_keras_lstm(&mut loader, "layer_with_weights-0/cell", &lstm).unwrap();
    loader.finish().unwrap();
    let want = expected("keras_mask");
    let x = want.tensor("inputs").unwrap();
    let lengths = Vec::<i64>::try_from(&want.tensor("lengths").unwrap()).unwrap();
    let keras =
        UnrollOptions::eval().with_lengths(&lengths[..]).with_padded_outputs(PaddedOutputs::CarryLast);
    let (out, state) = dynamic_rnn(&lstm, &x, &keras).unwrap();
    close(&out, &want.tensor("outputs").unwrap(), "keras masked outputs");
    let State::Lstm { h, c } = &state else { panic!("an LSTM state") };
    close(h, &want.tensor("h").unwrap(), "h");
    close(c, &want.tensor("c").unwrap(), "c");
    // TF's default writes zeros there, with the same final state.
    let (tf_out, tf_state) =
        dynamic_rnn(&lstm, &x, &UnrollOptions::eval().with_lengths(&lengths[..])).unwrap();
    assert_eq!(tf_out.get(1).narrow(0, 2, 3).abs().max().double_value(&[]), 0.0);
    assert!(out.get(1).narrow(0, 2, 3).abs().max().double_value(&[]) > 0.0);
    close(tf_state.h().unwrap(), h, "final h agrees");
    // Time-major gives the same, transposed.
    let xt = x.transpose(0, 1);
    let (out_t, _) = dynamic_rnn(&lstm, &xt, &keras.with_time_major(true)).unwrap();
    close(&out_t.transpose(0, 1), &out, "time-major");
}

/// The reverse direction: couplet's cells written as TF 1.x variables by
/// `couplet::rnn::tf_weights::save_tf_*`. `tests/fixtures/tf/couplet_written/model.ckpt.*` are
/// this test's own output (regenerated with `COUPLET_WRITE_TF_FIXTURES=1`), which
/// `scripts/fixtures/tf_checkpoint.py` restored with `tf.compat.v1.train.Saver` into a
/// MultiRNNCell and ran: the files written now must be byte-identical, and couplet's outputs
/// must equal TensorFlow's.
#[test]
fn cells_written_as_tf_variables_restore_in_tensorflow() {
    let store = store();
    let root = store.root().child("decoder").unwrap();
    let lstm = Lstm::named(
        &root,
        "lstm",
        LstmConfig::new(4).with_input_size(2).with_peepholes(true).with_proj_size(3),
    )
    .unwrap();
    let gru = Gru::named(&root, "gru", GruConfig::new(5).with_input_size(3).with_reset_after(false)).unwrap();
    let rnn = VanillaRnn::named(&root, "rnn", VanillaRnnConfig::new(3).with_input_size(5)).unwrap();
    for (k, var) in store.variables().iter().enumerate() {
        let t = var.tensor();
        let values =
            (Tensor::arange(t.numel() as i64, (Kind::Double, Device::Cpu)) * 0.37 + k as f64).sin() * 0.6;
        tch::no_grad(|| t.shallow_clone().copy_(&values.reshape(t.size())));
    }
    let mut writer = TfCheckpointWriter::new();
    save_tf_lstm_cell(&mut writer, "rnn/multi_rnn_cell/cell_0/lstm_cell", &lstm, 1.0).unwrap();
    save_tf_gru_cell(&mut writer, "rnn/multi_rnn_cell/cell_1/gru_cell", &gru).unwrap();
    save_tf_basic_rnn_cell(&mut writer, "rnn/multi_rnn_cell/cell_2/basic_rnn_cell", &rnn).unwrap();
    let fixture = dir("couplet_written");
    let out_dir = if std::env::var_os("COUPLET_WRITE_TF_FIXTURES").is_some() {
        std::fs::create_dir_all(&fixture).unwrap();
        fixture.clone()
    } else {
        let d = std::env::temp_dir().join(format!("couplet-tf-written-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    let prefix = writer.write(out_dir.join("model.ckpt")).unwrap();
    for suffix in [".index", ".data-00000-of-00001"] {
        let name = format!("model.ckpt{suffix}");
        let now = std::fs::read(out_dir.join(&name)).unwrap();
        assert!(
            now == std::fs::read(fixture.join(&name)).unwrap(),
            "{name} differs from the file TF restored"
        );
    }

    // Loading the written checkpoint back gives the same weights (load ∘ save = identity).
    let ckpt = TfCheckpoint::open(&prefix).unwrap();
    let again = Store::with_kind(Device::Cpu, Kind::Double).unwrap();
    let r = again.root().child("decoder").unwrap();
    let lstm2 = Lstm::named(&r, "lstm", LstmConfig::new(4).with_peepholes(true).with_proj_size(3)).unwrap();
    let gru2 = Gru::named(&r, "gru", GruConfig::new(5).with_reset_after(false)).unwrap();
    let rnn2 = VanillaRnn::named(&r, "rnn", VanillaRnnConfig::new(3)).unwrap();
    let mut loader = TfLoader::new(&ckpt);
    load_tf_lstm_cell(&mut loader, "rnn/multi_rnn_cell/cell_0/lstm_cell", &lstm2, 1.0).unwrap();
    load_tf_gru_cell(&mut loader, "rnn/multi_rnn_cell/cell_1/gru_cell", &gru2).unwrap();
    load_tf_basic_rnn_cell(&mut loader, "rnn/multi_rnn_cell/cell_2/basic_rnn_cell", &rnn2).unwrap();
    loader.finish().unwrap();
    if out_dir != fixture {
        let _ = std::fs::remove_dir_all(&out_dir);
    }

    let want = expected("couplet_written");
    let lengths = Vec::<i64>::try_from(&want.tensor("lengths").unwrap()).unwrap();
    let x = want.tensor("inputs").unwrap();
    let options = UnrollOptions::eval().with_lengths(&lengths[..]);
    for (what, cells) in [
        ("written", vec![Box::new(lstm) as Box<dyn RnnCore>, Box::new(gru), Box::new(rnn)]),
        ("read_back", vec![Box::new(lstm2) as Box<dyn RnnCore>, Box::new(gru2), Box::new(rnn2)]),
    ] {
        let stack = StackedRnn::named(&store.root(), what, cells, StackedRnnConfig::new()).unwrap();
        let (out, state) = dynamic_rnn(&stack, &x, &options).unwrap();
        close(&out, &want.tensor("outputs").unwrap(), &format!("{what}: outputs"));
        let layers = state.as_tuple().unwrap();
        close(layers[1].h().unwrap(), &want.tensor("state_1").unwrap(), &format!("{what}: gru h"));
    }
}

/// Every layer with a writer, with fixed weights, as `scripts/fixtures/tf_checkpoint.py`'s
/// `couplet_written_layers` builds them in TF: a tf_keras Embedding(7, 3) → LSTM(4) →
/// GRU(3, reset_after=True) → GRU(2, reset_after=False) → Dense(3) → LayerNormalization →
/// BatchNormalization, and TF Addons' LuongAttention(6, scale), BahdanauAttention(6, normalize)
/// over a memory of depth 3 and an AttentionWrapper attention layer of 4 over a cell output of 7.
struct Layers {
    store: Store,
    embed: Embed,
    lstm: Lstm,
    gru_after: Gru,
    gru_before: Gru,
    dense: Linear,
    layer_norm: LayerNorm,
    batch_norm: BatchNorm,
    luong: LuongAttention,
    bahdanau: BahdanauAttention,
    decoder: AttentionDecoderCore,
}

fn layers() -> Layers {
    let store = store();
    let root = store.root();
    let opts = (Kind::Double, Device::Cpu);
    let embed = Embed::new(&root, EmbedConfig::new(7, 3)).unwrap();
    let lstm = Lstm::new(&root, LstmConfig::new(4).with_input_size(3)).unwrap();
    let gru_after = Gru::named(&root, "gru_after", GruConfig::new(3).with_input_size(4)).unwrap();
    let gru_before =
        Gru::named(&root, "gru_before", GruConfig::new(2).with_input_size(3).with_reset_after(false))
            .unwrap();
    let dense = Linear::new(&root, LinearConfig::new(3).with_input_size(2)).unwrap();
    let layer_norm = LayerNorm::new(&root, LayerNormConfig::new().with_eps(1e-3)).unwrap();
    let _built = layer_norm.forward(&Tensor::zeros([1, 3], opts)).unwrap();
    let batch_norm = BatchNorm::new(
        &root,
        BatchNormConfig::new()
            .with_data_format(DataFormat::ChannelsLast)
            .with_eps(1e-3)
            .with_test_local_stats(false),
    )
    .unwrap();
    let _built = batch_norm.forward_t(&Tensor::zeros([1, 3], opts), Mode::Eval).unwrap();
    // The mechanisms' layers are built by a first preparation (and Bahdanau's query layer by
    // a first score).
    let luong = LuongAttention::new(&root, LuongConfig::new(6).with_scale(true)).unwrap();
    luong.prepare(&Tensor::zeros([1, 1, 3], opts), None).unwrap();
    let bahdanau = BahdanauAttention::new(&root, BahdanauConfig::new(6).with_normalize(true)).unwrap();
    let memory = bahdanau.prepare(&Tensor::zeros([1, 1, 3], opts), None).unwrap();
    let _built = bahdanau.score(&Tensor::zeros([1, 5], opts), &memory).unwrap();
    let cell = Lstm::named(&root, "decoder_cell", LstmConfig::new(7).with_input_size(1)).unwrap();
    let decoder_luong = LuongAttention::new(&root.child("decoder").unwrap(), LuongConfig::new(6)).unwrap();
    let decoder = AttentionDecoderCore::new(
        &root,
        Box::new(cell),
        Box::new(decoder_luong),
        AttentionDecoderConfig::new(4).with_memory_size(Some(3)),
    )
    .unwrap();
    // Fixed weights (the moving variance positive).
    for (k, var) in store.variables().iter().enumerate() {
        let t = var.tensor();
        let mut values = (Tensor::arange(t.numel() as i64, opts) * 0.37 + k as f64).sin() * 0.6;
        if var.name().ends_with("moving_variance") {
            values += 1.0;
        }
        tch::no_grad(|| t.shallow_clone().copy_(&values.reshape(t.size())));
    }
    Layers {
        store,
        embed,
        lstm,
        gru_after,
        gru_before,
        dense,
        layer_norm,
        batch_norm,
        luong,
        bahdanau,
        decoder,
    }
}

/// The reverse direction for layers: Keras layers, norms and attention written by couplet's
/// writers under the variable names of the TF model in `couplet_written_layers`.
/// `tests/fixtures/tf/couplet_written_layers/model.ckpt.*` are this test's own output
/// (regenerated with `COUPLET_WRITE_TF_FIXTURES=1`), which the script restored with Keras'
/// `load_weights` and `tf.compat.v1.train.Saver(var_list)` into the tf_keras model's and the
/// attention's variables (every checkpoint tensor restored into one) and ran; `read_by_tf.json` is what `tf.train.load_checkpoint`
/// listed. The files written now must be byte-identical, the names, dtypes and shapes those TF
/// read, and couplet's outputs must equal TensorFlow's at 1e-9.
#[test]
fn layers_written_as_keras_and_tf_variables_restore_in_tensorflow() {
    let l = layers();
    let mut writer = TfCheckpointWriter::new();
    writer.add_embedding("embedding", &l.embed).unwrap();
    save_keras_lstm(&mut writer, "lstm/lstm_cell", &l.lstm).unwrap();
    save_keras_gru(&mut writer, "gru_after/gru_cell", &l.gru_after).unwrap();
    save_keras_gru(&mut writer, "gru_before/gru_cell", &l.gru_before).unwrap();
    writer.add_dense("dense", &l.dense).unwrap();
    writer.add_layer_norm("layer_norm", &l.layer_norm).unwrap();
    writer.add_batch_norm("batch_norm", &l.batch_norm).unwrap();
    save_tf_luong(&mut writer, "attention_wrapper/luong_attention", &l.luong).unwrap();
    save_tf_bahdanau(&mut writer, "attention_wrapper/bahdanau_attention", &l.bahdanau).unwrap();
    save_tf_attention_layer(&mut writer, "attention_wrapper", &l.decoder).unwrap();
    let fixture = dir("couplet_written_layers");
    let out_dir = if std::env::var_os("COUPLET_WRITE_TF_FIXTURES").is_some() {
        std::fs::create_dir_all(&fixture).unwrap();
        fixture.clone()
    } else {
        let d = std::env::temp_dir().join(format!("couplet-tf-layers-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    let prefix = writer.write(out_dir.join("model.ckpt")).unwrap();
    for suffix in [".index", ".data-00000-of-00001"] {
        let name = format!("model.ckpt{suffix}");
        let now = std::fs::read(out_dir.join(&name)).unwrap();
        assert!(
            now == std::fs::read(fixture.join(&name)).unwrap(),
            "{name} differs from the file TF restored"
        );
    }
    // Names, dtypes and shapes as TensorFlow read them.
    let written = TfCheckpoint::open(&prefix).unwrap();
    let read: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("read_by_tf.json")).unwrap()).unwrap();
    let read = read.as_object().unwrap();
    assert_eq!(written.names().collect::<Vec<_>>(), read.keys().map(String::as_str).collect::<Vec<_>>());
    for (name, entry) in read {
        let info = written.info(name).unwrap();
        assert_eq!(entry["dtype"], "float64", "{name}");
        assert_eq!(info.dtype, TfDType::Double, "{name}");
        let shape: Vec<i64> =
            entry["shape"].as_array().unwrap().iter().map(|d| d.as_i64().unwrap()).collect();
        assert_eq!(info.shape, shape, "{name}");
    }
    if out_dir != fixture {
        let _ = std::fs::remove_dir_all(&out_dir);
    }

    // TensorFlow's outputs on the restored weights.
    let want = expected("couplet_written_layers");
    let t = |name: &str| want.tensor(name).unwrap();
    let e = l.embed.forward(&t("ids")).unwrap();
    close(&e, &t("embedding"), "embedding");
    let run = |core: &dyn RnnCore, x: &Tensor| dynamic_rnn(core, x, &UnrollOptions::eval()).unwrap().0;
    let l1 = run(&l.lstm, &e);
    close(&l1, &t("lstm"), "keras lstm");
    let g1 = run(&l.gru_after, &l1);
    close(&g1, &t("gru_after"), "keras gru reset_after=True");
    let g2 = run(&l.gru_before, &g1);
    close(&g2, &t("gru_before"), "keras gru reset_after=False");
    let d = l.dense.forward(&g2).unwrap();
    close(&d, &t("dense"), "dense");
    let ln = l.layer_norm.forward(&d).unwrap();
    close(&ln, &t("layer_norm"), "layer norm");
    let bn = l.batch_norm.forward_t(&ln, Mode::Eval).unwrap();
    close(&bn, &t("batch_norm"), "batch norm (moving statistics)");
    let memory = t("memory");
    let lengths = Vec::<i64>::try_from(&t("lengths")).unwrap();
    let mask = memory_mask(&memory, &lengths[..]).unwrap();
    for (name, mechanism) in [("luong", &l.luong as &dyn AttentionMechanism), ("bahdanau", &l.bahdanau)] {
        let prepared = mechanism.prepare(&memory, Some(&mask)).unwrap();
        let (context, alignments) = mechanism.attend(&t(&format!("{name}_query")), &prepared).unwrap();
        close(&alignments, &t(&format!("{name}_alignments")), &format!("{name} alignments"));
        close(&context, &t(&format!("{name}_context")), &format!("{name} context"));
    }
    let layer = l.decoder.attention_layer().unwrap();
    let attention = layer.forward(&Tensor::cat(&[t("cell_output"), t("luong_context")], 1)).unwrap();
    close(&attention, &t("attention"), "attention layer");
    drop(l.store);
}

#[test]
fn writers_refuse_modules_tensorflow_cannot_hold_and_unbuilt_layers() {
    let store = store();
    let root = store.root();
    let mut writer = TfCheckpointWriter::new();
    let peephole =
        Lstm::named(&root, "p", LstmConfig::new(2).with_input_size(1).with_peepholes(true)).unwrap();
    assert!(matches!(save_keras_lstm(&mut writer, "lstm", &peephole), Err(Error::Config { .. })));
    let lazy = Lstm::named(&root, "lazy", LstmConfig::new(2)).unwrap();
    assert!(matches!(save_keras_lstm(&mut writer, "lstm", &lazy), Err(Error::NotBuilt { .. })));
    let unbiased = Gru::named(&root, "g", GruConfig::new(2).with_input_size(1).with_bias(false)).unwrap();
    assert!(matches!(save_keras_gru(&mut writer, "gru", &unbiased), Err(Error::Config { .. })));
    let luong = LuongAttention::new(&root, LuongConfig::new(3)).unwrap();
    assert!(matches!(save_tf_luong(&mut writer, "luong", &luong), Err(Error::NotBuilt { .. })));
    let lazy_dense = Linear::named(&root, "d", LinearConfig::new(2)).unwrap();
    assert!(matches!(writer.add_dense("dense", &lazy_dense), Err(Error::NotBuilt { .. })));
    let dense = Linear::named(&root, "d2", LinearConfig::new(2).with_input_size(1)).unwrap();
    writer.add_dense("dense", &dense).unwrap();
    let e = writer.add_dense("dense", &dense).unwrap_err();
    assert!(e.to_string().contains("\"dense/kernel\" added twice"), "{e}");
    assert_eq!(writer.names().collect::<Vec<_>>(), ["dense/bias", "dense/kernel"]);
}
