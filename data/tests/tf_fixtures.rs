//! TFRecord and Example files in both directions against TensorFlow 2.21.0, and the hash
//! values of hash buckets and crosses (fixtures from scripts/fixtures/tfrecord.py).

use couplet_data::columns::{CategoricalColumn, CrossKey, CrossedColumn, HashBucketColumn};
use couplet_data::{
    hash_bucket, parse_example, tfrecord, tfrecord_compressed, Array, Compression, Example, Record,
    SequenceExample, TfRecordWriter, Values,
};
use prost::Message;
use serde_json::Value;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap()
}

/// A feature's values in the fixtures' JSON form (`{"int64": [..]}`, `{"float": ..}`, `{"bytes": hex}`).
fn as_json(values: &Values) -> Value {
    match values {
        Values::I64(v) => serde_json::json!({ "int64": v }),
        Values::F32(v) => serde_json::json!({ "float": v.iter().map(|&x| f64::from(x)).collect::<Vec<_>>() }),
        Values::Bytes(v) => {
            let hex: Vec<String> = v.iter().map(|b| b.iter().map(|x| format!("{x:02x}")).collect()).collect();
            serde_json::json!({ "bytes": hex })
        }
    }
}

#[test]
fn reads_what_tensorflow_wrote() {
    let expected = json("tf_written.json");
    let records =
        tfrecord(vec![fixture("tf_examples.tfrecord")]).try_map(|b| parse_example(&b)).collect().unwrap();
    let got: Vec<Value> = records
        .iter()
        .map(|r| Value::Object(r.fields.iter().map(|(k, a)| (k.clone(), as_json(&a.values))).collect()))
        .collect();
    assert_eq!(Value::Array(got), expected["examples"]);
    assert_eq!(records[0].fields["tokens"].values, Values::I64(vec![3, 1, 4, 1, 5, -9, 1 << 62]));

    let sequences = tfrecord(vec![fixture("tf_sequence_examples.tfrecord")]).collect().unwrap();
    for (bytes, want) in sequences.iter().zip(expected["sequence_examples"].as_array().unwrap()) {
        let se = SequenceExample::decode_bytes(bytes).unwrap();
        let record = se.to_record().unwrap();
        for (name, steps) in want["lists"].as_object().unwrap() {
            let a = &record.fields[name];
            let steps = steps.as_array().unwrap();
            assert_eq!(a.shape[0], steps.len());
            let flat: Vec<Value> = steps
                .iter()
                .flat_map(|s| s.as_object().unwrap().values().next().unwrap().as_array().unwrap().clone())
                .collect();
            let (_, mine) = as_json(&a.values).as_object().unwrap().clone().into_iter().next().unwrap();
            assert_eq!(mine, Value::Array(flat), "feature list {name}");
        }
        assert_eq!(as_json(&record.fields["label"].values), want["context"]["label"]);
    }
}

/// The records couplet writes for TensorFlow to read.
fn rust_records() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for i in 0..3i64 {
        let record = Record::new()
            .with("tokens", Array::ids((0..i * 3 + 1).map(|t| t * 7 - 5).collect()))
            .with("weight", Array::floats(vec![0.25 * i as f32, -1.5]))
            .with("text", Array::bytes(vec![format!("line {i}").into_bytes(), vec![0, 255]]));
        out.push(Example::from_record(&record).unwrap().encode_to_vec());
    }
    let sequence = Record::new()
        .with("label", Array::scalar_i64(5))
        .with("frames", Array::new(Values::F32(vec![1.0, 2.0, 3.0, 4.0]), vec![2, 2]).unwrap());
    out.push(SequenceExample::from_record(&sequence, &["label"]).unwrap().encode_to_vec());
    out
}

