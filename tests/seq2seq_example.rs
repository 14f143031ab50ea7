//! The seq2seq example, driven by tests: the date generator, a short training run that must
//! learn, checkpoints that resume, and `--translate`.

mod common;
#[allow(dead_code)]
#[path = "../examples/seq2seq/main.rs"]
mod seq2seq;

use clap::{CommandFactory, Parser};
use rand::rngs::StdRng;
use rand::SeedableRng;
use seq2seq::data::{days_in_month, is_leap, render, sample, Case, Dataset, Date, Vocab, END, FORMATS, PAD};
use seq2seq::Args;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

/// A fresh folder under the target's temporary directory.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("couplet-seq2seq-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Arguments of a short CPU run writing into `dir`, plus `extra`.
fn short_args(dir: &std::path::Path, extra: &[&str]) -> Args {
    let dir = dir.to_str().unwrap();
    let mut argv = vec![
        "seq2seq",
        "--device",
        "cpu",
        "--quiet",
        "--train-size",
        "3000",
        "--valid-size",
        "200",
        "--test-size",
        "200",
        "--embed-dim",
        "16",
        "--encoder-hidden",
        "32",
        "--decoder-hidden",
        "64",
        "--logdir",
    ];
    let logdir = format!("{dir}/run");
    argv.push(&logdir);
    argv.extend_from_slice(extra);
    Args::try_parse_from(argv).unwrap()
}

#[test]
fn cli_is_consistent_and_defaults_match_the_readme_run() {
    Args::command().debug_assert();
    let args = Args::try_parse_from(["seq2seq"]).unwrap();
    assert_eq!(args.max_minutes, 5.0);
    assert_eq!(args.seed, 42);
    assert!(args.translate.is_empty() && !args.resume);
    assert!(Args::try_parse_from(["seq2seq", "--device", "tpu"]).is_err());
    assert!(Args::try_parse_from(["seq2seq", "--attention", "bahdanau"]).is_ok());
}

#[test]
fn calendar_arithmetic_matches_known_dates() {
    // Independent facts: 1970-01-01 was a Thursday, 2000-02-29 a Tuesday, 2017-03-04 a
    // Saturday, 1999-12-31 a Friday; 2000-01-01 is day 10957 of the Unix epoch.
    let thursday = Date::new(1970, 1, 1).unwrap();
    assert_eq!((thursday.days(), thursday.weekday()), (0, 3));
    assert_eq!(Date::new(2000, 1, 1).unwrap().days(), 10_957);
    assert_eq!(Date::new(2000, 2, 29).unwrap().weekday(), 1);
    assert_eq!(Date::new(2017, 3, 4).unwrap().weekday(), 5);
    assert_eq!(Date::new(1999, 12, 31).unwrap().weekday(), 4);
    assert_eq!(Date::from_days(10_957 + 59), Date::new(2000, 2, 29).unwrap());
    // Leap years: divisible by 4, except centuries not divisible by 400.
    assert!(is_leap(2000) && is_leap(1996) && is_leap(2048));
    assert!(!is_leap(1900) && !is_leap(2100) && !is_leap(2017));
    assert_eq!(days_in_month(2000, 2), 29);
    assert_eq!(days_in_month(1999, 2), 28);
    assert!(Date::new(2001, 2, 29).is_none() && Date::new(2017, 4, 31).is_none());
    // Every day of the century round-trips, and consecutive days are consecutive dates.
    let first = Date::new(1950, 1, 1).unwrap().days();
    let last = Date::new(2049, 12, 31).unwrap().days();
    assert_eq!(last - first + 1, 100 * 365 + 25, "1952..=2048 holds 25 leap years");
    let mut previous: Option<Date> = None;
    for day in first..=last {
        let date = Date::from_days(day);
        assert_eq!(date.days(), day);
        assert_eq!(Date::new(date.year, date.month, date.day), Some(date));
        if let Some(p) = previous {
            assert!(p < date);
        }
        previous = Some(date);
    }
}

