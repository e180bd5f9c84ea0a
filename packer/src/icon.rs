//! The application icon (Smolfile `[artifact] icon = "icon.png"`): checked
//! at pack time so that `--smolvm-install` only ever copies a PNG a desktop
//! can show; the runtime never decodes it.
//!
//! Checked: the PNG signature; an `IHDR` first with a square size of
//! [`MIN_DIMENSION`] ..= [`MAX_DIMENSION`] pixels and a defined bit depth
//! and colour type; every chunk's length and CRC; at least one `IDAT`, whose
//! zlib stream inflates to exactly the bytes the header implies; `IEND`
//! last, nothing after it; the file at most [`MAX_ICON_SIZE`] bytes.

use std::io::Read;
use std::path::{Path, PathBuf};

use smolvm_format::MAX_ICON_SIZE;
use thiserror::Error;

/// Smallest icon accepted: the smallest size of the hicolor theme.
pub const MIN_DIMENSION: u32 = 16;
/// Largest icon accepted: the largest size desktops ask themes for.
pub const MAX_DIMENSION: u32 = 1024;

const SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";

#[derive(Debug, Error)]
pub enum IconError {
    #[error("Smolfile [artifact] icon {}: cannot read it (give the path of a PNG file, relative to the Smolfile)", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Smolfile [artifact] icon {}: {len} bytes, over the {MAX_ICON_SIZE} byte cap; save it smaller (a 256x256 PNG is plenty)", path.display())]
    TooLarge { path: PathBuf, len: u64 },
    #[error("Smolfile [artifact] icon {}: {fault}", path.display())]
    Invalid { path: PathBuf, fault: String },
}

impl smolvm_runtime::exit::ExitStatus for IconError {
    fn exit_code(&self) -> u8 {
        match self {
            IconError::Read { .. } => smolvm_runtime::exit::USAGE_OR_IO,
            _ => smolvm_runtime::exit::INVALID,
        }
    }
}