#[test]
fn tensorflow_reads_what_couplet_writes() {
    let path = std::env::temp_dir().join(format!("couplet-rust-examples-{}.tfrecord", std::process::id()));
    let mut w = TfRecordWriter::create(&path).unwrap();
    for r in rust_records() {
        w.write(&r).unwrap();
    }
    w.finish().unwrap();
    let written = std::fs::read(&path).unwrap();
    if std::env::var("COUPLET_WRITE_FIXTURES").is_ok_and(|v| v == "1") {
        std::fs::write(fixture("rust_examples.tfrecord"), &written).unwrap();
    }
    // The committed file is what TF read; the writer must still write it byte for byte.
    assert_eq!(written, std::fs::read(fixture("rust_examples.tfrecord")).unwrap());
    let tf = json("rust_examples_tf_read.json");
    let records = rust_records();
    for (bytes, want) in records.iter().zip(tf["examples"].as_array().unwrap()) {
        let r = parse_example(bytes).unwrap();
        let mine = Value::Object(r.fields.iter().map(|(k, a)| (k.clone(), as_json(&a.values))).collect());
        assert_eq!(&mine, want);
    }
    assert_eq!(tf["parsed_tokens_0"], serde_json::json!([-5]));
    assert_eq!(tf["sequence_example"]["context"]["label"], serde_json::json!({"int64": [5]}));
    assert_eq!(
        tf["sequence_example"]["lists"]["frames"],
        serde_json::json!([{"float": [1.0, 2.0]}, {"float": [3.0, 4.0]}])
    );
}

/// A record's features in the fixtures' JSON form.
fn record_json(r: &Record) -> Value {
    Value::Object(r.fields.iter().map(|(k, a)| (k.clone(), as_json(&a.values))).collect())
}

#[test]
fn reads_gzip_tensorflow_wrote() {
    let expected = json("tf_written.json");
    let records = tfrecord_compressed(vec![fixture("tf_examples.tfrecord.gz")], Compression::Gzip)
        .try_map(|b| parse_example(&b))
        .collect()
        .unwrap();
    assert_eq!(Value::Array(records.iter().map(record_json).collect()), expected["examples"]);
    // TF compressed it (the file is gzip, not the plain records).
    let bytes = std::fs::read(fixture("tf_examples.tfrecord.gz")).unwrap();
    assert_eq!(bytes[..2], [0x1f, 0x8b]);
    assert!(tfrecord(vec![fixture("tf_examples.tfrecord.gz")]).collect().is_err());
}

#[test]
fn tensorflow_reads_gzip_couplet_writes() {
    let path = std::env::temp_dir().join(format!("couplet-rust-examples-{}.tfrecord.gz", std::process::id()));
    let mut w = TfRecordWriter::create_with(&path, Compression::Gzip).unwrap();
    for r in rust_records() {
        w.write(&r).unwrap();
    }
    w.finish().unwrap();
    let written = std::fs::read(&path).unwrap();
    if std::env::var("COUPLET_WRITE_FIXTURES").is_ok_and(|v| v == "1") {
        std::fs::write(fixture("rust_examples.tfrecord.gz"), &written).unwrap();
    }
    // The committed file is what TF read. The deflate bytes depend on flate2's backend (which
    // feature unification picks), so compare the gzip header and what the stream holds.
    let committed = std::fs::read(fixture("rust_examples.tfrecord.gz")).unwrap();
    assert_eq!(written[..10], committed[..10], "gzip header");
    let read = |p: PathBuf| tfrecord_compressed(vec![p], Compression::Gzip).collect().unwrap();
    assert_eq!(read(path), rust_records());
    assert_eq!(read(fixture("rust_examples.tfrecord.gz")), rust_records());
    let tf = json("rust_examples_gzip_tf_read.json");
    let records = rust_records();
    let mine: Vec<Value> = records[..3].iter().map(|b| record_json(&parse_example(b).unwrap())).collect();
    assert_eq!(Value::Array(mine), tf["examples"]);
    assert_eq!(tf["parsed_tokens_0"], serde_json::json!([-5]));
    assert_eq!(
        tf["sequence_example"]["lists"]["frames"],
        serde_json::json!([{"float": [1.0, 2.0]}, {"float": [3.0, 4.0]}])
    );
}

