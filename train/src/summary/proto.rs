//! The protocol buffer messages of a TensorBoard events file, declared with `prost`'s derive
//! macros (no `protoc`): the subset of TensorFlow's `event.proto`, `summary.proto`,
//! `tensor.proto` and `tensor_shape.proto` that couplet writes and reads, with TensorFlow's
//! field numbers, so TensorBoard (and TensorFlow) read them as their own.

/// `tensorflow.Event`: one record of an events file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// Seconds since the Unix epoch when the event was made.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// The global step the event belongs to.
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// What the event holds.
    #[prost(oneof = "EventWhat", tags = "3, 5, 7")]
    pub what: Option<EventWhat>,
}

/// `Event.what`: the payload of an [`Event`].
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum EventWhat {
    /// The file's format version, `brain.Event:2`, in the first event of every file.
    #[prost(string, tag = "3")]
    FileVersion(String),
    /// Summary values (scalars, histograms, images, tensors).
    #[prost(message, tag = "5")]
    Summary(Summary),
    /// A session start/stop/checkpoint marker.
    #[prost(message, tag = "7")]
    SessionLog(SessionLog),
}

/// `tensorflow.Summary`: the values written at one step.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    /// The values.
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `Summary.Value`: one tagged value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryValue {
    /// The tag TensorBoard groups the value under, e.g. `train/loss`.
    #[prost(string, tag = "1")]
    pub tag: String,
    /// Which plugin reads the value (tensor summaries only).
    #[prost(message, optional, tag = "9")]
    pub metadata: Option<SummaryMetadata>,
    /// The value itself.
    #[prost(oneof = "Value", tags = "2, 4, 5, 8")]
    pub value: Option<Value>,
}

/// `Summary.Value.value`: the payload of a [`SummaryValue`].
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Value {
    /// A scalar (TensorBoard's scalars dashboard).
    #[prost(float, tag = "2")]
    SimpleValue(f32),
    /// An encoded image (images dashboard).
    #[prost(message, tag = "4")]
    Image(Image),
    /// A histogram (histograms and distributions dashboards).
    #[prost(message, tag = "5")]
    Histo(HistogramProto),
    /// A tensor read by the plugin named in the metadata (e.g. text).
    #[prost(message, tag = "8")]
    Tensor(TensorProto),
}

/// `Summary.Image`: an encoded (PNG) image with its size.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Image {
    /// Height in pixels.
    #[prost(int32, tag = "1")]
    pub height: i32,
    /// Width in pixels.
    #[prost(int32, tag = "2")]
    pub width: i32,
    /// 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA.
    #[prost(int32, tag = "3")]
    pub colorspace: i32,
    /// The PNG file's bytes.
    #[prost(bytes = "vec", tag = "4")]
    pub encoded_image_string: Vec<u8>,
}

/// `tensorflow.HistogramProto`: bucket `i` counts the values in
/// `[bucket_limit[i - 1], bucket_limit[i])` (`-DBL_MAX` below the first).
#[derive(Clone, PartialEq, prost::Message)]
pub struct HistogramProto {
    /// The smallest value.
    #[prost(double, tag = "1")]
    pub min: f64,
    /// The largest value.
    #[prost(double, tag = "2")]
    pub max: f64,
    /// How many values.
    #[prost(double, tag = "3")]
    pub num: f64,
    /// Their sum.
    #[prost(double, tag = "4")]
    pub sum: f64,
    /// The sum of their squares.
    #[prost(double, tag = "5")]
    pub sum_squares: f64,
    /// The right edge of each bucket, increasing.
    #[prost(double, repeated, tag = "6")]
    pub bucket_limit: Vec<f64>,
    /// The count of each bucket.
    #[prost(double, repeated, tag = "7")]
    pub bucket: Vec<f64>,
}

/// `tensorflow.SummaryMetadata`: which plugin owns a tensor summary.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryMetadata {
    /// The plugin and its own data.
    #[prost(message, optional, tag = "1")]
    pub plugin_data: Option<PluginData>,
    /// A display name (unused by couplet).
    #[prost(string, tag = "2")]
    pub display_name: String,
    /// A longer description, in Markdown.
    #[prost(string, tag = "3")]
    pub summary_description: String,
}

/// `SummaryMetadata.PluginData`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PluginData {
    /// The plugin's name, e.g. `text`.
    #[prost(string, tag = "1")]
    pub plugin_name: String,
    /// The plugin's own serialized settings.
    #[prost(bytes = "vec", tag = "2")]
    pub content: Vec<u8>,
}

/// `tensorflow.DataType` values couplet writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum DataType {
    /// Not set.
    DtInvalid = 0,
    /// 32-bit float.
    DtFloat = 1,
    /// Byte strings.
    DtString = 7,
}

/// `tensorflow.TensorProto`: a tensor's dtype, shape and values.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// The element type ([`DataType`]).
    #[prost(enumeration = "DataType", tag = "1")]
    pub dtype: i32,
    /// The shape.
    #[prost(message, optional, tag = "2")]
    pub tensor_shape: Option<TensorShapeProto>,
    /// Float values, row-major (for `DT_FLOAT`).
    #[prost(float, repeated, tag = "5")]
    pub float_val: Vec<f32>,
    /// String values, row-major (for `DT_STRING`).
    #[prost(bytes = "vec", repeated, tag = "8")]
    pub string_val: Vec<Vec<u8>>,
}

/// `tensorflow.TensorShapeProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    /// The dimensions, outermost first; none for a scalar.
    #[prost(message, repeated, tag = "2")]
    pub dim: Vec<TensorShapeDim>,
}

/// `TensorShapeProto.Dim`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeDim {
    /// The dimension's size.
    #[prost(int64, tag = "1")]
    pub size: i64,
}

/// `SessionLog.SessionStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum SessionStatus {
    /// Not set.
    StatusUnspecified = 0,
    /// A (re)start: TensorBoard drops every event of the run at this step or later that came
    /// before this marker (orphaned by a crash and a restore from an earlier checkpoint).
    Start = 1,
    /// A clean stop.
    Stop = 2,
    /// A checkpoint was written.
    Checkpoint = 3,
}

/// `tensorflow.SessionLog`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionLog {
    /// What happened ([`SessionStatus`]).
    #[prost(enumeration = "SessionStatus", tag = "1")]
    pub status: i32,
    /// The checkpoint written (for [`SessionStatus::Checkpoint`]).
    #[prost(string, tag = "2")]
    pub checkpoint_path: String,
    /// A free-form message.
    #[prost(string, tag = "3")]
    pub msg: String,
}
