//! `tf.train.Example` and `tf.train.SequenceExample` (TF's `example.proto` and
//! `feature.proto`, field numbers and types as there), with conversions to and from [`Record`].

use crate::record::{Array, Record, Values};
use couplet_modules::{Error, Result};
use prost::Message;
use std::collections::BTreeMap;

/// `tf.train.BytesList`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BytesList {
    /// The byte strings.
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub value: Vec<Vec<u8>>,
}

/// `tf.train.FloatList` (packed).
#[derive(Clone, PartialEq, prost::Message)]
pub struct FloatList {
    /// The floats.
    #[prost(float, repeated, tag = "1")]
    pub value: Vec<f32>,
}

/// `tf.train.Int64List` (packed).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Int64List {
    /// The integers.
    #[prost(int64, repeated, tag = "1")]
    pub value: Vec<i64>,
}

/// `tf.train.Feature`: one of the three lists.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Feature {
    /// The list (absent in an empty `Feature`).
    #[prost(oneof = "Kind", tags = "1, 2, 3")]
    pub kind: Option<Kind>,
}

/// The list of a [`Feature`].
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Kind {
    /// `bytes_list`.
    #[prost(message, tag = "1")]
    BytesList(BytesList),
    /// `float_list`.
    #[prost(message, tag = "2")]
    FloatList(FloatList),
    /// `int64_list`.
    #[prost(message, tag = "3")]
    Int64List(Int64List),
}

/// `tf.train.Features`: features by name.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Features {
    /// The features (ordered by name, so encoding is deterministic).
    #[prost(btree_map = "string, message", tag = "1")]
    pub feature: BTreeMap<String, Feature>,
}

/// `tf.train.FeatureList`: one feature per time step.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FeatureList {
    /// The steps.
    #[prost(message, repeated, tag = "1")]
    pub feature: Vec<Feature>,
}

/// `tf.train.FeatureLists`: feature lists by name.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FeatureLists {
    /// The lists.
    #[prost(btree_map = "string, message", tag = "1")]
    pub feature_list: BTreeMap<String, FeatureList>,
}

/// `tf.train.Example`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Example {
    /// The features.
    #[prost(message, optional, tag = "1")]
    pub features: Option<Features>,
}

/// `tf.train.SequenceExample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SequenceExample {
    /// Per-sequence features.
    #[prost(message, optional, tag = "1")]
    pub context: Option<Features>,
    /// Per-step features.
    #[prost(message, optional, tag = "2")]
    pub feature_lists: Option<FeatureLists>,
}

impl Feature {
    /// A feature of the values of `values`.
    pub fn from_values(values: &Values) -> Feature {
        let kind = match values {
            Values::I64(v) => Kind::Int64List(Int64List { value: v.clone() }),
            Values::F32(v) => Kind::FloatList(FloatList { value: v.clone() }),
            Values::Bytes(v) => Kind::BytesList(BytesList { value: v.clone() }),
        };
        Feature { kind: Some(kind) }
    }

    /// The feature's values (an empty `Feature` reads as no int64 values, as TF's parser
    /// treats it as an empty list).
    pub fn values(&self) -> Values {
        match &self.kind {
            Some(Kind::Int64List(l)) => Values::I64(l.value.clone()),
            Some(Kind::FloatList(l)) => Values::F32(l.value.clone()),
            Some(Kind::BytesList(l)) => Values::Bytes(l.value.clone()),
            None => Values::I64(Vec::new()),
        }
    }
}

fn features_of(record: &Record, stage: &str, flatten: bool) -> Result<Features> {
    let mut feature = BTreeMap::new();
    for (name, a) in &record.fields {
        if !flatten && a.rank() > 1 {
            return Err(Error::shape(stage, format!("field {name:?}"), "rank 0 or 1", &a.shape));
        }
        feature.insert(name.clone(), Feature::from_values(&a.values));
    }
    Ok(Features { feature })
}

impl Example {
    /// Decodes a serialized `tf.train.Example`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the bytes are not one.
    pub fn decode_bytes(bytes: &[u8]) -> Result<Example> {
        Example::decode(bytes).map_err(|e| Error::invalid("example", format!("not a tf.train.Example: {e}")))
    }

    /// An example of a record's fields (each array flattened into its list).
    ///
    /// # Errors
    /// None today (kept fallible for symmetry with [`SequenceExample::from_record`]).
    pub fn from_record(record: &Record) -> Result<Example> {
        Ok(Example { features: Some(features_of(record, "example", true)?) })
    }

    /// The example as a record: each feature a 1-D array `[N]` of its values.
    pub fn to_record(&self) -> Record {
        let mut record = Record::new();
        for (name, f) in self.features.iter().flat_map(|f| &f.feature) {
            let values = f.values();
            let shape = vec![values.len()];
            record.insert(name, Array { values, shape });
        }
        record
    }
}

/// Parses a serialized `tf.train.Example` into a [`Record`] (see [`Example::to_record`]); use
/// as `tfrecord(paths).try_map(|b| parse_example(&b))`.
///
/// # Errors
/// As [`Example::decode_bytes`].
pub fn parse_example(bytes: &[u8]) -> Result<Record> {
    Ok(Example::decode_bytes(bytes)?.to_record())
}

impl SequenceExample {
    /// Decodes a serialized `tf.train.SequenceExample`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the bytes are not one.
    pub fn decode_bytes(bytes: &[u8]) -> Result<SequenceExample> {
        SequenceExample::decode(bytes)
            .map_err(|e| Error::invalid("sequence example", format!("not a tf.train.SequenceExample: {e}")))
    }