#[test]
fn formats_write_known_dates_and_iso_targets_are_right() {
    let date = Date::new(2017, 3, 4).unwrap();
    for (i, format) in FORMATS.iter().enumerate() {
        assert_eq!(render(&date, i, Case::Written), format.example, "format {i}");
    }
    assert_eq!(date.iso(), "2017-03-04");
    let by_example = |example: &str| FORMATS.iter().position(|f| f.example == example).unwrap();
    let cases = [
        ((1999, 12, 31), "Saturday, March 4th 2017", Case::Written, "Friday, December 31st 1999"),
        ((1950, 1, 2), "4 Mar 17", Case::Lower, "2 jan 50"),
        ((2049, 11, 22), "03/04/2017", Case::Written, "11/22/2049"),
        ((2000, 2, 29), "4.3.2017", Case::Written, "29.2.2000"),
        ((2003, 7, 13), "the 4th of March, 2017", Case::Upper, "THE 13TH OF JULY, 2003"),
        ((1961, 9, 23), "Mar. 4th, 17", Case::Written, "Sep. 23rd, 61"),
        ((2012, 10, 11), "March the 4th, 2017", Case::Lower, "october the 11th, 2012"),
        ((1988, 5, 1), "3/4/17", Case::Written, "5/1/88"),
        ((1988, 5, 1), "04.03.17", Case::Written, "01.05.88"),
    ];
    for ((y, m, d), example, case, expected) in cases {
        let date = Date::new(y, m, d).unwrap();
        assert_eq!(render(&date, by_example(example), case), expected);
    }
    // Samples: the target is the ISO form of the sampled date.
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..2000 {
        let e = sample(&mut rng);
        let iso = format!("{:04}-{:02}-{:02}", e.date.year, e.date.month, e.date.day);
        assert_eq!(e.target, iso);
        assert!((1950..=2049).contains(&e.date.year));
    }
}

#[test]
fn february_29th_appears_only_in_leap_years() {
    let data = Dataset::generate(3, 40_000, 0, 0).unwrap();
    let mut leap_days = 0;
    for e in &data.train {
        if e.date.month == 2 && e.date.day == 29 {
            assert!(is_leap(e.date.year), "{e:?}");
            assert!(e.target.ends_with("-02-29"));
            leap_days += 1;
        }
        assert!(e.date.day <= days_in_month(e.date.year, e.date.month), "{e:?}");
    }
    // 25 of 36525 days are Feb 29ths: about 27 expected in 40000 draws.
    assert!(leap_days > 5, "only {leap_days} Feb 29ths");
}

#[test]
fn splits_are_disjoint_deterministic_and_varied() {
    let data = Dataset::generate(11, 5000, 500, 500).unwrap();
    assert_eq!((data.train.len(), data.valid.len(), data.test.len()), (5000, 500, 500));
    let set =
        |split: &[seq2seq::data::Example]| split.iter().map(|e| e.input.clone()).collect::<HashSet<_>>();
    let (train, valid, test) = (set(&data.train), set(&data.valid), set(&data.test));
    assert_eq!((train.len(), valid.len(), test.len()), (5000, 500, 500), "no duplicate within a split");
    assert!(train.is_disjoint(&valid) && train.is_disjoint(&test) && valid.is_disjoint(&test));
    // The same seed gives the same data; another seed other data.
    let again = Dataset::generate(11, 5000, 500, 500).unwrap();
    assert_eq!(again.test, data.test);
    assert_ne!(Dataset::generate(12, 5000, 500, 500).unwrap().test, data.test);
    // Every format and all three cases occur; input lengths vary widely.
    let formats: HashSet<usize> = data.train.iter().map(|e| e.format).collect();
    assert_eq!(formats.len(), FORMATS.len());
    assert!(data
        .train
        .iter()
        .any(|e| e.input.chars().any(|c| c.is_ascii_uppercase()) && e.input.contains("DAY")));
    assert!(data.train.iter().any(|e| e.input.starts_with("the ")));
    let lengths: Vec<usize> = data.train.iter().map(|e| e.input.len()).collect();
    assert!(*lengths.iter().min().unwrap() <= 8 && *lengths.iter().max().unwrap() >= 28);
    // The overlap check finds a planted duplicate.
    let mut broken = data.clone();
    broken.test.push(data.train[17].clone());
    let err = broken.check_disjoint().unwrap_err().to_string();
    assert!(err.contains(&format!("{:?}", data.train[17].input)) && err.contains("train"), "{err}");
}

