//! TFRecord framing, the container of TensorBoard's events files: each record is
//!
//! ```text
//! u64 length (little-endian) | u32 masked CRC-32C of the 8 length bytes
//! data[length]               | u32 masked CRC-32C of data
//! ```
//!
//! with TensorFlow's mask `((crc >> 15) | (crc << 17)) + 0xa282ead8`. CRC-32C is the
//! `crc32c` crate's (hardware-accelerated where the CPU has it).

use couplet_modules::{Error, Result};
use std::path::Path;

/// The constant TensorFlow adds to a rotated CRC.
const MASK_DELTA: u32 = 0xa282_ead8;

/// The bytes a record adds around its data: length, length CRC, data CRC.
pub(crate) const FRAMING_BYTES: usize = 8 + 4 + 4;

/// TensorFlow's masked CRC-32C of `data`.
pub(crate) fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(MASK_DELTA)
}

/// Appends `data` framed as one TFRecord to `out`.
pub(crate) fn append_record(out: &mut Vec<u8>, data: &[u8]) {
    // A usize always fits in a u64 on the platforms Rust supports (at most 64-bit pointers).
    let len = (data.len() as u64).to_le_bytes();
    out.reserve(data.len() + FRAMING_BYTES);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
}

/// A framing error at byte `offset` of `path`, as [`Error::Io`] with `InvalidData`.
fn corrupt(path: &Path, offset: usize, message: String) -> Error {
    Error::Io {
        context: format!("summary: reading events file {}", path.display()),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("record at byte {offset}: {message}"),
        ),
    }
}

/// Splits `bytes` (the contents of `path`, named in errors) into its records' data, checking
/// both CRCs of every record.
///
/// A record cut short at the end of the file (a writer killed mid-write) ends the list
/// without error, as TensorBoard's reader treats it; `Ok` therefore means every complete
/// record was intact.
///
/// # Errors
/// [`Error::Io`] (`InvalidData`) naming the file and the record's byte offset when a length
/// or data CRC does not match.
pub(crate) fn split_records<'a>(path: &Path, bytes: &'a [u8]) -> Result<Vec<&'a [u8]>> {
    let mut records = Vec::new();
    let mut pos = 0usize;
    while bytes.len() - pos >= 12 {
        let header = &bytes[pos..pos + 12];
        let (len_bytes, len_crc) = header.split_at(8);
        let expected = u32::from_le_bytes([len_crc[0], len_crc[1], len_crc[2], len_crc[3]]);
        if masked_crc(len_bytes) != expected {
            return Err(corrupt(path, pos, "length CRC mismatch".into()));
        }
        let mut len8 = [0u8; 8];
        len8.copy_from_slice(len_bytes);
        let len = u64::from_le_bytes(len8);
        let start = pos + 12;
        let remaining = (bytes.len() - start) as u64;
        // A length past the end (with its 4 CRC bytes) is a truncated last record.
        if len > remaining || remaining - len < 4 {
            break;
        }
        // `len <= remaining`, which is a usize, so the cast is exact.
        let end = start + len as usize;
        let data = &bytes[start..end];
        let crc = &bytes[end..end + 4];
        if masked_crc(data) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
            return Err(corrupt(path, pos, format!("data CRC mismatch ({len} bytes)")));
        }
        records.push(data);
        pos = end + 4;
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_and_mask_match_known_values() {
        // CRC-32C check value of "123456789" (RFC 3720 / iSCSI).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        // Masked by hand: (0xe3069283 >> 15 | 0xe3069283 << 17) + 0xa282ead8 mod 2^32.
        assert_eq!(masked_crc(b"123456789"), 0xc78a_b0e5);
    }

    #[test]
    fn a_record_is_length_crc_data_crc() {
        let mut out = Vec::new();
        append_record(&mut out, b"abc");
        assert_eq!(out.len(), 3 + FRAMING_BYTES);
        assert_eq!(&out[..8], &3u64.to_le_bytes());
        assert_eq!(&out[8..12], &masked_crc(&3u64.to_le_bytes()).to_le_bytes());
        assert_eq!(&out[12..15], b"abc");
        assert_eq!(&out[15..], &masked_crc(b"abc").to_le_bytes());
        let path = Path::new("x");
        assert_eq!(split_records(path, &out).unwrap(), vec![b"abc".as_slice()]);
    }

    #[test]
    fn corrupt_crcs_are_typed_errors_and_a_cut_tail_is_dropped() {
        let mut out = Vec::new();
        append_record(&mut out, b"first");
        append_record(&mut out, b"second");
        let path = Path::new("events");
        let first_len = 5 + FRAMING_BYTES;
        // Flip a data byte of the second record.
        let mut bad = out.clone();
        bad[first_len + 12] ^= 1;
        let e = split_records(path, &bad).unwrap_err();
        assert!(e.to_string().contains(&format!("record at byte {first_len}: data CRC mismatch")), "{e}");
        // Flip a length byte of the first record.
        let mut bad = out.clone();
        bad[0] ^= 1;
        let e = split_records(path, &bad).unwrap_err();
        assert!(e.to_string().contains("record at byte 0: length CRC mismatch"), "{e}");
        // Every cut inside the second record leaves the first.
        for cut in first_len..out.len() {
            assert_eq!(split_records(path, &out[..cut]).unwrap(), vec![b"first".as_slice()], "cut {cut}");
        }
        assert_eq!(split_records(path, &out).unwrap().len(), 2);
    }
}