#[test]
fn hashes_match_tensorflow() {
    let h = json("hashes.json");
    let strings: Vec<String> = serde_json::from_value(h["strings"].clone()).unwrap();
    for (n, want) in h["hash_bucket_fast"].as_object().unwrap() {
        let n: u64 = n.parse().unwrap();
        let got: Vec<i64> = strings.iter().map(|s| hash_bucket(s.as_bytes(), n)).collect();
        let want: Vec<i64> = serde_json::from_value(want.clone()).unwrap();
        assert_eq!(got, want, "to_hash_bucket_fast with {n} buckets");
    }
    let column = HashBucketColumn::new("w", 1000).unwrap();
    let words: Vec<Vec<u8>> = strings.iter().map(|s| s.as_bytes().to_vec()).collect();
    let want: Vec<i64> = serde_json::from_value(h["hash_bucket_fast"]["1000"].clone()).unwrap();
    assert_eq!(column.ids(&Record::new().with("w", Array::bytes(words))).unwrap(), want);

    let cross = &h["cross"];
    let column =
        CrossedColumn::new(vec![CrossKey::Raw("words".into()), CrossKey::Raw("ints".into())], 1000).unwrap();
    for row in 0..2 {
        let words: Vec<String> = serde_json::from_value(cross["words"][row].clone()).unwrap();
        let ints: Vec<i64> = serde_json::from_value(cross["ints"][row].clone()).unwrap();
        let r = Record::new()
            .with("words", Array::bytes(words.into_iter().map(String::into_bytes).collect()))
            .with("ints", Array::ids(ints));
        let want: Vec<i64> = serde_json::from_value(cross["ids"][row].clone()).unwrap();
        assert_eq!(column.ids(&r).unwrap(), want, "cross_hashed row {row}");
    }
}

#[test]
fn weighted_columns_match_tensorflow() {
    use couplet_data::columns::{
        CategoricalColumn, Combiner, DenseColumn, EmbeddingColumn, IdentityColumn, IndicatorColumn,
        WeightedCategoricalColumn,
    };
    use couplet_modules::Store;
    use std::sync::Arc;
    let w = json("weighted.json");
    let ids: Vec<Vec<i64>> = serde_json::from_value(w["ids"].clone()).unwrap();
    let weights: Vec<Vec<f32>> = serde_json::from_value(w["weights"].clone()).unwrap();
    let records: Vec<Record> = ids
        .into_iter()
        .zip(weights)
        .map(|(i, f)| Record::new().with("ids", Array::ids(i)).with("w", Array::floats(f)))
        .collect();
    let identity: Arc<dyn CategoricalColumn> = Arc::new(IdentityColumn::new("ids", 5, None).unwrap());
    let weighted: Arc<dyn CategoricalColumn> = Arc::new(WeightedCategoricalColumn::new(identity, "w"));
    let close = |got: &tch::Tensor, want: &Value, what: &str| {
        let want: Vec<Vec<f32>> = serde_json::from_value(want.clone()).unwrap();
        let got: Vec<Vec<f32>> =
            (0..want.len() as i64).map(|i| Vec::<f32>::try_from(got.get(i)).unwrap()).collect();
        for (g, t) in got.iter().flatten().zip(want.iter().flatten()) {
            assert!((g - t).abs() <= 1e-6 * t.abs().max(1.0), "{what}: got {got:?}, TF {want:?}");
        }
    };
    let indicator = IndicatorColumn::new(Arc::clone(&weighted)).unwrap();
    close(&indicator.dense(&records).unwrap(), &w["indicator"], "indicator");
    let table: Vec<f32> = serde_json::from_value::<Vec<Vec<f32>>>(w["table"].clone()).unwrap().concat();
    let store = Store::cpu();
    for (combiner, key) in [(Combiner::Sum, "sum"), (Combiner::Mean, "mean"), (Combiner::Sqrtn, "sqrtn")] {
        let column = EmbeddingColumn::new(&store.root(), Arc::clone(&weighted), 2, combiner).unwrap();
        tch::no_grad(|| {
            column.embed().embeddings().shallow_clone().copy_(&tch::Tensor::from_slice(&table).view([5, 2]))
        });
        close(&column.dense(&records).unwrap(), &w[key], key);
    }
}