#[test]
fn every_input_string_has_one_meaning() {
    // The fixed conventions make the mapping a function: no string is written for two dates.
    let mut rng = StdRng::seed_from_u64(5);
    let mut meaning: HashMap<String, String> = HashMap::new();
    for _ in 0..100_000 {
        let e = sample(&mut rng);
        let previous = meaning.insert(e.input.clone(), e.target.clone());
        assert!(previous.map_or(true, |p| p == e.target), "{:?} means two dates", e.input);
    }
}

#[test]
fn vocabularies_round_trip_and_mark_specials() {
    let source = Vocab::input();
    let target = Vocab::target();
    assert_eq!(target.size(), 4 + 11);
    let mut rng = StdRng::seed_from_u64(1);
    for _ in 0..500 {
        let e = sample(&mut rng);
        let ids = source.encode(&e.input);
        assert!(ids.iter().all(|&i| i >= 4 && i < source.size()), "{:?} has unknown characters", e.input);
        assert_eq!(source.decode(&ids), e.input);
        let mut t = target.encode(&e.target);
        t.extend([END, PAD, 7]);
        assert_eq!(target.decode(&t), e.target, "decoding stops at the end token");
    }
    assert_eq!(source.encode("é"), [3]);
    assert_eq!(
        (target.label(0), target.label(1), target.label(2)),
        ("<pad>".into(), "<s>".into(), "</s>".into())
    );
}

