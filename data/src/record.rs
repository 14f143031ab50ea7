//! [`Record`]: an element made of named host arrays (what [`crate::Dataset::padded_batch`],
//! bucketing, TFRecord `Example`s and feature columns work on).

use couplet_modules::{Error, Result};
use std::collections::BTreeMap;

/// The values of an [`Array`], flat in row-major order.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    /// 64-bit integers (token ids, TF's `int64_list`); batched as `Int64` tensors.
    I64(Vec<i64>),
    /// 32-bit floats (TF's `float_list`); batched as `Float` tensors.
    F32(Vec<f32>),
    /// Byte strings (TF's `bytes_list`): for vocabulary and hash columns, not batchable.
    Bytes(Vec<Vec<u8>>),
}

impl Values {
    /// The number of values.
    pub fn len(&self) -> usize {
        match self {
            Values::I64(v) => v.len(),
            Values::F32(v) => v.len(),
            Values::Bytes(v) => v.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The kind's name: `"int64"`, `"float"` or `"bytes"`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Values::I64(_) => "int64",
            Values::F32(_) => "float",
            Values::Bytes(_) => "bytes",
        }
    }
}

/// A host n-d array: `values` in row-major order with `shape` (`[]` for a scalar). The first
/// dimension of a sequence field is its time (length) dimension.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    /// The values (`shape.iter().product()` of them).
    pub values: Values,
    /// The dimensions.
    pub shape: Vec<usize>,
}

impl Array {
    /// An array of `values` with `shape`.
    ///
    /// # Errors
    /// [`Error::Shape`] if the shape's product is not the number of values (or overflows).
    pub fn new(values: Values, shape: Vec<usize>) -> Result<Array> {
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if n != Some(values.len()) {
            return Err(Error::shape(
                "array",
                "number of values",
                format!("the product of {shape:?}"),
                values.len(),
            ));
        }
        Ok(Array { values, shape })
    }

    /// A sequence `[T]` of integers.
    pub fn ids(values: Vec<i64>) -> Array {
        let shape = vec![values.len()];
        Array { values: Values::I64(values), shape }
    }

    /// A sequence `[T]` of floats.
    pub fn floats(values: Vec<f32>) -> Array {
        let shape = vec![values.len()];
        Array { values: Values::F32(values), shape }
    }

    /// A list `[N]` of byte strings.
    pub fn bytes(values: Vec<Vec<u8>>) -> Array {
        let shape = vec![values.len()];
        Array { values: Values::Bytes(values), shape }
    }

    /// An integer scalar `[]`.
    pub fn scalar_i64(value: i64) -> Array {
        Array { values: Values::I64(vec![value]), shape: vec![] }
    }

    /// A float scalar `[]`.
    pub fn scalar_f32(value: f32) -> Array {
        Array { values: Values::F32(vec![value]), shape: vec![] }
    }

    /// The rank (number of dimensions).
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// The same values with another shape.
    ///
    /// # Errors
    /// [`Error::Shape`] if the new shape holds a different number of values.
    pub fn reshape(self, shape: Vec<usize>) -> Result<Array> {
        Array::new(self.values, shape)
    }
}

/// An element made of named arrays (a map ordered by name), e.g. `{"tokens": [T], "label": []}`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Record {
    /// The fields by name.
    pub fields: BTreeMap<String, Array>,
}

impl Record {
    /// An empty record.
    pub fn new() -> Record {
        Record::default()
    }

    /// The record with field `name` set to `array` (builder style).
    pub fn with(mut self, name: &str, array: Array) -> Record {
        self.fields.insert(name.to_string(), array);
        self
    }

    /// Sets field `name`.
    pub fn insert(&mut self, name: &str, array: Array) {
        self.fields.insert(name.to_string(), array);
    }

    /// Field `name`, or an error listing the fields there are, prefixed by `stage`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if there is no such field.
    pub fn field(&self, stage: &str, name: &str) -> Result<&Array> {
        self.fields.get(name).ok_or_else(|| {
            let names: Vec<&str> = self.fields.keys().map(String::as_str).collect();
            Error::invalid(stage, format!("no field {name:?} (fields: {})", names.join(", ")))
        })
    }

    /// The length (first dimension) of field `name`, as a length function for bucketing.
    ///
    /// # Errors
    /// As [`Record::field`]; [`Error::Shape`] for a scalar field.
    pub fn length(&self, name: &str) -> Result<i64> {
        let array = self.field("length", name)?;
        match array.shape.first() {
            Some(&t) => {
                i64::try_from(t).map_err(|_| Error::invalid("length", format!("length {t} overflows i64")))
            }
            None => Err(Error::shape("length", format!("field {name:?}"), "rank >= 1", &array.shape)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_check_their_shape() {
        assert!(Array::new(Values::I64(vec![1, 2, 3, 4, 5, 6]), vec![2, 3]).is_ok());
        let e = Array::new(Values::F32(vec![1.0; 5]), vec![2, 3]).unwrap_err();
        assert_eq!(e.to_string(), "array: number of values must be the product of [2, 3], got 5");
        assert!(Array::new(Values::I64(vec![]), vec![usize::MAX, 2]).is_err(), "overflow is an error");
        assert_eq!(Array::ids(vec![1, 2]).reshape(vec![2, 1]).unwrap().shape, [2, 1]);
    }

    #[test]
    fn fields_and_lengths() {
        let r = Record::new().with("tokens", Array::ids(vec![4, 5, 6])).with("label", Array::scalar_i64(1));
        assert_eq!(r.length("tokens").unwrap(), 3);
        assert_eq!(
            r.field("x", "nope").unwrap_err().to_string(),
            "x: no field \"nope\" (fields: label, tokens)"
        );
        assert!(matches!(r.length("label"), Err(Error::Shape { .. })));
    }
}
