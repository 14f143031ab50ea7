//! TFRecord files: each record is `length: u64 LE`, `masked_crc32c(length): u32 LE`,
//! `data: [u8; length]`, `masked_crc32c(data): u32 LE` (TF's `tf.io.TFRecordWriter` format),
//! uncompressed or, with [`Compression::Gzip`], the whole stream gzip-compressed (TF's
//! `compression_type="GZIP"`). Reading checks both checksums: a corrupt or truncated record,
//! or a corrupt or truncated gzip stream, is an [`Error::Io`] of kind `InvalidData` naming the
//! file and the byte offset of the record (in the uncompressed stream).

use crate::dataset::Dataset;
use crate::source::{io_error, over_files};
use couplet_modules::{Error, Result};
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use std::fs::File;
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

/// TF's checksum mask, applied to CRC-32C values stored in TFRecord files.
pub fn masked_crc32c(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// The largest record this reader accepts (1 GiB), so a corrupt length can never make it
/// allocate without bound (the length's own checksum is checked first anyway).
pub const MAX_RECORD_BYTES: u64 = 1 << 30;

/// How a TFRecord file is compressed (TF's `compression_type` / `tf.io.TFRecordOptions`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Compression {
    /// Uncompressed (TF's `""`). The default.
    #[default]
    None,
    /// The whole file one gzip stream (TF's `"GZIP"`); concatenated gzip members read as one.
    Gzip,
}

/// Reads the records of one TFRecord file in order.
pub struct TfRecordReader {
    path: PathBuf,
    reader: Box<dyn Read + Send>,
    offset: u64,
    failed: bool,
}

impl TfRecordReader {
    /// Opens the uncompressed file `path`.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be opened.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, Compression::None)
    }

    /// Opens `path`, compressed with `compression`.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be opened.
    pub fn open_with(path: impl AsRef<Path>, compression: Compression) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| io_error("tfrecord", &path, e))?;
        let reader: Box<dyn Read + Send> = match compression {
            Compression::None => Box::new(BufReader::with_capacity(1 << 16, file)),
            Compression::Gzip => Box::new(BufReader::with_capacity(
                1 << 16,
                MultiGzDecoder::new(BufReader::with_capacity(1 << 16, file)),
            )),
        };
        Ok(TfRecordReader { path, reader, offset: 0, failed: false })
    }

    /// The byte offset of the next record.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn corrupt(&self, message: String) -> Error {
        Error::Io {
            context: format!("tfrecord: {}: record at byte offset {}", self.path.display(), self.offset),
            source: std::io::Error::new(ErrorKind::InvalidData, message),
        }
    }

    /// Fills `buf` completely; `Ok(false)` at a clean end of file before the first byte.
    fn read_exact_or_end(&mut self, buf: &mut [u8], what: &str, may_end: bool) -> Result<bool> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.reader.read(&mut buf[filled..]) {
                Ok(0) if filled == 0 && may_end => return Ok(false),
                Ok(0) => {
                    return Err(self.corrupt(format!("truncated: the file ends inside the record's {what}")))
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // What the gzip decoder says of a corrupt or truncated stream.
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::InvalidData | ErrorKind::InvalidInput | ErrorKind::UnexpectedEof
                    ) =>
                {
                    return Err(self.corrupt(format!(
                        "inside the record's {what}: corrupt or truncated compressed stream ({e})"
                    )))
                }
                Err(e) => return Err(io_error("tfrecord", &self.path, e)),
            }
        }
        Ok(true)
    }

    /// The next record with its byte offset, `None` at the end of the file.
    ///
    /// # Errors
    /// [`Error::Io`] (`InvalidData`) naming the file and offset for a checksum mismatch, a
    /// truncated record or a length over [`MAX_RECORD_BYTES`]; other I/O errors.
    pub fn next_record(&mut self) -> Result<Option<(u64, Vec<u8>)>> {
        let mut header = [0u8; 12];
        if !self.read_exact_or_end(&mut header, "length", true)? {
            return Ok(None);
        }
        let (len_bytes, crc_bytes) = header.split_at(8);
        let stored = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
        if masked_crc32c(len_bytes) != stored {
            return Err(self.corrupt("the length's checksum does not match (corrupt record)".into()));
        }
        let mut len8 = [0u8; 8];
        len8.copy_from_slice(len_bytes);
        let len = u64::from_le_bytes(len8);
        if len > MAX_RECORD_BYTES {
            return Err(self.corrupt(format!("length {len} is over the {MAX_RECORD_BYTES}-byte limit")));
        }
        let mut data = vec![0u8; len as usize];
        self.read_exact_or_end(&mut data, "data", false)?;
        let mut crc = [0u8; 4];
        self.read_exact_or_end(&mut crc, "data checksum", false)?;
        if masked_crc32c(&data) != u32::from_le_bytes(crc) {
            return Err(self.corrupt("the data's checksum does not match (corrupt record)".into()));
        }
        let offset = self.offset;
        self.offset += 16 + len;
        Ok(Some((offset, data)))
    }
}