#[test]
fn short_training_run_learns_and_resumes_from_its_checkpoints() {
    let _rng = common::rng_guard();
    let dir = temp_dir("learn");
    let args = short_args(&dir, &["--steps", "200", "--eval-every", "100", "--max-minutes", "30"]);
    let report = seq2seq::run(&args).unwrap();
    assert_eq!((report.start_step, report.step), (0, 200));
    let first = &report.validations[0];
    let last = report.validations.last().unwrap();
    assert_eq!((first.step, last.step), (0, 200));
    assert!(first.loss > 2.0, "an untrained model is near ln(15) = 2.7: {first:?}");
    assert!(
        last.loss < 0.3 * first.loss,
        "validation loss must fall well below its start: {:?}",
        report.validations
    );
    // Chance is 1/15 per character, and ~0 for a whole date (one in 36525 dates).
    assert!(last.token_accuracy > 0.8 && last.exact_match > 0.1, "{last:?}");
    let test = report.test.as_ref().unwrap();
    assert!(test.token_accuracy > 0.8 && test.exact_match > 0.1, "{test:?}");
    let checkpoint = report.checkpoint.clone().unwrap();
    assert!(checkpoint.ends_with("ckpt-00000200.safetensors") && checkpoint.exists());
    assert_eq!(report.plots.len(), 3);
    for plot in &report.plots {
        let bytes = std::fs::read(plot).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
    }
    // TensorBoard: train/loss every 10 steps, eval/<metric> at each validation, the test
    // under eval_test, the attention heatmaps as images.
    let run = dir.join("run");
    let steps = |folder: &std::path::Path, tag: &str| -> Vec<i64> {
        let mut steps = Vec::new();
        for file in couplet::train::summary::events_files(folder).unwrap() {
            for event in couplet::train::summary::read_events(&file).unwrap() {
                if let Some(couplet::train::summary::proto::EventWhat::Summary(summary)) = event.what {
                    steps.extend(summary.value.iter().filter(|v| v.tag == tag).map(|_| event.step));
                }
            }
        }
        steps
    };
    assert_eq!(steps(&run, "train/loss"), (1..=20).map(|i| i * 10).collect::<Vec<_>>());
    assert_eq!(steps(&run.join("eval"), "eval/exact_match"), [0, 100, 200]);
    assert_eq!(steps(&run.join("eval_test"), "eval/exact_match"), [200]);
    assert_eq!(steps(&run, "attention/1"), [200]);
    assert_eq!(report.translations.len(), 6);
    for t in &report.translations {
        assert_eq!(t.beams.len(), 5);
        assert!(t.beams.windows(2).all(|w| w[0].1 >= w[1].1), "beams sorted by score: {t:?}");
    }

    // Resuming with no steps left restores the variables: the validation is the same.
    let resumed = seq2seq::run(&short_args(&dir, &["--steps", "200", "--resume"])).unwrap();
    assert_eq!((resumed.start_step, resumed.step), (200, 200));
    let again = &resumed.validations[0];
    assert_eq!(again.step, 200);
    assert!((again.loss - last.loss).abs() < 1e-5, "{again:?} vs {last:?}");
    assert_eq!(again.exact_match, last.exact_match);

    // Resuming with steps left continues the step count and writes later checkpoints.
    let more =
        seq2seq::run(&short_args(&dir, &["--steps", "230", "--eval-every", "10", "--resume"])).unwrap();
    assert_eq!((more.start_step, more.step), (200, 230));
    assert_eq!(more.validations.iter().map(|v| v.step).collect::<Vec<_>>(), [200, 210, 220, 230]);
    assert!(more.checkpoint.unwrap().ends_with("ckpt-00000230.safetensors"));

    // --translate decodes with the latest checkpoint.
    let translated =
        seq2seq::run(&short_args(&dir, &["--translate", "4 Mar 17", "--beam-width", "3"])).unwrap();
    assert_eq!(translated.step, 230);
    assert_eq!(translated.translations.len(), 1);
    assert_eq!(translated.translations[0].beams.len(), 3);
    // --decode greedy is beam search of width 1; sampling near temperature 0 is greedy.
    let one = |extra: &[&str]| {
        let mut flags = vec!["--translate", "4 Mar 17", "--translate", "1999-12-31"];
        flags.extend_from_slice(extra);
        let report = seq2seq::run(&short_args(&dir, &flags)).unwrap();
        report.translations.iter().map(|t| t.beams.clone()).collect::<Vec<_>>()
    };
    let greedy = one(&["--decode", "greedy"]);
    let width1 = one(&["--decode", "beam", "--beam-width", "1"]);
    let cold = one(&["--decode", "sample", "--temperature", "0.001"]);
    assert_eq!(greedy.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1]);
    for ((g, w), c) in greedy.iter().zip(&width1).zip(&cold) {
        assert_eq!(g[0].0, w[0].0);
        assert!((g[0].1 - w[0].1).abs() < 1e-4, "{g:?} vs {w:?}");
        assert_eq!(g[0].0, c[0].0);
    }
    let hot = one(&["--decode", "sample", "--temperature", "5", "--seed", "3"]);
    assert_eq!(hot, one(&["--decode", "sample", "--temperature", "5", "--seed", "3"]), "seeded");
    assert!(seq2seq::run(&short_args(
        &dir,
        &["--translate", "x", "--decode", "sample", "--temperature", "0"]
    ))
    .is_err());

    // A run without --resume starts afresh.
    let fresh = seq2seq::run(&short_args(&dir, &["--steps", "5", "--eval-every", "5"])).unwrap();
    assert_eq!((fresh.start_step, fresh.step), (0, 5));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn translate_without_a_checkpoint_is_an_error() {
    let _rng = common::rng_guard();
    let dir = temp_dir("empty");
    let err = seq2seq::run(&short_args(&dir, &["--translate", "4 Mar 17"])).unwrap_err();
    assert!(err.to_string().contains("needs a checkpoint"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
