//! The writer's files read back with [`read_events`]: framing, header, values, flushing,
//! resume files and errors.

use super::proto::{EventWhat, SessionStatus, Value};
use super::*;
use std::path::PathBuf;
use tch::Tensor;

/// A fresh directory under the system temp dir, removed by the caller.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("couplet-summary-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn values(path: &std::path::Path) -> Vec<(i64, String, Value)> {
    read_events(path)
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.what {
            Some(EventWhat::Summary(s)) => Some((e.step, s)),
            _ => None,
        })
        .flat_map(|(step, s)| s.value.into_iter().map(move |v| (step, v.tag, v.value.unwrap())))
        .collect()
}

#[test]
fn scalars_are_written_after_the_file_version_in_order() {
    let dir = temp_dir("scalars");
    let writer = SummaryWriter::new(&dir).unwrap();
    let path = writer.path().to_path_buf();
    let name = path.file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.starts_with("events.out.tfevents."), "{name}");
    assert!(name.ends_with(&gethostname::gethostname().to_string_lossy().to_string()), "{name}");
    for step in 0..5 {
        writer.add_scalar("train/loss", 0.5 * step as f64, step).unwrap();
    }
    writer.flush().unwrap();
    let events = read_events(&path).unwrap();
    assert_eq!(events[0].what, Some(EventWhat::FileVersion("brain.Event:2".into())));
    let got = values(&path);
    let expected: Vec<_> =
        (0..5).map(|s| (s, "train/loss".to_string(), Value::SimpleValue(0.5 * s as f32))).collect();
    assert_eq!(got, expected);
    assert!(events.windows(2).all(|w| w[0].wall_time <= w[1].wall_time));
    drop(writer);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn events_reach_the_file_only_on_flush_time_or_drop() {
    let dir = temp_dir("flush");
    let writer =
        SummaryWriter::with_config(&dir, SummaryWriterConfig::default().with_flush_secs(3600.0)).unwrap();
    let path = writer.path().to_path_buf();
    writer.add_scalar("a", 1.0, 1).unwrap();
    // Only the header is on disk until a flush.
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(read_events(&path).unwrap().len(), 1);
    writer.flush().unwrap();
    assert_eq!(read_events(&path).unwrap().len(), 2);
    writer.add_scalar("a", 2.0, 2).unwrap();
    drop(writer);
    assert_eq!(values(&path).len(), 2);

    // A short flush_secs writes without being asked.
    let writer =
        SummaryWriter::with_config(&dir, SummaryWriterConfig::default().with_flush_secs(0.05)).unwrap();
    writer.add_scalar("b", 1.0, 1).unwrap();
    let start = std::time::Instant::now();
    while values(writer.path()).is_empty() && start.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(values(writer.path()).len(), 1);
    drop(writer);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_second_writer_appends_a_later_file_with_a_session_start() {
    let dir = temp_dir("resume");
    let first = SummaryWriter::new(&dir).unwrap();
    first.add_scalar("loss", 1.0, 10).unwrap();
    let first_path = first.path().to_path_buf();
    first.close().unwrap();
    let second = SummaryWriter::new(&dir).unwrap();
    second.add_session_start(5).unwrap();
    let second_path = second.path().to_path_buf();
    second.close().unwrap();
    assert_eq!(events_files(&dir).unwrap(), vec![first_path.clone(), second_path.clone()]);
    let last = read_events(&second_path).unwrap().pop().unwrap();
    assert_eq!(last.step, 5);
    match last.what {
        Some(EventWhat::SessionLog(log)) => assert_eq!(log.status, SessionStatus::Start as i32),
        other => panic!("expected a session log, got {other:?}"),
    }
    assert_eq!(values(&first_path).len(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn histograms_images_and_text_round_trip() {
    let dir = temp_dir("kinds");
    let writer = SummaryWriter::new(&dir).unwrap();
    writer.add_histogram("w", &Tensor::from_slice(&[1.0f32, 2.0, 3.0]), 3).unwrap();
    let mut png = vec![0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n', 0, 0, 0, 13];
    png.extend_from_slice(b"IHDR");
    png.extend_from_slice(&7u32.to_be_bytes());
    png.extend_from_slice(&5u32.to_be_bytes());
    png.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
    writer.add_image("img", &png, 4).unwrap();
    writer.add_text("note", "hello *world*", 5).unwrap();
    let path = writer.path().to_path_buf();
    writer.close().unwrap();
    let got = values(&path);
    assert_eq!(got.len(), 3);
    match &got[0] {
        (3, tag, Value::Histo(h)) if tag == "w" => {
            assert_eq!((h.min, h.max, h.num, h.sum, h.sum_squares), (1.0, 3.0, 3.0, 6.0, 14.0));
        }
        other => panic!("{other:?}"),
    }
    match &got[1] {
        (4, _, Value::Image(i)) => {
            assert_eq!((i.width, i.height, i.colorspace), (7, 5, 3));
            assert_eq!(i.encoded_image_string, png);
        }
        other => panic!("{other:?}"),
    }
    match &got[2] {
        (5, _, Value::Tensor(t)) => assert_eq!(t.string_val, vec![b"hello *world*".to_vec()]),
        other => panic!("{other:?}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_settings_and_inputs_are_typed_errors() {
    let dir = temp_dir("errors");
    for config in [
        SummaryWriterConfig::default().with_flush_secs(f64::NAN),
        SummaryWriterConfig::default().with_flush_secs(0.0),
        SummaryWriterConfig::default().with_max_queue(0),
        SummaryWriterConfig::default().with_filename_suffix("a/b"),
    ] {
        let e = SummaryWriter::with_config(&dir, config).unwrap_err();
        assert!(matches!(e, couplet_modules::Error::Config { .. }), "{e}");
    }
    let writer = SummaryWriter::new(&dir).unwrap();
    assert!(writer.add_scalar("", 1.0, 0).is_err());
    let e = writer.add_image("img", b"not a png", 0).unwrap_err();
    assert!(e.to_string().starts_with("summary_writer: image \"img\": not a PNG file"), "{e}");
    let e = writer.add_histogram("h", &Tensor::from_slice(&[f32::NAN]), 0).unwrap_err();
    assert!(e.to_string().contains("histogram \"h\""), "{e}");
    writer.close().unwrap();
    // A logdir that is a file cannot be created.
    let file = dir.join("file");
    std::fs::write(&file, b"").unwrap();
    assert!(matches!(SummaryWriter::new(&file).unwrap_err(), couplet_modules::Error::Io { .. }));
    std::fs::remove_dir_all(&dir).unwrap();
}