impl Iterator for TfRecordReader {
    type Item = Result<Vec<u8>>;
    fn next(&mut self) -> Option<Result<Vec<u8>>> {
        if self.failed {
            return None;
        }
        let r = self.next_record().transpose().map(|r| r.map(|(_, d)| d));
        self.failed = matches!(r, Some(Err(_)));
        r
    }
}

/// The output stream of a [`TfRecordWriter`].
enum Sink {
    Plain(BufWriter<File>),
    Gzip(GzEncoder<BufWriter<File>>),
}

impl Sink {
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Plain(w) => w.write_all(bytes),
            Sink::Gzip(w) => w.write_all(bytes),
        }
    }
}

/// Writes TFRecord files.
pub struct TfRecordWriter {
    path: PathBuf,
    writer: Sink,
}

impl TfRecordWriter {
    /// Creates (or truncates) the uncompressed file `path`.
    ///
    /// # Errors
    /// [`Error::Io`] if it cannot be created.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        Self::create_with(path, Compression::None)
    }

    /// Creates (or truncates) `path`, compressed with `compression` (gzip at the default
    /// level 6, as TF's `TFRecordOptions("GZIP")`; the file is complete only after
    /// [`TfRecordWriter::finish`]).
    ///
    /// # Errors
    /// [`Error::Io`] if it cannot be created.
    pub fn create_with(path: impl AsRef<Path>, compression: Compression) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = BufWriter::new(File::create(&path).map_err(|e| io_error("tfrecord writer", &path, e))?);
        let writer = match compression {
            Compression::None => Sink::Plain(file),
            Compression::Gzip => Sink::Gzip(GzEncoder::new(file, flate2::Compression::default())),
        };
        Ok(TfRecordWriter { path, writer })
    }

    /// Appends one record.
    ///
    /// # Errors
    /// [`Error::Io`] on a write error.
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        let io = |e| io_error("tfrecord writer", &self.path, e);
        self.writer.write_all(&len).map_err(io)?;
        self.writer.write_all(&masked_crc32c(&len).to_le_bytes()).map_err(io)?;
        self.writer.write_all(data).map_err(io)?;
        self.writer.write_all(&masked_crc32c(data).to_le_bytes()).map_err(io)
    }

    /// Flushes and closes the file (writing the gzip trailer of a compressed one).
    ///
    /// # Errors
    /// [`Error::Io`] if flushing fails.
    pub fn finish(self) -> Result<()> {
        let io = |e| io_error("tfrecord writer", &self.path, e);
        match self.writer {
            Sink::Plain(mut w) => w.flush().map_err(io),
            Sink::Gzip(w) => w.finish().and_then(|mut w| w.flush()).map_err(io),
        }
    }
}

/// The records of the uncompressed TFRecord files `paths`, in order (TF's
/// `TFRecordDataset`). To read several files round-robin, interleave:
/// `Dataset::from_vec(paths).interleave(4, 1, |p| tfrecord(vec![p]))`.
///
/// # Errors
/// While iterating, the errors of [`TfRecordReader::next_record`].
pub fn tfrecord(paths: Vec<PathBuf>) -> Dataset<Vec<u8>> {
    tfrecord_compressed(paths, Compression::None)
}

