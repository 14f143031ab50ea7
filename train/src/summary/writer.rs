//! [`SummaryWriter`]: TensorFlow's `FileWriter` for couplet. Events are handed to a
//! background thread over a bounded queue; that thread frames them as TFRecords, buffers them
//! and writes the buffer to the events file every `flush_secs`, when it grows past 1 MiB, on
//! [`SummaryWriter::flush`] and when the writer is dropped.

use super::event_file::{new_file_path, wall_time, FILE_VERSION};
use super::histogram::Histogram;
use super::image::png_size;
use super::proto::{
    DataType, Event, EventWhat, Image, PluginData, SessionLog, SessionStatus, Summary, SummaryMetadata,
    SummaryValue, TensorProto, TensorShapeProto, Value,
};
use super::record::append_record;
use couplet_modules::{Error, Result};
use prost::Message;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How a [`SummaryWriter`] writes.
#[derive(Clone, Debug, PartialEq)]
pub struct SummaryWriterConfig {
    /// Seconds between writes of the buffered events to the file; a crash loses at most the
    /// events of the last `flush_secs`. Default 120, as TensorFlow's `FileWriter`. Must be
    /// finite and > 0.
    pub flush_secs: f64,
    /// How many events may wait in the queue to the writer thread. Adding an event waits only
    /// when the queue is full, i.e. when the disk is slower than the training loop. Default
    /// 1024. Must be > 0.
    pub max_queue: usize,
    /// Appended to the file name, e.g. `.eval`. Default empty.
    pub filename_suffix: String,
}

impl Default for SummaryWriterConfig {
    fn default() -> Self {
        SummaryWriterConfig { flush_secs: 120.0, max_queue: 1024, filename_suffix: String::new() }
    }
}

impl SummaryWriterConfig {
    /// Sets [`SummaryWriterConfig::flush_secs`].
    pub fn with_flush_secs(mut self, flush_secs: f64) -> Self {
        self.flush_secs = flush_secs;
        self
    }

    /// Sets [`SummaryWriterConfig::max_queue`].
    pub fn with_max_queue(mut self, max_queue: usize) -> Self {
        self.max_queue = max_queue;
        self
    }

    /// Sets [`SummaryWriterConfig::filename_suffix`].
    pub fn with_filename_suffix(mut self, suffix: impl Into<String>) -> Self {
        self.filename_suffix = suffix.into();
        self
    }

    fn check(&self) -> Result<()> {
        if !(self.flush_secs.is_finite() && self.flush_secs > 0.0) {
            return Err(Error::config(
                "summary_writer",
                format!("flush_secs must be finite and > 0, got {}", self.flush_secs),
            ));
        }
        if self.max_queue == 0 {
            return Err(Error::config("summary_writer", "max_queue must be > 0, got 0"));
        }
        if self.filename_suffix.contains(['/', '\\']) {
            return Err(Error::config(
                "summary_writer",
                format!("filename_suffix must not contain a path separator, got {:?}", self.filename_suffix),
            ));
        }
        Ok(())
    }
}

/// The buffer size past which the writer thread writes without waiting for `flush_secs`.
const BUFFER_BYTES: usize = 1 << 20;

/// What the training thread sends to the writer thread.
enum Command {
    Event(Box<Event>),
    /// Write everything queued before this, then answer.
    Flush(SyncSender<()>),
}

/// The writer thread's first error, shared with the training thread.
type SharedError = Arc<Mutex<Option<String>>>;

