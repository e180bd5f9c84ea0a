//! Tarballs and layers come plain, gzip- or zstd-compressed; the first bytes
//! say which.

use std::io::{BufRead, Read};

/// A reader of `r`'s decompressed bytes, the compression detected from its
/// magic. Multi-member gzip reads whole (as `gzip -d` does).
pub fn decompress<'a, R: BufRead + 'a>(mut r: R) -> std::io::Result<Box<dyn Read + 'a>> {
    let magic = r.fill_buf()?;
    Ok(if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(r))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(r)?)
    } else {
        Box::new(r)
    })
}
