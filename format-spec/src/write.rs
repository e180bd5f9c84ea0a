//! Writing artifacts. The layout is reserved first (every offset known),
//! then the bytes are emitted in one pass.

use std::io::Write;

use crate::error::{FormatError, Result};
use crate::fixed_hex::Sha256Digest;
use crate::layout::{
    align_up, signing_input, Header, SignatureBlock, Trailer, HEADER_LEN, PAGE_SIZE,
    SIGNATURE_BLOCK_LEN, TRAILER_LEN,
};
use crate::manifest::{Compression, Manifest, SectionEntry, SectionKind, StubRecord};

/// A section ready to be written: its stored bytes and what they decompress to.
pub struct SectionData {
    pub kind: SectionKind,
    pub compression: Compression,
    pub stored: Vec<u8>,
    /// Uncompressed length.
    pub size: u64,
}

/// Computes the section table (offsets and hashes) for `sections`, in order.
pub fn plan_sections(sections: &[SectionData]) -> Result<Vec<SectionEntry>> {
    let hashes: Vec<Sha256Digest> = sections
        .iter()
        .map(|s| Sha256Digest::of(&s.stored))
        .collect();
    plan_sections_hashed(sections, &hashes)
}

/// [`plan_sections`] with the SHA-256 of each section's stored bytes already
/// computed (a packer hashes while it compresses). `sha256[i]` must be the
/// hash of `sections[i].stored`; a writer that lies here produces an
/// artifact every reader rejects.
///
/// # Panics
/// If the two slices differ in length.
pub fn plan_sections_hashed(
    sections: &[SectionData],
    sha256: &[Sha256Digest],
) -> Result<Vec<SectionEntry>> {
    assert_eq!(sections.len(), sha256.len(), "one hash per section");
    let mut offset = 0u64;
    let mut out = Vec::with_capacity(sections.len());
    for (s, hash) in sections.iter().zip(sha256) {
        let stored_len = s.stored.len() as u64;
        out.push(SectionEntry {
            kind: s.kind,
            compression: s.compression,
            offset,
            stored_len,
            size: s.size,
            sha256: *hash,
            frames: None,
        });
        let end = offset
            .checked_add(stored_len)
            .ok_or_else(|| FormatError::Overflow {
                what: format!("section `{}`", s.kind),
                offset,
                len: stored_len,
            })?;
        offset = align_up(end).ok_or_else(|| FormatError::Overflow {
            what: format!("section `{}`", s.kind),
            offset,
            len: stored_len,
        })?;
    }
    Ok(out)
}

/// The zero bytes that take `len` to the next page boundary (fewer than a page).
fn padding(len: u64) -> Vec<u8> {
    let rem = len % PAGE_SIZE;
    let n = if rem == 0 { 0 } else { PAGE_SIZE - rem };
    vec![0u8; usize::try_from(n).expect("below a page")]
}

/// Pads a stub executable with zeros to a page multiple, so the payload (and
/// with it every section) starts page-aligned in the file.
pub fn pad_stub(mut stub: Vec<u8>) -> Vec<u8> {
    let pad = padding(stub.len() as u64);
    stub.resize(stub.len() + pad.len(), 0);
    stub
}

/// The manifest record pinning a (padded) stub; `None` for a bare payload.
pub fn stub_record(padded_stub: &[u8]) -> Option<StubRecord> {
    (!padded_stub.is_empty()).then(|| StubRecord {
        length: padded_stub.len() as u64,
        sha256: Sha256Digest::of(padded_stub),
    })
}

/// Encodes a payload around a finished manifest.
pub struct PayloadWriter {
    header: Header,
    header_bytes: [u8; 64],
    manifest_bytes: Vec<u8>,
}

impl PayloadWriter {
    /// `manifest.signer` decides whether a signature block is reserved.
    pub fn new(manifest: &Manifest) -> Result<Self> {
        manifest.validate()?;
        let manifest_bytes = manifest.encode();
        let manifest_len = u32::try_from(manifest_bytes.len())
            .ok()
            .filter(|&l| u64::from(l) <= crate::layout::MAX_MANIFEST_LEN)
            .ok_or_else(|| {
                FormatError::Manifest(format!(
                    "encoded manifest is {} bytes, over the {} byte cap (too many env entries or volumes?)",
                    manifest_bytes.len(),
                    crate::layout::MAX_MANIFEST_LEN
                ))
            })?;
        let signature_len = if manifest.signer.is_some() {
            u32::try_from(SIGNATURE_BLOCK_LEN).expect("96 fits")
        } else {
            0
        };
        let header = Header {
            version: manifest.format_version,
            manifest_len,
            signature_len,
        };
        Ok(PayloadWriter {
            header,
            header_bytes: header.encode(),
            manifest_bytes,
        })
    }

    /// The bytes to sign (see SPEC.md "Signing input").
    pub fn signing_input(&self) -> Vec<u8> {
        signing_input(&self.header_bytes, &self.manifest_bytes)
    }

    /// Writes `stub` (already padded with [`pad_stub`]) followed by the
    /// payload. Returns the number of bytes written.
    pub fn write<W: Write>(
        &self,
        out: &mut W,
        stub: &[u8],
        sections: &[SectionData],
        signature: Option<&SignatureBlock>,
    ) -> std::io::Result<u64> {
        if !(stub.len() as u64).is_multiple_of(PAGE_SIZE) {
            return Err(std::io::Error::other(
                "stub is not padded to a page multiple",
            ));
        }
        if signature.is_some() != (self.header.signature_len != 0) {
            return Err(std::io::Error::other(
                "signature presence does not match the manifest's signer",
            ));
        }
        let mut written = 0u64;
        let mut put = |out: &mut W, bytes: &[u8]| -> std::io::Result<()> {
            out.write_all(bytes)?;
            written += bytes.len() as u64;
            Ok(())
        };
        put(out, stub)?;
        put(out, &self.header_bytes)?;
        put(out, &self.manifest_bytes)?;
        if let Some(sig) = signature {
            put(out, &sig.encode())?;
        }
        let data_offset = self.header.data_offset();
        let used =
            HEADER_LEN + self.manifest_bytes.len() as u64 + u64::from(self.header.signature_len);
        put(out, &padding(used))?;
        debug_assert_eq!(align_up(used), Some(data_offset));
        let mut pos = 0u64;
        for (i, s) in sections.iter().enumerate() {
            put(out, &s.stored)?;
            pos += s.stored.len() as u64;
            if i + 1 < sections.len() {
                let pad = padding(pos);
                put(out, &pad)?;
                pos += pad.len() as u64;
            }
        }
        let trailer = Trailer {
            version: self.header.version,
            payload_offset: stub.len() as u64,
            payload_len: data_offset + pos + TRAILER_LEN,
        };
        put(out, &trailer.encode())?;
        Ok(written)
    }
}