/// Writes TensorBoard events files (`events.out.tfevents.<time>.<host>`) into a log
/// directory from a background thread, as TensorFlow's `FileWriter`: scalars, histograms,
/// images, text and raw events; see also [`crate::summary::Projector`] for embeddings.
///
/// Each writer starts a new events file in its directory (TensorBoard reads every file of a
/// directory as one run, in name order), so a resumed training run appends to its run by
/// opening a new writer on the same directory, then calling
/// [`SummaryWriter::add_session_start`] with the step it resumed from.
///
/// Adding a summary builds the event on the calling thread (histograms bin their values
/// there) and queues it; it never waits for the disk unless the queue
/// ([`SummaryWriterConfig::max_queue`]) is full. Every record is written whole; a crash loses
/// at most the events since the last write of the buffer (at most `flush_secs`), and a last
/// record cut by a kill is skipped by readers.
///
/// Errors of the writer thread (a full disk) are reported by the next call.
pub struct SummaryWriter {
    logdir: PathBuf,
    path: PathBuf,
    sender: Option<SyncSender<Command>>,
    thread: Option<JoinHandle<()>>,
    error: SharedError,
}

impl std::fmt::Debug for SummaryWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SummaryWriter").field("path", &self.path).finish_non_exhaustive()
    }
}

fn io_error(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { context, source }
}

fn check_tag(tag: &str) -> Result<()> {
    if tag.is_empty() {
        return Err(Error::invalid("summary_writer", "a summary tag must not be empty"));
    }
    Ok(())
}

fn summary_event(step: i64, value: SummaryValue) -> Event {
    Event { wall_time: wall_time(), step, what: Some(EventWhat::Summary(Summary { value: vec![value] })) }
}

impl SummaryWriter {
    /// A writer into `logdir` (created if missing) with the default
    /// [`SummaryWriterConfig`].
    ///
    /// # Errors
    /// See [`SummaryWriter::with_config`].
    pub fn new(logdir: impl AsRef<Path>) -> Result<Self> {
        Self::with_config(logdir, SummaryWriterConfig::default())
    }

    /// A writer into `logdir` (created if missing): creates a new events file there, writes
    /// its `brain.Event:2` file-version event at once and starts the writer thread.
    ///
    /// # Errors
    /// [`Error::Config`] for a bad config; [`Error::Io`] if the directory or file cannot be
    /// created or the thread cannot be started.
    pub fn with_config(logdir: impl AsRef<Path>, config: SummaryWriterConfig) -> Result<Self> {
        config.check()?;
        let logdir = logdir.as_ref().to_path_buf();
        std::fs::create_dir_all(&logdir)
            .map_err(io_error(format!("summary_writer: creating {}", logdir.display())))?;
        let path = new_file_path(&logdir, &config.filename_suffix)?;
        let context = format!("summary_writer: creating {}", path.display());
        let mut file =
            File::options().write(true).create_new(true).open(&path).map_err(io_error(context.clone()))?;
        let header = Event {
            wall_time: wall_time(),
            step: 0,
            what: Some(EventWhat::FileVersion(FILE_VERSION.into())),
        };
        let mut buffer = Vec::new();
        append_record(&mut buffer, &header.encode_to_vec());
        file.write_all(&buffer).map_err(io_error(context.clone()))?;

        let (sender, receiver) = sync_channel(config.max_queue);
        let error = SharedError::default();
        let thread_error = Arc::clone(&error);
        let flush_every = Duration::from_secs_f64(config.flush_secs);
        let thread_path = path.clone();
        let thread = std::thread::Builder::new()
            .name("couplet-summary-writer".into())
            .spawn(move || run(file, thread_path, receiver, flush_every, thread_error))
            .map_err(io_error(format!(
                "summary_writer: starting the writer thread for {}",
                path.display()
            )))?;
        Ok(SummaryWriter { logdir, path, sender: Some(sender), thread: Some(thread), error })
    }

    /// The log directory.
    pub fn logdir(&self) -> &Path {
        &self.logdir
    }

    /// The events file this writer writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The writer thread's first error, if any, as [`Error::Io`].
    fn check_thread(&self) -> Result<()> {
        // A poisoned lock means the writer thread panicked while holding it; report that.
        let message = match self.error.lock() {
            Ok(guard) => guard.clone(),
            Err(_) => Some("the writer thread panicked".into()),
        };
        match message {
            None => Ok(()),
            Some(message) => Err(Error::Io {
                context: format!("summary_writer: writing {}", self.path.display()),
                source: std::io::Error::other(message),
            }),
        }
    }

