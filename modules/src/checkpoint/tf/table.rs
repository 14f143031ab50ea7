//! The sorted string table (LevelDB's format, as TensorFlow's `lib/io/table*.cc` keep it)
//! that a TensorBundle's `.index` file is.
//!
//! A table is a run of blocks followed by a 48-byte footer. Each block holds entries whose
//! keys share a prefix with the previous key (`shared`, `unshared`, `value length` as
//! varints, then the unshared key bytes and the value), then the offsets of its restart
//! points (`u32` each, where a key is stored whole) and their count; a 5-byte trailer follows
//! every block: a compression type byte (0 = none) and the masked CRC-32C of the block and
//! that byte. The footer holds the handles (varint offset and size) of the metaindex block
//! and of the index block, padded to 40 bytes, then the magic number. The index block maps a
//! key at or after each data block's last key to that block's handle.

/// The last 8 bytes of every table (`kTableMagicNumber`).
const MAGIC: u64 = 0xdb47_7524_8b80_fb57;
/// Footer size: two handles of at most 20 bytes each, then the magic number.
pub(crate) const FOOTER_LEN: usize = 48;
/// Block trailer size: compression type byte and masked CRC-32C.
const TRAILER_LEN: usize = 5;
/// How many entries share one restart point in the data blocks we write (LevelDB's default).
const RESTART_INTERVAL: usize = 16;
/// A data block is closed once it reaches this many bytes (LevelDB's default block size).
const BLOCK_SIZE: usize = 4096;

