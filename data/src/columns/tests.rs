//! Column tests with hand-worked expectations (hash values against TF in tests/tf_fixtures.rs).

use super::*;
use crate::hash::{fingerprint64, fingerprint_cat64};
use crate::record::Array;
use couplet_modules::Store;
use std::sync::Arc;

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    let size = t.size();
    let flat = Vec::<f32>::try_from(t.flatten(0, -1)).unwrap();
    flat.chunks(size[1] as usize).map(<[f32]>::to_vec).collect()
}

fn bytes(values: &[&str]) -> Array {
    Array::bytes(values.iter().map(|s| s.as_bytes().to_vec()).collect())
}

#[test]
fn numeric_with_default_and_normalizer() {
    let col =
        NumericColumn::new("age", &[1]).unwrap().with_default(-1.0).with_normalizer(|x| (x - 30.0) / 10.0);
    let records = [Record::new().with("age", Array::ids(vec![50])), Record::new()];
    assert_eq!(rows(&col.dense(&records).unwrap()), [[2.0], [-3.1]]);
    let strict = NumericColumn::new("age", &[2]).unwrap();
    let e = strict.dense(&records[..1]).unwrap_err().to_string();
    assert_eq!(e, "age: record 0: has 1 values, the column's shape [2] holds 2");
    assert!(NumericColumn::new("x", &[0]).is_err());
}

#[test]
fn bucketized_ids_at_the_boundaries() {
    // TF's docs: boundaries [0, 10, 100] -> (-inf, 0), [0, 10), [10, 100), [100, inf).
    let col = BucketizedColumn::new(NumericColumn::new("x", &[2]).unwrap(), vec![0.0, 10.0, 100.0]).unwrap();
    let r = Record::new().with("x", Array::floats(vec![10.0, -0.5]));
    assert_eq!(col.ids(&r).unwrap(), [2, 4], "10 -> bucket 2; -0.5 -> bucket 0 of dimension 1 = 0 + 4");
    assert_eq!(col.num_buckets(), 8);
    assert_eq!(rows(&col.dense(&[r]).unwrap()), [[0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0]]);
    assert!(BucketizedColumn::new(NumericColumn::new("x", &[1]).unwrap(), vec![1.0, 1.0]).is_err());
}

#[test]
fn identity_vocabulary_and_hash_columns() {
    let id = IdentityColumn::new("c", 4, Some(0)).unwrap();
    assert_eq!(id.ids(&Record::new().with("c", Array::ids(vec![3, 7, -1]))).unwrap(), [3, 0, 0]);
    let strict = IdentityColumn::new("c", 4, None).unwrap();
    assert_eq!(
        strict.ids(&Record::new().with("c", Array::ids(vec![4]))).unwrap_err().to_string(),
        "c: id 4 is out of range 0..4"
    );
    let vocab = VocabularyColumn::from_list("w", &["cat", "dog"], 0, -1).unwrap();
    assert_eq!(vocab.ids(&Record::new().with("w", bytes(&["dog", "emu", "cat"]))).unwrap(), [1, -1, 0]);
    let oov = VocabularyColumn::from_list("w", &["cat", "dog"], 2, -1).unwrap();
    assert_eq!(
        oov.ids(&Record::new().with("w", bytes(&["emu"]))).unwrap(),
        [2 + (fingerprint64(b"emu") % 2) as i64]
    );
    let hashed = HashBucketColumn::new("w", 10).unwrap();
    let r = Record::new().with("w", bytes(&["emu"])).with("n", Array::ids(vec![42]));
    assert_eq!(hashed.ids(&r).unwrap(), [(fingerprint64(b"emu") % 10) as i64]);
    let by_text = HashBucketColumn::new("n", 10).unwrap();
    assert_eq!(
        by_text.ids(&r).unwrap(),
        [(fingerprint64(b"42") % 10) as i64],
        "ints hash by their decimal text"
    );
    assert!(HashBucketColumn::new("w", 1).is_err());
}

#[test]
fn indicator_counts_and_drops_unknowns() {
    let vocab: Arc<dyn CategoricalColumn> =
        Arc::new(VocabularyColumn::from_list("w", &["a", "b", "c"], 0, -1).unwrap());
    let ind = IndicatorColumn::new(vocab).unwrap();
    let records =
        [Record::new().with("w", bytes(&["a", "c", "a", "zz"])), Record::new().with("w", bytes(&[]))];
    assert_eq!(rows(&ind.dense(&records).unwrap()), [[2.0, 0.0, 1.0], [0.0, 0.0, 0.0]]);
}