    fn send(&self, message: Command) -> Result<()> {
        self.check_thread()?;
        let stopped = || Error::Io {
            context: format!("summary_writer: writing {}", self.path.display()),
            source: std::io::Error::other("the writer thread has stopped"),
        };
        let sender = self.sender.as_ref().ok_or_else(stopped)?;
        sender.send(message).map_err(|_| stopped())
    }

    /// Queues `event` as it is (its wall time and step as set).
    ///
    /// # Errors
    /// [`Error::Io`] if the writer thread has failed or stopped.
    pub fn add_event(&self, event: Event) -> Result<()> {
        self.send(Command::Event(Box::new(event)))
    }

    /// Queues the scalar `value` (stored as `f32`, as TensorBoard keeps scalars) under `tag` at
    /// `step`. NaN and infinities are written as they are (TensorBoard shows them).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty tag; [`Error::Io`] if the writer thread failed.
    pub fn add_scalar(&self, tag: &str, value: f64, step: i64) -> Result<()> {
        check_tag(tag)?;
        let value =
            SummaryValue { tag: tag.into(), metadata: None, value: Some(Value::SimpleValue(value as f32)) };
        self.add_event(summary_event(step, value))
    }

    /// Queues a histogram of every element of `values` (any shape, real kind, device) under
    /// `tag` at `step`, in TensorFlow's default buckets
    /// ([`crate::summary::default_bucket_limits`]).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty tag, an undefined tensor or a NaN/infinite
    /// element; [`Error::Torch`] if the copy fails; [`Error::Io`] if the writer thread failed.
    pub fn add_histogram(&self, tag: &str, values: &tch::Tensor, step: i64) -> Result<()> {
        check_tag(tag)?;
        let histogram = Histogram::from_tensor(values)
            .map_err(|e| Error::invalid("summary_writer", format!("histogram {tag:?}: {e}")))?;
        self.add_histogram_values(tag, &histogram, step)
    }

    /// Queues an already filled [`Histogram`] under `tag` at `step`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty tag; [`Error::Io`] if the writer thread failed.
    pub fn add_histogram_values(&self, tag: &str, histogram: &Histogram, step: i64) -> Result<()> {
        check_tag(tag)?;
        let value =
            SummaryValue { tag: tag.into(), metadata: None, value: Some(Value::Histo(histogram.to_proto())) };
        self.add_event(summary_event(step, value))
    }

    /// Queues the PNG image `png` (a whole PNG file's bytes, e.g. from `plot::scatter_png`)
    /// under `tag` at `step`; its width, height and colour space are read from its header.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty tag or bytes that are not a PNG file;
    /// [`Error::Io`] if the writer thread failed.
    pub fn add_image(&self, tag: &str, png: &[u8], step: i64) -> Result<()> {
        check_tag(tag)?;
        let size =
            png_size(png).map_err(|e| Error::invalid("summary_writer", format!("image {tag:?}: {e}")))?;
        let image = Image {
            height: size.height,
            width: size.width,
            colorspace: size.channels,
            encoded_image_string: png.to_vec(),
        };
        let value = SummaryValue { tag: tag.into(), metadata: None, value: Some(Value::Image(image)) };
        self.add_event(summary_event(step, value))
    }

    /// Queues `text` (shown as Markdown by TensorBoard's text dashboard) under `tag` at
    /// `step`, in the text plugin's format: a scalar `DT_STRING` tensor with plugin `text`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty tag; [`Error::Io`] if the writer thread failed.
    pub fn add_text(&self, tag: &str, text: &str, step: i64) -> Result<()> {
        check_tag(tag)?;
        let metadata = SummaryMetadata {
            plugin_data: Some(PluginData { plugin_name: "text".into(), content: Vec::new() }),
            ..SummaryMetadata::default()
        };
        let tensor = TensorProto {
            dtype: DataType::DtString as i32,
            tensor_shape: Some(TensorShapeProto::default()),
            string_val: vec![text.as_bytes().to_vec()],
            ..TensorProto::default()
        };
        let value =
            SummaryValue { tag: tag.into(), metadata: Some(metadata), value: Some(Value::Tensor(tensor)) };
        self.add_event(summary_event(step, value))
    }