    /// A sequence example: the fields named in `context` go to the context (flattened), every
    /// other field `[T, ..]` becomes a feature list of `T` steps (each step flattened).
    ///
    /// # Errors
    /// [`Error::Shape`] for a scalar sequence field.
    pub fn from_record(record: &Record, context: &[&str]) -> Result<SequenceExample> {
        let mut ctx = BTreeMap::new();
        let mut lists = BTreeMap::new();
        for (name, a) in &record.fields {
            if context.contains(&name.as_str()) {
                ctx.insert(name.clone(), Feature::from_values(&a.values));
                continue;
            }
            let Some(&t) = a.shape.first() else {
                return Err(Error::shape(
                    "sequence example",
                    format!("sequence field {name:?}"),
                    "rank >= 1",
                    &a.shape,
                ));
            };
            let step = a.values.len().checked_div(t).unwrap_or(0);
            let steps = (0..t)
                .map(|i| {
                    let r = i * step..(i + 1) * step;
                    Feature::from_values(&match &a.values {
                        Values::I64(v) => Values::I64(v[r].to_vec()),
                        Values::F32(v) => Values::F32(v[r].to_vec()),
                        Values::Bytes(v) => Values::Bytes(v[r].to_vec()),
                    })
                })
                .collect();
            lists.insert(name.clone(), FeatureList { feature: steps });
        }
        Ok(SequenceExample {
            context: Some(Features { feature: ctx }),
            feature_lists: Some(FeatureLists { feature_list: lists }),
        })
    }

    /// The sequence example as a record: context features as `[N]` arrays, each feature list
    /// of `T` steps of `D` values as a `[T, D]` array (`[0, 0]` when empty; reshape a `[T, 1]`
    /// list to `[T]` with [`Array::reshape`]).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if a context feature and a feature list share a name, a
    /// list's steps differ in kind or in number of values (naming the step).
    pub fn to_record(&self) -> Result<Record> {
        const STAGE: &str = "sequence example";
        let mut record = Example { features: self.context.clone() }.to_record();
        for (name, list) in self.feature_lists.iter().flat_map(|l| &l.feature_list) {
            if record.fields.contains_key(name) {
                return Err(Error::invalid(
                    STAGE,
                    format!("{name:?} is both a context feature and a feature list"),
                ));
            }
            let steps: Vec<Values> = list.feature.iter().map(Feature::values).collect();
            let d = steps.first().map_or(0, Values::len);
            let mut values = steps.first().map_or(Values::I64(Vec::new()), |v| match v {
                Values::I64(_) => Values::I64(Vec::new()),
                Values::F32(_) => Values::F32(Vec::new()),
                Values::Bytes(_) => Values::Bytes(Vec::new()),
            });
            for (t, step) in steps.into_iter().enumerate() {
                if step.len() != d {
                    return Err(Error::invalid(
                        STAGE,
                        format!("feature list {name:?}: step {t} has {} values, step 0 has {d}", step.len()),
                    ));
                }
                match (&mut values, step) {
                    (Values::I64(all), Values::I64(v)) => all.extend(v),
                    (Values::F32(all), Values::F32(v)) => all.extend(v),
                    (Values::Bytes(all), Values::Bytes(v)) => all.extend(v),
                    (all, v) => {
                        return Err(Error::invalid(
                            STAGE,
                            format!(
                                "feature list {name:?}: step {t} is {}, step 0 is {}",
                                v.kind_name(),
                                all.kind_name()
                            ),
                        ))
                    }
                }
            }
            record.insert(name, Array { values, shape: vec![list.feature.len(), d] });
        }
        Ok(record)
    }
}

/// Parses a serialized `tf.train.SequenceExample` into a [`Record`] (see
/// [`SequenceExample::to_record`]).
///
/// # Errors
/// As [`SequenceExample::decode_bytes`] and [`SequenceExample::to_record`].
pub fn parse_sequence_example(bytes: &[u8]) -> Result<Record> {
    SequenceExample::decode_bytes(bytes)?.to_record()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_bytes_by_hand() {
        // {"a": int64_list [1, 300]}: Features(1: map entry (1: "a", 2: Feature(3: Int64List(1: packed [1, 300]))))
        let ex = Example::from_record(&Record::new().with("a", Array::ids(vec![1, 300]))).unwrap();
        let bytes = ex.encode_to_vec();
        let packed = [0x0a, 0x03, 0x01, 0xac, 0x02];
        let feature = [&[0x1a, 0x05][..], &packed].concat();
        let entry = [&[0x0a, 0x01, b'a', 0x12, 0x07][..], &feature].concat();
        let features = [&[0x0a, 0x0c][..], &entry].concat();
        assert_eq!(bytes, [&[0x0a, 0x0e][..], &features].concat());
        assert_eq!(parse_example(&bytes).unwrap(), Record::new().with("a", Array::ids(vec![1, 300])));
        assert!(parse_example(b"\xff\xff").is_err());
    }

    #[test]
    fn sequence_examples_round_trip_and_check_steps() {
        let record = Record::new()
            .with("label", Array::scalar_i64(3))
            .with("frames", Array::new(Values::F32(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), vec![3, 2]).unwrap());
        let se = SequenceExample::from_record(&record, &["label"]).unwrap();
        let back = parse_sequence_example(&se.encode_to_vec()).unwrap();
        assert_eq!(back.fields["frames"], record.fields["frames"]);
        assert_eq!(back.fields["label"], Array::ids(vec![3]));
        let mut bad = se.clone();
        let list = bad.feature_lists.as_mut().unwrap().feature_list.get_mut("frames").unwrap();
        list.feature[2] = Feature::from_values(&Values::F32(vec![1.0]));
        assert_eq!(
            bad.to_record().unwrap_err().to_string(),
            "sequence example: feature list \"frames\": step 2 has 1 values, step 0 has 2"
        );
    }
}
