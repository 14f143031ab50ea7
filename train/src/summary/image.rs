//! Reading a PNG file's size from its header, for `Summary.Image`.

/// The size and channel count of a PNG image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PngSize {
    /// Width in pixels.
    pub width: i32,
    /// Height in pixels.
    pub height: i32,
    /// TensorFlow's colour space: 1 grey, 2 grey + alpha, 3 RGB (or palette), 4 RGBA.
    pub channels: i32,
}

const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

/// The size of the PNG file `png` from its `IHDR` chunk.
///
/// # Errors
/// A message when `png` is not a PNG file (no signature, no `IHDR` first, a zero or
/// oversized dimension, an unknown colour type).
pub(crate) fn png_size(png: &[u8]) -> Result<PngSize, String> {
    if png.len() < 33 || png[..8] != SIGNATURE {
        return Err(format!("not a PNG file ({} bytes without the PNG signature and header)", png.len()));
    }
    if &png[12..16] != b"IHDR" {
        return Err("not a PNG file (its first chunk is not IHDR)".into());
    }
    let word = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    let (width, height) = (word(16), word(20));
    let dimension = |v: u32, what: &str| match i32::try_from(v) {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(format!("PNG {what} must be in 1..=2^31-1, got {v}")),
    };
    let channels = match png[25] {
        0 => 1,
        4 => 2,
        2 | 3 => 3,
        6 => 4,
        other => return Err(format!("unknown PNG colour type {other}")),
    };
    Ok(PngSize { width: dimension(width, "width")?, height: dimension(height, "height")?, channels })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first 33 bytes of a PNG file: signature and IHDR (CRC not checked here).
    fn header(width: u32, height: u32, color: u8) -> Vec<u8> {
        let mut v = SIGNATURE.to_vec();
        v.extend_from_slice(&13u32.to_be_bytes());
        v.extend_from_slice(b"IHDR");
        v.extend_from_slice(&width.to_be_bytes());
        v.extend_from_slice(&height.to_be_bytes());
        v.extend_from_slice(&[8, color, 0, 0, 0]);
        v.extend_from_slice(&[0; 4]);
        v
    }

    #[test]
    fn size_and_channels_come_from_ihdr() {
        assert_eq!(png_size(&header(640, 480, 2)).unwrap(), PngSize { width: 640, height: 480, channels: 3 });
        assert_eq!(png_size(&header(1, 2, 6)).unwrap().channels, 4);
        assert_eq!(png_size(&header(1, 2, 0)).unwrap().channels, 1);
        assert_eq!(png_size(&header(1, 2, 4)).unwrap().channels, 2);
    }

    #[test]
    fn other_bytes_are_refused() {
        assert!(png_size(b"GIF89a").unwrap_err().contains("not a PNG file"));
        assert!(png_size(&header(0, 2, 2)).unwrap_err().contains("width must be in"));
        assert!(png_size(&header(2, 1 << 31, 2)).unwrap_err().contains("height"));
        assert!(png_size(&header(2, 2, 5)).unwrap_err().contains("colour type 5"));
        let mut h = header(2, 2, 2);
        h[12..16].copy_from_slice(b"IDAT");
        assert!(png_size(&h).unwrap_err().contains("IHDR"));
    }
}