    /// Queues a `SessionLog` START event at `step`: TensorBoard then drops every event of this
    /// run with a step `>= step` read before it (those a crashed run wrote after the checkpoint
    /// it is resumed from), as TensorFlow's `MonitoredSession` does on restore.
    ///
    /// # Errors
    /// [`Error::Io`] if the writer thread failed.
    pub fn add_session_start(&self, step: i64) -> Result<()> {
        let log = SessionLog { status: SessionStatus::Start as i32, ..SessionLog::default() };
        self.add_event(Event { wall_time: wall_time(), step, what: Some(EventWhat::SessionLog(log)) })
    }

    /// Writes every event queued so far to the file, waiting until it is written.
    ///
    /// # Errors
    /// [`Error::Io`] if a write failed.
    pub fn flush(&self) -> Result<()> {
        let (ack, done) = sync_channel(1);
        self.send(Command::Flush(ack))?;
        // The thread answers after writing; it only drops the answer if it stopped.
        done.recv().map_err(|_| Error::Io {
            context: format!("summary_writer: writing {}", self.path.display()),
            source: std::io::Error::other("the writer thread has stopped"),
        })?;
        self.check_thread()
    }

    /// Writes every queued event, syncs the file to disk and stops the writer thread.
    ///
    /// # Errors
    /// [`Error::Io`] if a write failed.
    pub fn close(mut self) -> Result<()> {
        self.stop();
        self.check_thread()
    }

    fn stop(&mut self) {
        // Dropping the sender ends the thread's loop once the queue is drained.
        self.sender = None;
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                if let Ok(mut guard) = self.error.lock() {
                    guard.get_or_insert_with(|| "the writer thread panicked".into());
                }
            }
        }
    }
}

impl Drop for SummaryWriter {
    /// Writes every queued event and syncs the file (errors are lost; call
    /// [`SummaryWriter::close`] to see them).
    fn drop(&mut self) {
        self.stop();
    }
}

/// The writer thread: frames queued events into a buffer and writes it out on time, on size,
/// on request and at the end.
fn run(
    mut file: File,
    path: PathBuf,
    receiver: Receiver<Command>,
    flush_every: Duration,
    error: SharedError,
) {
    let mut buffer = Vec::with_capacity(BUFFER_BYTES);
    let mut failed = false;
    let mut write = |buffer: &mut Vec<u8>, sync: bool| {
        if !failed && !buffer.is_empty() {
            let result = file.write_all(buffer).and_then(|()| if sync { file.sync_data() } else { Ok(()) });
            if let Err(e) = result {
                failed = true;
                if let Ok(mut guard) = error.lock() {
                    guard.get_or_insert_with(|| format!("{}: {e}", path.display()));
                }
            }
        }
        buffer.clear();
    };
    let mut deadline = Instant::now() + flush_every;
    loop {
        let timeout = deadline.saturating_duration_since(Instant::now());
        match receiver.recv_timeout(timeout) {
            Ok(Command::Event(event)) => {
                append_record(&mut buffer, &event.encode_to_vec());
                if buffer.len() >= BUFFER_BYTES {
                    write(&mut buffer, false);
                }
            }
            Ok(Command::Flush(ack)) => {
                write(&mut buffer, false);
                // The caller may have stopped waiting; nothing to do then.
                let _ = ack.send(());
            }
            Err(RecvTimeoutError::Timeout) => {
                write(&mut buffer, false);
                deadline = Instant::now() + flush_every;
            }
            Err(RecvTimeoutError::Disconnected) => {
                write(&mut buffer, true);
                return;
            }
        }
    }
}