/// The records of the TFRecord files `paths` compressed with `compression`, in order (TF's
/// `TFRecordDataset(paths, compression_type="GZIP")` for [`Compression::Gzip`]).
///
/// # Errors
/// While iterating, the errors of [`TfRecordReader::next_record`].
pub fn tfrecord_compressed(paths: Vec<PathBuf>, compression: Compression) -> Dataset<Vec<u8>> {
    over_files(paths, move |path| match TfRecordReader::open_with(&path, compression) {
        Ok(r) => Box::new(r),
        Err(e) => Box::new(std::iter::once(Err(e))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("couplet-data-tfrecord-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn masked_crc_of_known_values() {
        // CRC-32C("123456789") = 0xE3069283 (RFC 3720's check value); masked by hand:
        // rotate right 15 then + 0xA282EAD8 = 0xC78A_B0E5 (worked in Python by bit).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(masked_crc32c(b"123456789"), 0xC78A_B0E5);
    }

    #[test]
    fn round_trip_and_offsets() {
        let path = temp("round.tfrecord");
        let mut w = TfRecordWriter::create(&path).unwrap();
        for r in [&b"a"[..], b"", b"hello world"] {
            w.write(r).unwrap();
        }
        w.finish().unwrap();
        let mut reader = TfRecordReader::open(&path).unwrap();
        assert_eq!(reader.next_record().unwrap(), Some((0, b"a".to_vec())));
        assert_eq!(reader.next_record().unwrap(), Some((17, vec![])));
        assert_eq!(reader.next_record().unwrap(), Some((33, b"hello world".to_vec())));
        assert_eq!(reader.next_record().unwrap(), None);
        assert_eq!(tfrecord(vec![path.clone(), path]).collect().unwrap().len(), 6);
    }

    #[test]
    fn corruption_names_the_file_and_offset() {
        let path = temp("corrupt.tfrecord");
        let mut w = TfRecordWriter::create(&path).unwrap();
        w.write(b"first").unwrap();
        w.write(b"second").unwrap();
        w.finish().unwrap();
        let good = std::fs::read(&path).unwrap();
        let mut bad = good.clone();
        bad[21 + 12] ^= 1; // a data byte of the second record (offset 21)
        std::fs::write(&path, &bad).unwrap();
        let got: Vec<Result<Vec<u8>>> = tfrecord(vec![path.clone()]).iter().collect();
        assert_eq!(got.len(), 2);
        let e = got[1].as_ref().unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "tfrecord: {}: record at byte offset 21: the data's checksum does not match (corrupt record)",
                path.display()
            )
        );
        let mut bad = good.clone();
        bad[3] ^= 0x40; // the first length
        std::fs::write(&path, &bad).unwrap();
        let e = tfrecord(vec![path.clone()]).collect().unwrap_err().to_string();
        assert!(
            e.ends_with("record at byte offset 0: the length's checksum does not match (corrupt record)"),
            "{e}"
        );
        std::fs::write(&path, &good[..good.len() - 2]).unwrap();
        let e = tfrecord(vec![path.clone()]).collect().unwrap_err().to_string();
        assert!(
            e.ends_with(
                "record at byte offset 21: truncated: the file ends inside the record's data checksum"
            ),
            "{e}"
        );
        let e = tfrecord(vec![temp("missing.tfrecord")]).collect().unwrap_err();
        assert!(matches!(e, Error::Io { .. }));
    }

    fn invalid_data(e: &Error) -> bool {
        matches!(e, Error::Io { source, .. } if source.kind() == ErrorKind::InvalidData)
    }

    #[test]
    fn gzip_round_trip_and_damage() {
        let path = temp("round.tfrecord.gz");
        let records: Vec<Vec<u8>> =
            (0..200u32).map(|i| format!("record {i} ").repeat(i as usize % 7).into_bytes()).collect();
        let mut w = TfRecordWriter::create_with(&path, Compression::Gzip).unwrap();
        for r in &records {
            w.write(r).unwrap();
        }
        w.finish().unwrap();
        let good = std::fs::read(&path).unwrap();
        // A gzip member: magic 1f 8b, method 8 (deflate).
        assert_eq!(good[..3], [0x1f, 0x8b, 8]);
        assert_eq!(tfrecord_compressed(vec![path.clone()], Compression::Gzip).collect().unwrap(), records);
        // Offsets count the uncompressed stream: record 1 starts after 16 + len(record 0) bytes.
        let mut reader = TfRecordReader::open_with(&path, Compression::Gzip).unwrap();
        reader.next_record().unwrap();
        assert_eq!(reader.next_record().unwrap().map(|(o, _)| o), Some(16 + records[0].len() as u64));
        // Two members concatenated read as one stream (as `cat a.gz b.gz`).
        let twice = temp("twice.tfrecord.gz");
        std::fs::write(&twice, [good.clone(), good.clone()].concat()).unwrap();
        assert_eq!(tfrecord_compressed(vec![twice], Compression::Gzip).collect().unwrap().len(), 400);

        // Truncated: the deflate stream or the trailer ends early.
        for cut in [good.len() / 2, good.len() - 4] {
            std::fs::write(&path, &good[..cut]).unwrap();
            let e = tfrecord_compressed(vec![path.clone()], Compression::Gzip).collect().unwrap_err();
            assert!(invalid_data(&e), "{e}");
            assert!(e.to_string().contains("corrupt or truncated compressed stream"), "{e}");
            assert!(
                e.to_string().contains(&format!("tfrecord: {}: record at byte offset", path.display())),
                "{e}"
            );
        }
        // A damaged byte inside the compressed data, and the trailer's CRC-32.
        for at in [good.len() / 2, good.len() - 6] {
            let mut bad = good.clone();
            bad[at] ^= 0x55;
            std::fs::write(&path, &bad).unwrap();
            let e = tfrecord_compressed(vec![path.clone()], Compression::Gzip).collect().unwrap_err();
            assert!(invalid_data(&e), "{e}");
        }
        // Not gzip at all, and gzip read as uncompressed.
        let plain = temp("plain.tfrecord");
        let mut w = TfRecordWriter::create(&plain).unwrap();
        w.write(b"x").unwrap();
        w.finish().unwrap();
        let e = tfrecord_compressed(vec![plain], Compression::Gzip).collect().unwrap_err();
        assert!(invalid_data(&e) && e.to_string().contains("record at byte offset 0"), "{e}");
        std::fs::write(&path, &good).unwrap();
        let e = tfrecord(vec![path]).collect().unwrap_err();
        assert!(e.to_string().ends_with("the length's checksum does not match (corrupt record)"), "{e}");
    }
}
