//! The summary writer's files read by TensorBoard itself: writes a run of every summary kind,
//! a resumed run and projector files, then runs `scripts/fixtures/tensorboard_check.py`
//! (tensorboard==2.21.0's `EventAccumulator`, installed by `scripts/setup-libtorch.sh`), which
//! checks every tag, step and value.

use couplet_train::summary::{EmbeddingMetadata, Projector, SummaryWriter};
use std::path::{Path, PathBuf};
use std::process::Command;
use tch::Tensor;

/// The repository root (this crate's parent).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("train/ has a parent").to_path_buf()
}

/// A 40 x 30 RGB PNG whose pixel (x, y) is (x, y, 200).
fn png_bytes() -> Vec<u8> {
    let (w, h) = (40u32, 30u32);
    let mut pixels = Vec::new();
    for y in 0..h {
        for x in 0..w {
            pixels.extend_from_slice(&[x as u8, y as u8, 200]);
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(&pixels).unwrap();
    writer.finish().unwrap();
    out
}

fn write_main_run(dir: &Path) {
    let writer = SummaryWriter::new(dir).unwrap();
    for step in 0..10 {
        writer.add_scalar("train/loss", 1.0 / (step + 1) as f64, step).unwrap();
    }
    writer.add_scalar("eval/accuracy", 0.25, 0).unwrap();
    writer.add_scalar("eval/accuracy", 0.75, 5).unwrap();
    let values = Tensor::from_slice(&[-1.5f64, 0.0, 0.25, 0.25, 3.0, 1e-13]).reshape([2, 3]);
    writer.add_histogram("weights", &values, 1).unwrap();
    writer.add_image("plot", &png_bytes(), 2).unwrap();
    writer.add_text("notes", "hello **world**", 3).unwrap();
    writer.close().unwrap();
}

/// A run that wrote steps 0..=9, was killed, and resumed from a checkpoint at step 6.
fn write_resumed_run(dir: &Path) {
    let first = SummaryWriter::new(dir).unwrap();
    for step in 0..10 {
        first.add_scalar("train/loss", 1.0 / (step + 1) as f64, step).unwrap();
    }
    first.close().unwrap();
    let second = SummaryWriter::new(dir).unwrap();
    second.add_session_start(6).unwrap();
    for step in 6..12 {
        second.add_scalar("train/loss", 100.0 + step as f64, step).unwrap();
    }
    second.close().unwrap();
}

fn write_projector(dir: &Path) {
    let p = Projector::new(dir);
    let words = Tensor::from_slice(&[0.5f32, -1.0, 2.0, 0.0, 1e-3, 4.25]).reshape([3, 2]);
    p.add_embedding("words", &words, Some(&EmbeddingMetadata::labels(["the", "cat", "sat"])), 7).unwrap();
    let points = Tensor::from_slice(&[1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0]).reshape([2, 3]);
    let columns = EmbeddingMetadata::Columns {
        header: vec!["label".into(), "split".into()],
        rows: vec![vec!["a".into(), "train".into()], vec!["b".into(), "test".into()]],
    };
    p.add_embedding("points", &points, Some(&columns), 8).unwrap();
}

#[test]
fn tensorboard_reads_every_tag_step_and_value() {
    let logdir = std::env::temp_dir().join(format!("couplet-summary-tensorboard-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&logdir);
    write_main_run(&logdir.join("main"));
    write_resumed_run(&logdir.join("resumed"));
    write_projector(&logdir.join("projector"));

    let python = repo().join(".venv/bin/python");
    let script = repo().join("scripts/fixtures/tensorboard_check.py");
    let output = Command::new(&python).arg(&script).arg(&logdir).output().unwrap_or_else(|e| {
        panic!("cannot run {} ({e}); run `bash scripts/setup-libtorch.sh` first", python.display())
    });
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.trim_end().ends_with("ok"),
        "tensorboard_check.py failed (tensorboard missing? run `bash scripts/setup-libtorch.sh`):\n{stdout}\n{stderr}"
    );
    std::fs::remove_dir_all(&logdir).unwrap();
}
