//! TFRecord files: each record is `length: u64 LE`, `masked_crc32c(length): u32 LE`,
//! `data: [u8; length]`, `masked_crc32c(data): u32 LE` (TF's `tf.io.TFRecordWriter` format,
//! uncompressed). Reading checks both checksums: a corrupt or truncated record is an
//! [`Error::Io`] of kind `InvalidData` naming the file and the byte offset of the record.

use crate::dataset::Dataset;
use crate::source::{io_error, over_files};
use couplet_modules::{Error, Result};
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

/// Reads the records of one TFRecord file in order.
pub struct TfRecordReader {
    path: PathBuf,
    reader: BufReader<File>,
    offset: u64,
    failed: bool,
}

impl TfRecordReader {
    /// Opens `path`.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be opened.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| io_error("tfrecord", &path, e))?;
        Ok(TfRecordReader { path, reader: BufReader::with_capacity(1 << 16, file), offset: 0, failed: false })
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

/// Writes TFRecord files.
pub struct TfRecordWriter {
    path: PathBuf,
    writer: BufWriter<File>,
}

impl TfRecordWriter {
    /// Creates (or truncates) `path`.
    ///
    /// # Errors
    /// [`Error::Io`] if it cannot be created.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::create(&path).map_err(|e| io_error("tfrecord writer", &path, e))?;
        Ok(TfRecordWriter { path, writer: BufWriter::new(file) })
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

    /// Flushes and closes the file.
    ///
    /// # Errors
    /// [`Error::Io`] if flushing fails.
    pub fn finish(mut self) -> Result<()> {
        let path = self.path.clone();
        self.writer.flush().map_err(|e| io_error("tfrecord writer", &path, e))
    }
}

/// The records of the TFRecord files `paths`, in order (TF's `TFRecordDataset`). To read
/// several files round-robin, interleave: `Dataset::from_vec(paths).interleave(4, 1, |p| tfrecord(vec![p]))`.
///
/// # Errors
/// While iterating, the errors of [`TfRecordReader::next_record`].
pub fn tfrecord(paths: Vec<PathBuf>) -> Dataset<Vec<u8>> {
    over_files(paths, |path| match TfRecordReader::open(&path) {
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
}