#[test]
fn embedding_combiners() {
    let store = Store::cpu();
    let cat: Arc<dyn CategoricalColumn> = Arc::new(IdentityColumn::new("c", 3, None).unwrap());
    let records =
        [Record::new().with("c", Array::ids(vec![0, 2, 2, 1])), Record::new().with("c", Array::ids(vec![]))];
    let mut outs = Vec::new();
    for combiner in [Combiner::Sum, Combiner::Mean, Combiner::Sqrtn] {
        let col = EmbeddingColumn::new(&store.root(), Arc::clone(&cat), 2, combiner).unwrap();
        // Table rows [1, 10], [2, 20], [3, 30] (set by hand).
        let table = Tensor::from_slice(&[1f32, 10., 2., 20., 3., 30.]).view([3, 2]);
        tch::no_grad(|| col.embed().embeddings().shallow_clone().copy_(&table));
        outs.push(rows(&col.dense(&records).unwrap()));
    }
    // Ids 0, 2, 2, 1 -> sum [9, 90], mean /4, sqrtn /2; the empty record gives zeros.
    assert_eq!(outs[0], [[9.0, 90.0], [0.0, 0.0]]);
    assert_eq!(outs[1], [[2.25, 22.5], [0.0, 0.0]]);
    assert_eq!(outs[2], [[4.5, 45.0], [0.0, 0.0]]);
}

#[test]
fn input_layer_orders_by_name_and_crosses_hash() {
    let b = NumericColumn::new("b", &[1]).unwrap();
    let a = NumericColumn::new("a", &[2]).unwrap();
    let r = Record::new().with("a", Array::floats(vec![1.0, 2.0])).with("b", Array::floats(vec![3.0]));
    assert_eq!(rows(&input_layer(&[&b, &a], &[r]).unwrap()), [[1.0, 2.0, 3.0]]);
    assert!(input_layer(&[], &[]).is_err());
    let crossed =
        CrossedColumn::new(vec![CrossKey::Raw("s".into()), CrossKey::Raw("n".into())], 1000).unwrap();
    let r = Record::new().with("s", bytes(&["x", "y"])).with("n", Array::ids(vec![7]));
    let want =
        |s: &[u8]| (fingerprint_cat64(fingerprint_cat64(0xDECAFCAFFE, fingerprint64(s)), 7) % 1000) as i64;
    assert_eq!(crossed.ids(&r).unwrap(), [want(b"x"), want(b"y")]);
    assert_eq!(crossed.name(), "s_X_n");
}

#[test]
fn weighted_ids_drop_unknowns_with_their_weights() {
    let vocab: Arc<dyn CategoricalColumn> =
        Arc::new(VocabularyColumn::from_list("w", &["a", "b", "c"], 0, -1).unwrap());
    let weighted: Arc<dyn CategoricalColumn> = Arc::new(WeightedCategoricalColumn::new(vocab, "f"));
    assert_eq!(weighted.name(), "w_weighted_by_f");
    assert_eq!(weighted.num_buckets(), 3);
    let records = [
        Record::new()
            .with("w", bytes(&["a", "zz", "c", "a"]))
            .with("f", Array::floats(vec![0.5, 9.0, 2.0, 0.25])),
        Record::new().with("w", bytes(&["zz"])).with("f", Array::floats(vec![4.0])),
    ];
    assert_eq!(weighted.weighted_ids(&records[0]).unwrap(), [(0, 0.5), (-1, 9.0), (2, 2.0), (0, 0.25)]);
    // "a" twice adds 0.5 + 0.25; "zz" (id -1) and its 9.0 are dropped.
    let ind = IndicatorColumn::new(Arc::clone(&weighted)).unwrap();
    assert_eq!(rows(&ind.dense(&records).unwrap()), [[0.75, 0.0, 2.0], [0.0, 0.0, 0.0]]);
    let store = Store::cpu();
    let col = EmbeddingColumn::new(&store.root(), weighted, 2, Combiner::Mean).unwrap();
    let table = Tensor::from_slice(&[1f32, 10., 2., 20., 3., 30.]).view([3, 2]);
    tch::no_grad(|| col.embed().embeddings().shallow_clone().copy_(&table));
    // (0.75 * [1, 10] + 2 * [3, 30]) / 2.75 = [6.75, 67.5] / 2.75.
    let got = rows(&col.dense(&records).unwrap());
    assert!((got[0][0] - 6.75 / 2.75).abs() < 1e-6 && (got[0][1] - 67.5 / 2.75).abs() < 1e-5, "{got:?}");
    assert_eq!(got[1], [0.0, 0.0]);
}

#[test]
fn weighted_column_errors_name_the_weight_field() {
    let ids: Arc<dyn CategoricalColumn> = Arc::new(IdentityColumn::new("c", 3, None).unwrap());
    let weighted = WeightedCategoricalColumn::new(ids, "f");
    let with = |f: Array| Record::new().with("c", Array::ids(vec![0, 1])).with("f", f);
    let e = weighted.weighted_ids(&with(Array::floats(vec![1.0]))).unwrap_err();
    assert_eq!(e.to_string(), "c_weighted_by_f: weight field \"f\" has 1 values (shape [1]) for 2 ids");
    let e = weighted.weighted_ids(&with(Array::ids(vec![1, 1]))).unwrap_err();
    assert!(e.to_string().contains("weight field \"f\" is int64, expected float"), "{e}");
    let e = weighted.weighted_ids(&with(Array::floats(vec![1.0, f32::NAN]))).unwrap_err();
    assert!(e.to_string().contains("weight field \"f\" holds NaN"), "{e}");
    assert!(weighted.weighted_ids(&Record::new().with("c", Array::ids(vec![0]))).is_err());
}
