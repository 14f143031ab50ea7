//! TensorFlow's `DataType` numbers and their tch kinds.

use tch::Kind;

/// The dtype of a tensor in a TensorFlow checkpoint (`types.proto`'s `DataType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TfDType {
    /// `DT_FLOAT` (1).
    Float,
    /// `DT_DOUBLE` (2).
    Double,
    /// `DT_INT32` (3).
    Int32,
    /// `DT_UINT8` (4).
    UInt8,
    /// `DT_INT16` (5).
    Int16,
    /// `DT_INT8` (6).
    Int8,
    /// `DT_STRING` (7): listed, not loadable as a tch tensor (TF's object graph is one).
    String,
    /// `DT_INT64` (9).
    Int64,
    /// `DT_BOOL` (10).
    Bool,
    /// `DT_BFLOAT16` (14).
    BFloat16,
    /// `DT_HALF` (19).
    Half,
    /// Any other `DataType` number (complex, quantized, resource, variant, ...).
    Other(i32),
}

impl TfDType {
    /// The dtype with TensorFlow's number `value`.
    pub fn from_proto(value: i32) -> Self {
        match value {
            1 => TfDType::Float,
            2 => TfDType::Double,
            3 => TfDType::Int32,
            4 => TfDType::UInt8,
            5 => TfDType::Int16,
            6 => TfDType::Int8,
            7 => TfDType::String,
            9 => TfDType::Int64,
            10 => TfDType::Bool,
            14 => TfDType::BFloat16,
            19 => TfDType::Half,
            other => TfDType::Other(other),
        }
    }

    /// TensorFlow's number for this dtype.
    pub fn to_proto(self) -> i32 {
        match self {
            TfDType::Float => 1,
            TfDType::Double => 2,
            TfDType::Int32 => 3,
            TfDType::UInt8 => 4,
            TfDType::Int16 => 5,
            TfDType::Int8 => 6,
            TfDType::String => 7,
            TfDType::Int64 => 9,
            TfDType::Bool => 10,
            TfDType::BFloat16 => 14,
            TfDType::Half => 19,
            TfDType::Other(v) => v,
        }
    }

    /// The tch kind holding this dtype's values, if there is one.
    pub fn kind(self) -> Option<Kind> {
        Some(match self {
            TfDType::Float => Kind::Float,
            TfDType::Double => Kind::Double,
            TfDType::Int32 => Kind::Int,
            TfDType::UInt8 => Kind::Uint8,
            TfDType::Int16 => Kind::Int16,
            TfDType::Int8 => Kind::Int8,
            TfDType::Int64 => Kind::Int64,
            TfDType::Bool => Kind::Bool,
            TfDType::BFloat16 => Kind::BFloat16,
            TfDType::Half => Kind::Half,
            TfDType::String | TfDType::Other(_) => return None,
        })
    }

    /// The dtype of tensors of `kind`, if TensorFlow has one.
    pub fn from_kind(kind: Kind) -> Option<Self> {
        Some(match kind {
            Kind::Float => TfDType::Float,
            Kind::Double => TfDType::Double,
            Kind::Int => TfDType::Int32,
            Kind::Uint8 => TfDType::UInt8,
            Kind::Int16 => TfDType::Int16,
            Kind::Int8 => TfDType::Int8,
            Kind::Int64 => TfDType::Int64,
            Kind::Bool => TfDType::Bool,
            Kind::BFloat16 => TfDType::BFloat16,
            Kind::Half => TfDType::Half,
            _ => return None,
        })
    }

    /// Bytes per element of the fixed-size dtypes.
    pub(crate) fn element_size(self) -> Option<usize> {
        self.kind().map(|k| k.elt_size_in_bytes())
    }
}