/// The masked form in which LevelDB and TensorFlow store CRCs (`crc32c::Mask`).
pub(crate) fn mask_crc(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One sorted `(key, value)` entry of a table.
pub(crate) type Entry = (Vec<u8>, Vec<u8>);

/// Every entry of the table in `bytes`, in key order. Errors are descriptions of what is
/// corrupt (the caller names the file).
pub(crate) fn read_table(bytes: &[u8]) -> Result<Vec<Entry>, String> {
    if bytes.len() < FOOTER_LEN {
        return Err(format!("{} bytes is shorter than a table's {FOOTER_LEN}-byte footer", bytes.len()));
    }
    let footer = &bytes[bytes.len() - FOOTER_LEN..];
    let mut magic = [0u8; 8];
    magic.copy_from_slice(&footer[40..]);
    if u64::from_le_bytes(magic) != MAGIC {
        return Err("bad magic number: not a TensorFlow table (index) file".into());
    }
    let mut cursor = Cursor::new(footer);
    let _metaindex = cursor.handle()?;
    let index = cursor.handle()?;
    let mut entries = Vec::new();
    for (_, handle) in read_block(bytes, index, "index")? {
        let handle = Cursor::new(&handle).handle()?;
        entries.extend(read_block(bytes, handle, "data")?);
    }
    for pair in entries.windows(2) {
        if pair[0].0 >= pair[1].0 {
            return Err(format!("keys out of order: {:?} before {:?}", lossy(&pair[0].0), lossy(&pair[1].0)));
        }
    }
    Ok(entries)
}

fn lossy(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

/// A block's `(offset, size)` in the file.
#[derive(Clone, Copy, Debug)]
struct Handle {
    offset: u64,
    size: u64,
}

/// Reads the block at `handle` (checking its trailer) and parses its entries.
fn read_block(bytes: &[u8], handle: Handle, what: &str) -> Result<Vec<Entry>, String> {
    let start = usize::try_from(handle.offset).map_err(|_| format!("{what} block offset too large"))?;
    let size = usize::try_from(handle.size).map_err(|_| format!("{what} block size too large"))?;
    let end = start
        .checked_add(size)
        .and_then(|e| e.checked_add(TRAILER_LEN))
        .filter(|&e| e <= bytes.len() - FOOTER_LEN)
        .ok_or_else(|| {
            format!("{what} block at {start} of {size} bytes runs past the end of the file (truncated?)")
        })?;
    let contents = &bytes[start..start + size];
    let kind = bytes[start + size];
    let mut stored = [0u8; 4];
    stored.copy_from_slice(&bytes[start + size + 1..end]);
    let actual = mask_crc(crc32c::crc32c_append(crc32c::crc32c(contents), &[kind]));
    if u32::from_le_bytes(stored) != actual {
        return Err(format!("{what} block at {start}: CRC-32C mismatch (corrupt file)"));
    }
    if kind != 0 {
        return Err(format!(
            "{what} block at {start} is compressed (type {kind}); TensorBundle index files are not"
        ));
    }
    parse_block(contents).map_err(|e| format!("{what} block at {start}: {e}"))
}

/// The entries of one block's contents (without its trailer).
fn parse_block(block: &[u8]) -> Result<Vec<Entry>, String> {
    let n = block.len();
    if n < 4 {
        return Err("shorter than its restart count".into());
    }
    let num_restarts = u32::from_le_bytes([block[n - 4], block[n - 3], block[n - 2], block[n - 1]]) as usize;
    let entries_end = num_restarts
        .checked_mul(4)
        .and_then(|r| (n - 4).checked_sub(r))
        .ok_or_else(|| format!("{num_restarts} restart points do not fit in {n} bytes"))?;
    let mut cursor = Cursor::new(&block[..entries_end]);
    let mut entries: Vec<Entry> = Vec::new();
    let mut key = Vec::new();
    while !cursor.is_empty() {
        let shared = cursor.varint_usize()?;
        let unshared = cursor.varint_usize()?;
        let value_len = cursor.varint_usize()?;
        if shared > key.len() {
            return Err(format!("an entry shares {shared} bytes with a previous key of {}", key.len()));
        }
        key.truncate(shared);
        key.extend_from_slice(cursor.take(unshared)?);
        let value = cursor.take(value_len)?.to_vec();
        entries.push((key.clone(), value));
    }
    Ok(entries)
}

/// Reads varints and byte runs, failing with a description instead of panicking.
struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes }
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for (i, &byte) in self.bytes.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.bytes = &self.bytes[i + 1..];
                return Ok(value);
            }
        }
        Err("truncated or overlong varint".into())
    }

    fn varint_usize(&mut self) -> Result<usize, String> {
        let v = self.varint()?;
        usize::try_from(v).map_err(|_| format!("length {v} too large"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.bytes.len() {
            return Err(format!("an entry needs {n} bytes, {} left", self.bytes.len()));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn handle(&mut self) -> Result<Handle, String> {
        Ok(Handle { offset: self.varint()?, size: self.varint()? })
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Builds one block: prefix-compressed entries with a restart point every `interval` entries.
struct BlockBuilder {
    buf: Vec<u8>,
    restarts: Vec<u32>,
    count: usize,
    interval: usize,
    last_key: Vec<u8>,
}

impl BlockBuilder {
    fn new(interval: usize) -> Self {
        BlockBuilder { buf: Vec::new(), restarts: vec![0], count: 0, interval, last_key: Vec::new() }
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn add(&mut self, key: &[u8], value: &[u8]) -> Result<(), String> {
        let mut shared = 0;
        if self.count == self.interval {
            let offset = u32::try_from(self.buf.len()).map_err(|_| "block larger than 4 GiB".to_string())?;
            self.restarts.push(offset);
            self.count = 0;
        } else {
            shared = self.last_key.iter().zip(key).take_while(|(a, b)| a == b).count();
        }
        put_varint(&mut self.buf, shared as u64);
        put_varint(&mut self.buf, (key.len() - shared) as u64);
        put_varint(&mut self.buf, value.len() as u64);
        self.buf.extend_from_slice(&key[shared..]);
        self.buf.extend_from_slice(value);
        self.last_key = key.to_vec();
        self.count += 1;
        Ok(())
    }

    /// The block's contents, restart array included; the builder starts over.
    fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.buf);
        for r in &self.restarts {
            out.extend_from_slice(&r.to_le_bytes());
        }
        out.extend_from_slice(&(self.restarts.len() as u32).to_le_bytes());
        self.restarts = vec![0];
        self.count = 0;
        self.last_key.clear();
        out
    }
}

/// The bytes of a table holding `entries`, which must be sorted by key and unique.
pub(crate) fn write_table(entries: &[Entry]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut data = BlockBuilder::new(RESTART_INTERVAL);
    // The index block stores every key whole (restart interval 1), as TensorFlow's does.
    let mut index = BlockBuilder::new(1);
    let flush =
        |data: &mut BlockBuilder, index: &mut BlockBuilder, out: &mut Vec<u8>| -> Result<(), String> {
            let last = data.last_key.clone();
            let handle = append_block(out, &data.finish());
            index.add(&last, &handle)
        };
    for (i, (key, value)) in entries.iter().enumerate() {
        if i > 0 && entries[i - 1].0 >= *key {
            return Err(format!("keys not sorted and unique at {:?}", lossy(key)));
        }
        data.add(key, value)?;
        if data.buf.len() >= BLOCK_SIZE {
            flush(&mut data, &mut index, &mut out)?;
        }
    }
    if !data.is_empty() {
        flush(&mut data, &mut index, &mut out)?;
    }
    let metaindex = append_block(&mut out, &BlockBuilder::new(1).finish());
    let index = append_block(&mut out, &index.finish());
    let mut footer = Vec::with_capacity(FOOTER_LEN);
    footer.extend_from_slice(&metaindex);
    footer.extend_from_slice(&index);
    footer.resize(FOOTER_LEN - 8, 0);
    footer.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&footer);
    Ok(out)
}

/// Appends `contents` with its trailer; returns its encoded handle.
fn append_block(out: &mut Vec<u8>, contents: &[u8]) -> Vec<u8> {
    let mut handle = Vec::new();
    put_varint(&mut handle, out.len() as u64);
    put_varint(&mut handle, contents.len() as u64);
    out.extend_from_slice(contents);
    out.push(0);
    let crc = mask_crc(crc32c::crc32c_append(crc32c::crc32c(contents), &[0]));
    out.extend_from_slice(&crc.to_le_bytes());
    handle
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(n: usize) -> Vec<Entry> {
        (0..n).map(|i| (format!("scope/var_{i:05}/kernel").into_bytes(), vec![i as u8; i % 7])).collect()
    }

    #[test]
    fn a_table_reads_back_across_blocks_and_restarts() {
        for n in [0, 1, 17, 2000] {
            let written = entries(n);
            let bytes = write_table(&written).unwrap();
            assert_eq!(read_table(&bytes).unwrap(), written, "{n} entries");
        }
        // 2000 entries span several data blocks.
        assert!(write_table(&entries(2000)).unwrap().len() > 3 * BLOCK_SIZE);
    }

    #[test]
    fn the_mask_is_leveldbs() {
        // crc32c("123456789") = 0xe3069283 (the CRC-32C check value), masked by hand:
        // rotate right 15 = 0x2507c60d, plus 0xa282ead8 = 0xc78ab0e5.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(mask_crc(0xe306_9283), 0xc78a_b0e5);
    }

    #[test]
    fn corruption_and_truncation_are_errors() {
        let bytes = write_table(&entries(40)).unwrap();
        assert!(read_table(&bytes[..20]).unwrap_err().contains("footer"));
        assert!(read_table(&bytes[..bytes.len() - 1]).unwrap_err().contains("magic"));
        for at in [0, 10, bytes.len() / 2] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x40;
            let e = read_table(&bad).unwrap_err();
            assert!(e.contains("CRC-32C"), "byte {at}: {e}");
        }
        let mut short = bytes[..bytes.len() - FOOTER_LEN - 30].to_vec();
        short.extend_from_slice(&bytes[bytes.len() - FOOTER_LEN..]);
        assert!(read_table(&short).is_err());
    }
}
