//! The protocol buffers of a TensorBundle's index (`tensor_bundle.proto`,
//! `tensor_shape.proto`, `versions.proto`), the fields couplet reads and writes.

/// The value under the empty key: how many data shards there are and the format version.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct BundleHeaderProto {
    #[prost(int32, tag = "1")]
    pub num_shards: i32,
    /// 0 = little-endian, 1 = big-endian.
    #[prost(int32, tag = "2")]
    pub endianness: i32,
    #[prost(message, optional, tag = "3")]
    pub version: Option<VersionDef>,
}

/// `versions.proto`'s `VersionDef`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct VersionDef {
    #[prost(int32, tag = "1")]
    pub producer: i32,
    #[prost(int32, tag = "2")]
    pub min_consumer: i32,
    #[prost(int32, repeated, tag = "3")]
    pub bad_consumers: Vec<i32>,
}

/// Where one tensor lives: dtype, shape, shard, byte range and masked CRC-32C of its bytes.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct BundleEntryProto {
    #[prost(int32, tag = "1")]
    pub dtype: i32,
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
    #[prost(int32, tag = "3")]
    pub shard_id: i32,
    #[prost(int64, tag = "4")]
    pub offset: i64,
    #[prost(int64, tag = "5")]
    pub size: i64,
    #[prost(fixed32, tag = "6")]
    pub crc32c: u32,
    /// Set for a partitioned variable, whose parts are stored under other keys.
    #[prost(message, repeated, tag = "7")]
    pub slices: Vec<TensorSliceProto>,
}

/// `tensor_shape.proto`'s `TensorShapeProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TensorShapeProto {
    #[prost(message, repeated, tag = "2")]
    pub dim: Vec<Dim>,
    #[prost(bool, tag = "3")]
    pub unknown_rank: bool,
}

/// One dimension of a [`TensorShapeProto`].
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Dim {
    #[prost(int64, tag = "1")]
    pub size: i64,
    #[prost(string, tag = "2")]
    pub name: String,
}

/// A slice of a partitioned variable; couplet only notices that there are some.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TensorSliceProto {}