/// Reads and checks the icon at `path`; returns its bytes.
pub fn load(path: &Path) -> Result<Vec<u8>, IconError> {
    let read_err = |source| IconError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let len = file.metadata().map_err(read_err)?.len();
    if len > MAX_ICON_SIZE {
        return Err(IconError::TooLarge {
            path: path.to_path_buf(),
            len,
        });
    }
    let mut bytes = Vec::new();
    // At most one byte past the cap: a file that grows meanwhile is caught.
    file.take(MAX_ICON_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_ICON_SIZE {
        return Err(IconError::TooLarge {
            path: path.to_path_buf(),
            len: bytes.len() as u64,
        });
    }
    check_png(&bytes).map_err(|fault| IconError::Invalid {
        path: path.to_path_buf(),
        fault,
    })?;
    Ok(bytes)
}

/// The image's size, from its `IHDR`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PngSize {
    pub width: u32,
    pub height: u32,
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Bits per pixel for a bit depth and colour type (PNG 1.2, table 11.1),
/// or `None` for a combination PNG does not define.
fn bits_per_pixel(depth: u8, color: u8) -> Option<u64> {
    let channels = match (color, depth) {
        (0, 1 | 2 | 4 | 8 | 16) => 1,
        (3, 1 | 2 | 4 | 8) => 1,
        (2, 8 | 16) => 3,
        (4, 8 | 16) => 2,
        (6, 8 | 16) => 4,
        _ => return None,
    };
    Some(channels * u64::from(depth))
}

/// Bytes of the filtered image data: one filter byte per row plus the
/// row's bytes, for each pass (Adam7 has seven reduced images).
fn expected_data_len(size: PngSize, bpp: u64, interlaced: bool) -> u64 {
    let (w, h) = (u64::from(size.width), u64::from(size.height));
    let image = |w: u64, h: u64| {
        if w == 0 || h == 0 {
            0
        } else {
            h * (1 + (w * bpp).div_ceil(8))
        }
    };
    if !interlaced {
        return image(w, h);
    }
    // (x start, y start, x step, y step) of each Adam7 pass.
    const PASSES: [(u64, u64, u64, u64); 7] = [
        (0, 0, 8, 8),
        (4, 0, 8, 8),
        (0, 4, 4, 8),
        (2, 0, 4, 4),
        (0, 2, 2, 4),
        (1, 0, 2, 2),
        (0, 1, 1, 2),
    ];
    PASSES
        .iter()
        .map(|&(x0, y0, dx, dy)| {
            let pw = w.saturating_sub(x0).div_ceil(dx);
            let ph = h.saturating_sub(y0).div_ceil(dy);
            image(pw, ph)
        })
        .sum()
}

/// Checks that `bytes` are a whole, sound PNG of an icon's size.
pub fn check_png(bytes: &[u8]) -> Result<PngSize, String> {
    if !bytes.starts_with(SIGNATURE) {
        return Err("not a PNG file (no PNG signature); export the icon as PNG".into());
    }
    let mut at = SIGNATURE.len();
    let mut header: Option<(PngSize, u64, bool)> = None;
    let mut zlib = Vec::new();
    let mut ended = false;
    while at < bytes.len() {
        if ended {
            return Err(format!(
                "{} bytes after the IEND chunk; the file is damaged or has data appended",
                bytes.len() - at
            ));
        }
        let head = bytes
            .get(at..at + 8)
            .ok_or_else(|| format!("truncated chunk header at byte {at}"))?;
        let len = usize::try_from(be32(&head[0..4])).map_err(|_| "chunk too long".to_string())?;
        let kind: [u8; 4] = [head[4], head[5], head[6], head[7]];
        let name = String::from_utf8_lossy(&kind).into_owned();
        let data_end = (at + 8)
            .checked_add(len)
            .filter(|&e| e.checked_add(4).is_some_and(|e| e <= bytes.len()))
            .ok_or_else(|| format!("chunk {name:?} at byte {at} runs past the end of the file"))?;
        let data = &bytes[at + 8..data_end];
        let mut crc = flate2::Crc::new();
        crc.update(&kind);
        crc.update(data);
        if crc.sum() != be32(&bytes[data_end..data_end + 4]) {
            return Err(format!(
                "chunk {name:?} at byte {at} fails its CRC; the file is damaged"
            ));
        }
        match (&kind, header.is_some()) {
            (b"IHDR", false) => {
                if len != 13 {
                    return Err(format!("IHDR is {len} bytes, not 13"));
                }
                let size = PngSize {
                    width: be32(&data[0..4]),
                    height: be32(&data[4..8]),
                };
                let (depth, color, method, filter, interlace) =
                    (data[8], data[9], data[10], data[11], data[12]);
                let bpp = bits_per_pixel(depth, color).ok_or_else(|| {
                    format!("bit depth {depth} with colour type {color} is not defined by PNG")
                })?;
                if method != 0 || filter != 0 || interlace > 1 {
                    return Err(format!(
                        "IHDR compression {method}, filter {filter}, interlace {interlace}: not defined by PNG"
                    ));
                }
                if size.width != size.height {
                    return Err(format!(
                        "{}x{} pixels; application icons are square (pad it to a square)",
                        size.width, size.height
                    ));
                }
                if !(MIN_DIMENSION..=MAX_DIMENSION).contains(&size.width) {
                    return Err(format!(
                        "{}x{} pixels; an icon is {MIN_DIMENSION}x{MIN_DIMENSION} to {MAX_DIMENSION}x{MAX_DIMENSION} (256x256 suits every desktop)",
                        size.width, size.height
                    ));
                }
                header = Some((size, bpp, interlace == 1));
            }
            (_, false) => return Err(format!("the first chunk is {name:?}, not IHDR")),
            (b"IHDR", true) => return Err("a second IHDR chunk".into()),
            (b"IDAT", true) => zlib.extend_from_slice(data),
            (b"IEND", true) => ended = true,
            _ => {}
        }
        at = data_end + 4;
    }
    let Some((size, bpp, interlaced)) = header else {
        return Err("no IHDR chunk".into());
    };
    if !ended {
        return Err("no IEND chunk: the file is truncated".into());
    }
    if zlib.is_empty() {
        return Err("no IDAT chunk: the file holds no image".into());
    }
    let want = expected_data_len(size, bpp, interlaced);
    let mut inflated = Vec::new();
    flate2::read::ZlibDecoder::new(zlib.as_slice())
        .take(want + 1)
        .read_to_end(&mut inflated)
        .map_err(|e| format!("the image data does not inflate: {e}"))?;
    if inflated.len() as u64 != want {
        return Err(format!(
            "the image data inflates to {} bytes where {}x{} pixels need {want}; the file is damaged",
            inflated.len(),
            size.width,
            size.height
        ));
    }
    Ok(size)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// A grey `w`x`h` PNG (8-bit greyscale, not interlaced).
    pub(crate) fn png(w: u32, h: u32) -> Vec<u8> {
        let mut raw = Vec::new();
        for _ in 0..h {
            raw.push(0);
            raw.extend(std::iter::repeat_n(0x80, w as usize));
        }
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&raw).unwrap();
        let idat = z.finish().unwrap();
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&w.to_be_bytes());
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
        let mut out = SIGNATURE.to_vec();
        for (kind, data) in [
            (b"IHDR", &ihdr[..]),
            (b"IDAT", &idat[..]),
            (b"IEND", &[][..]),
        ] {
            out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
            out.extend_from_slice(kind);
            out.extend_from_slice(data);
            let mut crc = flate2::Crc::new();
            crc.update(kind);
            crc.update(data);
            out.extend_from_slice(&crc.sum().to_be_bytes());
        }
        out
    }

    #[test]
    fn a_square_png_of_icon_size_passes() {
        for n in [16, 48, 100, 256, 1024] {
            assert_eq!(
                check_png(&png(n, n)),
                Ok(PngSize {
                    width: n,
                    height: n
                })
            );
        }
    }

    #[test]
    fn every_fault_is_named() {
        let good = png(32, 32);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"GIF89a....".to_vec(), "not a PNG"),
            (png(2048, 2048), "2048x2048"),
            (png(8, 8), "8x8"),
            (png(32, 16), "square"),
            (good[..good.len() - 12].to_vec(), "no IEND"),
            (good[..45].to_vec(), "runs past the end"),
            (good[..36].to_vec(), "truncated chunk header"),
            ([&good[..], b"trailing"].concat(), "after the IEND"),
            (
                {
                    let mut b = good.clone();
                    b[20] ^= 1; // inside IHDR's width: the CRC no longer matches
                    b
                },
                "CRC",
            ),
        ];
        for (bytes, needle) in cases {
            let e = check_png(&bytes).unwrap_err();
            assert!(e.contains(needle), "{needle:?} not in {e}");
        }
        // A sound chunk structure around image data of the wrong size.
        let mut short = png(32, 32);
        let ihdr_w = 16;
        short[ihdr_w..ihdr_w + 4].copy_from_slice(&33u32.to_be_bytes());
        short[ihdr_w + 4..ihdr_w + 8].copy_from_slice(&33u32.to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(&short[12..29]);
        let sum = crc.sum().to_be_bytes();
        short[29..33].copy_from_slice(&sum);
        let e = check_png(&short).unwrap_err();
        assert!(e.contains("inflates to"), "{e}");
    }

    #[test]
    fn adam7_passes_add_up() {
        // 1x1: only the first pass has a pixel.
        let s = |n| PngSize {
            width: n,
            height: n,
        };
        assert_eq!(expected_data_len(s(1), 8, true), 2);
        // 8x8 at 8 bits: passes 1x1,1x1,2x1,2x2,4x2,4x4,8x4.
        assert_eq!(
            expected_data_len(s(8), 8, true),
            2 + 2 + 3 + 2 * 3 + 2 * 5 + 4 * 5 + 4 * 9
        );
        assert_eq!(expected_data_len(s(8), 8, false), 8 * 9);
    }
}
