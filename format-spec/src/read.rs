//! Bounds-checked reading of artifacts.
//!
//! Every read goes through [`ReadAt::read_bytes_at`], which checks the range
//! with checked arithmetic before touching a byte. [`Artifact::parse`] does the
//! structural checks (cheap, a few KiB read); [`Artifact::verify_integrity`]
//! hashes everything else.

use std::borrow::Cow;
use std::io::Read;

use sha2::{Digest, Sha256};

use crate::error::{FormatError, Result};
use crate::fixed_hex::{Sha256Digest, SignerKeyId};
use crate::frames::{FrameDecoder, FrameSpan};
use crate::layout::{
    align_up, signing_input, Header, SignatureBlock, Trailer, HEADER_LEN, PAGE_SIZE,
    SIGNATURE_BLOCK_LEN, TRAILER_LEN,
};
use crate::manifest::{Compression, Manifest, SectionEntry};
use crate::section_kind::SectionKind;

// Frames owns the cap because it enforces it per frame; the path here
// stays for callers that found it under read.
pub use crate::frames::MAX_ZSTD_WINDOW_LOG;

/// Chunk size for streaming hashes and reads of file-backed sources.
const CHUNK: u64 = 1 << 20;

/// Random access to the bytes of an artifact.
pub trait ReadAt {
    /// Total length in bytes.
    fn size(&self) -> u64;
    /// `len` bytes at `offset`; an error (never a panic) if the range is not inside.
    fn read_bytes_at(&self, offset: u64, len: u64) -> Result<Cow<'_, [u8]>>;
    /// Fills `buf` with the bytes at `offset`; an error (never a panic) if
    /// the range is not inside. Sources that read from a file override it
    /// to read straight into `buf`, so a caller can reuse its buffers.
    fn read_into(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        buf.copy_from_slice(&self.read_bytes_at(offset, buf.len() as u64)?);
        Ok(())
    }
}

fn check_range(what: &str, offset: u64, len: u64, file_len: u64) -> Result<()> {
    let end = offset
        .checked_add(len)
        .ok_or_else(|| FormatError::Overflow {
            what: what.to_string(),
            offset,
            len,
        })?;
    if end > file_len {
        return Err(FormatError::OutOfBounds {
            what: what.to_string(),
            offset,
            len,
            file_len,
        });
    }
    Ok(())
}

impl ReadAt for [u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn read_bytes_at(&self, offset: u64, len: u64) -> Result<Cow<'_, [u8]>> {
        check_range("read", offset, len, self.size())?;
        // Both fit in usize: they are bounded by self.len().
        let start = usize::try_from(offset).expect("bounded by slice length");
        let end = usize::try_from(offset + len).expect("bounded by slice length");
        Ok(Cow::Borrowed(&self[start..end]))
    }
}

/// A file read with `pread`: a file truncated under us gives an I/O error
/// where a mapping would give SIGBUS.
pub struct FileSource {
    file: std::fs::File,
    len: u64,
}

impl FileSource {
    pub fn new(file: std::fs::File) -> std::io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(FileSource { file, len })
    }

    pub fn file(&self) -> &std::fs::File {
        &self.file
    }
}

impl ReadAt for FileSource {
    fn size(&self) -> u64 {
        self.len
    }

    fn read_bytes_at(&self, offset: u64, len: u64) -> Result<Cow<'_, [u8]>> {
        check_range("read", offset, len, self.len)?;
        let len = usize::try_from(len).map_err(|_| FormatError::Overflow {
            what: "read".into(),
            offset,
            len,
        })?;
        let mut buf = vec![0u8; len];
        self.read_into(offset, &mut buf)?;
        Ok(Cow::Owned(buf))
    }

    fn read_into(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        check_range("read", offset, buf.len() as u64, self.len)?;
        self.file
            .read_exact_at(buf, offset)
            .map_err(|source| FormatError::Io {
                what: "artifact (was it truncated while in use?)",
                source,
            })
    }
}

/// A structurally valid artifact. Creating one reads only the trailer,
/// header, manifest and signature block.
pub struct Artifact<'a, R: ReadAt + ?Sized> {
    src: &'a R,
    pub trailer: Trailer,
    pub header: Header,
    pub manifest: Manifest,
    manifest_bytes: Vec<u8>,
    header_bytes: [u8; 64],
    pub signature: Option<SignatureBlock>,
    /// Absolute file offset of the data area.
    data_start: u64,
}

/// The trailer at the end of `src` (`file_len` bytes), checked: the
/// payload it names ends at the end of the file, starts on a page
/// boundary, and is long enough for a header.
fn read_trailer<R: ReadAt + ?Sized>(src: &R, file_len: u64) -> Result<Trailer> {
    let min = TRAILER_LEN + HEADER_LEN;
    if file_len < min {
        return Err(FormatError::TooShort {
            len: file_len,
            need: min,
        });
    }
    let trailer = Trailer::decode(&fixed(
        &src.read_bytes_at(file_len - TRAILER_LEN, TRAILER_LEN)?,
    ))?;
    let end = trailer
        .payload_offset
        .checked_add(trailer.payload_len)
        .ok_or_else(|| FormatError::Overflow {
            what: "trailer payload range".into(),
            offset: trailer.payload_offset,
            len: trailer.payload_len,
        })?;
    if end != file_len {
        return Err(FormatError::BadField {
            structure: "trailer",
            field: "payload_len",
            value: trailer.payload_len,
            expected: format!(
                "{} so the payload ends at end of file (payload_offset {:#x} + payload_len ends at {end:#x}, file is {file_len:#x} bytes: bytes were appended, inserted or cut)",
                file_len.saturating_sub(trailer.payload_offset),
                trailer.payload_offset
            ),
        });
    }
    if trailer.payload_offset % PAGE_SIZE != 0 {
        return Err(FormatError::BadField {
            structure: "trailer",
            field: "payload_offset",
            value: trailer.payload_offset,
            expected: format!("a multiple of {PAGE_SIZE}"),
        });
    }
    if trailer.payload_len < min {
        return Err(FormatError::BadField {
            structure: "trailer",
            field: "payload_len",
            value: trailer.payload_len,
            expected: format!("at least {min}"),
        });
    }
    Ok(trailer)
}

/// A signature block is there exactly when the manifest names a signer,
/// and names the same key.
fn check_signer(signature: Option<&SignatureBlock>, manifest: &Manifest) -> Result<()> {
    match (signature, &manifest.signer) {
        (None, None) => {}
        (Some(block), Some(signer)) => {
            if block.key_id != signer.key_id.to_bytes() {
                return Err(FormatError::SignatureBlock(format!(
                    "key id {} does not match the manifest's signer key id {}",
                    SignerKeyId::from_bytes(block.key_id),
                    signer.key_id
                )));
            }
        }
        (Some(_), None) => {
            return Err(FormatError::SignatureBlock(
                "present, but the manifest names no signer".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(FormatError::SignatureBlock(
                "missing, but the manifest names a signer (signature stripped?)".into(),
            ))
        }
    }
    Ok(())
}

/// The manifest's stub record says how many bytes precede the payload.
fn check_stub_record(manifest: &Manifest, trailer: &Trailer) -> Result<()> {
    match &manifest.stub {
        None if trailer.payload_offset != 0 => {
            return Err(FormatError::Manifest(format!(
                "field `stub` is null but {} bytes precede the payload",
                trailer.payload_offset
            )))
        }
        Some(stub) if stub.length != trailer.payload_offset => {
            return Err(FormatError::Manifest(format!(
                "field `stub.length` is {} but the payload starts at offset {}",
                stub.length, trailer.payload_offset
            )))
        }
        _ => {}
    }
    Ok(())
}

/// The layout is fully determined: each section starts at the first page
/// boundary after the previous one, and the trailer follows the last. No
/// gaps to hide bytes in, no overlaps.
fn check_section_layout(
    manifest: &Manifest,
    trailer: &Trailer,
    data_start: u64,
    file_len: u64,
) -> Result<()> {
    let mut expected = 0u64;
    let mut data_end = 0u64;
    for (i, s) in manifest.sections.iter().enumerate() {
        let what = format!("section `{}` (sections[{i}])", s.kind);
        if s.offset != expected {
            return Err(FormatError::Section {
                kind: s.kind,
                fault: format!(
                    "offset {:#x} is not the expected {expected:#x} (sections are packed in order at page boundaries; overlap or gap)",
                    s.offset
                ),
            });
        }
        if s.stored_len == 0 {
            return Err(FormatError::Section {
                kind: s.kind,
                fault: "stored_len is 0".into(),
            });
        }
        let abs = data_start
            .checked_add(s.offset)
            .ok_or_else(|| FormatError::Overflow {
                what: what.clone(),
                offset: s.offset,
                len: s.stored_len,
            })?;
        check_range(&what, abs, s.stored_len, file_len - TRAILER_LEN)?;
        data_end = s.offset + s.stored_len;
        expected = align_up(data_end).ok_or(FormatError::Overflow {
            what,
            offset: s.offset,
            len: s.stored_len,
        })?;
    }
    if data_start + data_end != file_len - TRAILER_LEN {
        return Err(FormatError::BadField {
            structure: "trailer",
            field: "payload_len",
            value: trailer.payload_len,
            expected: format!(
                "{} (the trailer must directly follow the last section)",
                data_start + data_end + TRAILER_LEN - trailer.payload_offset
            ),
        });
    }
    Ok(())
}

fn fixed<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    out
}

impl<'a, R: ReadAt + ?Sized> Artifact<'a, R> {
    /// Finds the payload from the end of `src` and checks its structure:
    /// trailer, header, manifest (canonical and valid), signature block
    /// consistency, stub record, and the exact section layout.
    pub fn parse(src: &'a R) -> Result<Self> {
        let file_len = src.size();
        let trailer = read_trailer(src, file_len)?;
        let header_bytes: [u8; 64] = fixed(&src.read_bytes_at(trailer.payload_offset, HEADER_LEN)?);
        let header = Header::decode(&header_bytes)?;
        if header.version != trailer.version {
            return Err(FormatError::VersionMismatch {
                structure: "header",
                found: header.version,
                trailer: trailer.version,
            });
        }
        // The data area starts after header + manifest + signature block; all of
        // it must precede the trailer.
        let data_start = trailer.payload_offset + header.data_offset();
        if data_start > file_len - TRAILER_LEN {
            return Err(FormatError::OutOfBounds {
                what: "header: manifest and signature block".into(),
                offset: trailer.payload_offset + HEADER_LEN,
                len: u64::from(header.manifest_len) + u64::from(header.signature_len),
                file_len: file_len - TRAILER_LEN,
            });
        }
        let manifest_bytes = src
            .read_bytes_at(
                trailer.payload_offset + HEADER_LEN,
                u64::from(header.manifest_len),
            )?
            .into_owned();
        let manifest = Manifest::decode(&manifest_bytes)?;
        if manifest.format_version != trailer.version {
            return Err(FormatError::VersionMismatch {
                structure: "manifest (field `format_version`)",
                found: manifest.format_version,
                trailer: trailer.version,
            });
        }

        let signature = if header.signature_len == 0 {
            None
        } else {
            let at = trailer.payload_offset + header.signature_offset();
            Some(SignatureBlock::decode(&fixed(
                &src.read_bytes_at(at, SIGNATURE_BLOCK_LEN)?,
            ))?)
        };
        check_signer(signature.as_ref(), &manifest)?;
        check_stub_record(&manifest, &trailer)?;
        check_section_layout(&manifest, &trailer, data_start, file_len)?;

        Ok(Artifact {
            src,
            trailer,
            header,
            manifest,
            manifest_bytes,
            header_bytes,
            signature,
            data_start,
        })
    }

    /// The exact bytes the signature covers.
    pub fn signing_input(&self) -> Vec<u8> {
        signing_input(&self.header_bytes, &self.manifest_bytes)
    }

    /// The raw canonical manifest bytes.
    pub fn manifest_bytes(&self) -> &[u8] {
        &self.manifest_bytes
    }

    pub fn source(&self) -> &'a R {
        self.src
    }

    /// Absolute file offset of a section's stored bytes.
    pub fn section_file_offset(&self, entry: &SectionEntry) -> u64 {
        // Checked in `parse`.
        self.data_start + entry.offset
    }

    /// The section's stored bytes (borrowed for in-memory sources).
    pub fn section_bytes(&self, entry: &SectionEntry) -> Result<Cow<'a, [u8]>> {
        self.src
            .read_bytes_at(self.section_file_offset(entry), entry.stored_len)
    }

    fn sha256_range(&self, offset: u64, len: u64) -> Result<Sha256Digest> {
        let mut hasher = Sha256::new();
        let mut pos = 0;
        while pos < len {
            let n = CHUNK.min(len - pos);
            hasher.update(&self.src.read_bytes_at(offset + pos, n)?);
            pos += n;
        }
        Ok(hasher.finalize().into())
    }

    fn check_zero(&self, offset: u64, len: u64) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        let bytes = self.src.read_bytes_at(offset, len)?;
        if let Some(i) = bytes.iter().position(|&b| b != 0) {
            return Err(FormatError::NonZeroPadding {
                offset: offset + i as u64,
            });
        }
        Ok(())
    }

    /// Checks one section's stored bytes against its hash.
    pub fn verify_section(&self, entry: &SectionEntry) -> Result<()> {
        let actual = self.sha256_range(self.section_file_offset(entry), entry.stored_len)?;
        if actual != entry.sha256 {
            return Err(FormatError::HashMismatch {
                kind: entry.kind,
                expected: entry.sha256,
                actual,
            });
        }
        Ok(())
    }

    /// The `config` section must be byte-identical to the canonical encoding
    /// of the manifest's config: what is shown and signed is what boots.
    pub fn verify_config_section(&self) -> Result<()> {
        let actual = self.read_section(SectionKind::Config)?;
        if actual != self.manifest.config.to_canonical_json() {
            return Err(FormatError::Section {
                kind: SectionKind::Config,
                fault: "content differs from the manifest's config".into(),
            });
        }
        Ok(())
    }

    /// Checks the stub hash (if any).
    pub fn verify_stub(&self) -> Result<()> {
        if let Some(stub) = &self.manifest.stub {
            let actual = self.sha256_range(0, stub.length)?;
            if actual != stub.sha256 {
                return Err(FormatError::StubHashMismatch {
                    len: stub.length,
                    expected: stub.sha256,
                    actual,
                });
            }
        }
        Ok(())
    }

    /// Checks that every byte the hashes do not cover is zero padding.
    pub fn verify_padding(&self) -> Result<()> {
        let sig_end = self.trailer.payload_offset
            + self.header.signature_offset()
            + u64::from(self.header.signature_len);
        self.check_zero(sig_end, self.data_start - sig_end)?;
        let mut prev_end = self.data_start;
        for s in &self.manifest.sections {
            let start = self.section_file_offset(s);
            self.check_zero(prev_end, start - prev_end)?;
            prev_end = start + s.stored_len;
        }
        Ok(())
    }

    /// Everything but the signature: stub hash, padding, every section hash.
    /// Together with a valid signature over [`Self::signing_input`] this
    /// vouches for every byte of the file.
    pub fn verify_integrity(&self) -> Result<()>
    where
        R: Sync,
    {
        self.verify_padding()?;
        self.verify_config_section()?;
        // Hash the stub and the sections on all cores: verify is I/O- and
        // hash-bound and sections are independent.
        let mut results: Vec<Result<()>> = Vec::new();
        std::thread::scope(|scope| {
            let stub = scope.spawn(|| self.verify_stub());
            let handles: Vec<_> = self
                .manifest
                .sections
                .iter()
                .map(|s| scope.spawn(move || self.verify_section(s)))
                .collect();
            results.push(stub.join().expect("hash thread"));
            for h in handles {
                results.push(h.join().expect("hash thread"));
            }
        });
        results.into_iter().collect()
    }

    /// Streams a section's decompressed content, checking the stored-bytes
    /// hash, the declared size and the caps as it goes. Call
    /// [`SectionStream::finish`] after reading to EOF: only then is the
    /// content known to be the one the manifest vouches for.
    pub fn open_section(&self, entry: &SectionEntry) -> Result<SectionStream<'a, R>> {
        let raw = HashingReader {
            src: self.src,
            offset: self.section_file_offset(entry),
            remaining: entry.stored_len,
            hasher: Sha256::new(),
            buf: Vec::new(),
            buf_pos: 0,
        };
        let inner = match entry.compression {
            Compression::None => Inner::Plain(raw),
            Compression::Zstd if entry.frames.is_some() => Inner::Framed(Box::new(FramedReader {
                raw,
                kind: entry.kind,
                spans: entry.frame_spans()?,
                next: 0,
                decoder: FrameDecoder::new(entry.kind)?,
                stored: Vec::new(),
                pos: 0,
            })),
            Compression::Zstd => {
                let mut decoder = zstd::stream::read::Decoder::with_buffer(
                    std::io::BufReader::with_capacity(1 << 17, raw),
                )
                .map_err(|e| decompress_err(entry.kind, e))?;
                decoder
                    .window_log_max(MAX_ZSTD_WINDOW_LOG)
                    .map_err(|e| decompress_err(entry.kind, e))?;
                Inner::Zstd(Box::new(decoder.single_frame()))
            }
        };
        Ok(SectionStream {
            inner,
            entry: entry.clone(),
            produced: 0,
        })
    }

    /// Reads one frame's stored bytes (`span` from
    /// [`SectionEntry::frame_spans`]) into `buf`, range-checked against the
    /// section; `buf` is resized to the frame and can be reused.
    pub fn read_frame(
        &self,
        entry: &SectionEntry,
        span: &FrameSpan,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let what = || format!("section `{}` frame {}", entry.kind, span.index);
        let end = span
            .stored_offset
            .checked_add(span.stored_len)
            .ok_or_else(|| FormatError::Overflow {
                what: what(),
                offset: span.stored_offset,
                len: span.stored_len,
            })?;
        if end > entry.stored_len {
            return Err(FormatError::OutOfBounds {
                what: what(),
                offset: span.stored_offset,
                len: span.stored_len,
                file_len: entry.stored_len,
            });
        }
        let len = usize::try_from(span.stored_len).map_err(|_| FormatError::Overflow {
            what: what(),
            offset: span.stored_offset,
            len: span.stored_len,
        })?;
        buf.resize(len, 0);
        // Inside the section, which `parse` checked to be inside the file.
        self.src
            .read_into(self.section_file_offset(entry) + span.stored_offset, buf)
    }

    /// Reads a whole section into memory (for small sections: kernel, config).
    pub fn read_section(&self, kind: SectionKind) -> Result<Vec<u8>> {
        let entry = self
            .manifest
            .section(kind)
            .ok_or_else(|| FormatError::Section {
                kind,
                fault: "not present".into(),
            })?;
        let mut stream = self.open_section(entry)?;
        let cap = usize::try_from(entry.size).map_err(|_| FormatError::Section {
            kind,
            fault: "too large to hold in memory".into(),
        })?;
        // Reserve at most 64 MiB up front: the declared size is attacker input
        // until the stream has proven it.
        let mut out = Vec::with_capacity(cap.min(64 << 20));
        stream
            .read_to_end(&mut out)
            .map_err(|e| decompress_err(kind, e))?;
        stream.finish()?;
        Ok(out)
    }
}

fn decompress_err(kind: SectionKind, e: std::io::Error) -> FormatError {
    FormatError::Decompress {
        kind,
        fault: e.to_string(),
    }
}

/// Reads a section's stored bytes in chunks, hashing them on the way.
struct HashingReader<'a, R: ReadAt + ?Sized> {
    src: &'a R,
    offset: u64,
    remaining: u64,
    hasher: Sha256,
    buf: Vec<u8>,
    buf_pos: usize,
}

impl<R: ReadAt + ?Sized> Read for HashingReader<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.buf_pos == self.buf.len() {
            if self.remaining == 0 {
                return Ok(0);
            }
            let n = CHUNK.min(self.remaining);
            let chunk = self
                .src
                .read_bytes_at(self.offset, n)
                .map_err(std::io::Error::other)?;
            self.hasher.update(&chunk);
            self.buf.clear();
            self.buf.extend_from_slice(&chunk);
            self.buf_pos = 0;
            self.offset += n;
            self.remaining -= n;
        }
        let n = out.len().min(self.buf.len() - self.buf_pos);
        out[..n].copy_from_slice(&self.buf[self.buf_pos..self.buf_pos + n]);
        self.buf_pos += n;
        Ok(n)
    }
}

/// A framed section read frame by frame, each decoded whole
/// ([`decode_frame`]) and handed out from memory.
struct FramedReader<'a, R: ReadAt + ?Sized> {
    raw: HashingReader<'a, R>,
    kind: SectionKind,
    spans: Vec<FrameSpan>,
    next: usize,
    decoder: FrameDecoder,
    stored: Vec<u8>,
    /// Bytes of the current frame's content handed out so far.
    pos: usize,
}

impl<R: ReadAt + ?Sized> Read for FramedReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.decoder.content().len() {
            let Some(span) = self.spans.get(self.next) else {
                return Ok(0);
            };
            let len = usize::try_from(span.stored_len)
                .map_err(|_| std::io::Error::other("frame too large"))?;
            self.stored.clear();
            self.stored.resize(len, 0);
            self.raw.read_exact(&mut self.stored)?;
            self.decoder
                .decode(self.kind, span, &self.stored)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            self.pos = 0;
            self.next += 1;
        }
        let content = self.decoder.content();
        let n = buf.len().min(content.len() - self.pos);
        buf[..n].copy_from_slice(&content[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

enum Inner<'a, R: ReadAt + ?Sized> {
    Plain(HashingReader<'a, R>),
    Framed(Box<FramedReader<'a, R>>),
    Zstd(Box<zstd::stream::read::Decoder<'static, std::io::BufReader<HashingReader<'a, R>>>>),
}

/// Decompressed content of one section; see [`Artifact::open_section`].
pub struct SectionStream<'a, R: ReadAt + ?Sized> {
    inner: Inner<'a, R>,
    entry: SectionEntry,
    produced: u64,
}

impl<R: ReadAt + ?Sized> Read for SectionStream<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        // Never hand out more than the declared size: a bomb stops here.
        let room = self.entry.size - self.produced;
        let want = if room == 0 {
            // Probe one byte to detect output beyond the declared size.
            1.min(out.len())
        } else {
            usize::try_from(room).unwrap_or(usize::MAX).min(out.len())
        };
        let n = match &mut self.inner {
            Inner::Plain(r) => r.read(&mut out[..want])?,
            Inner::Framed(r) => r.read(&mut out[..want])?,
            Inner::Zstd(r) => r.read(&mut out[..want])?,
        };
        if room == 0 && n > 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "decompressed output exceeds the declared size of {} bytes",
                    self.entry.size
                ),
            ));
        }
        self.produced += n as u64;
        Ok(n)
    }
}

impl<R: ReadAt + ?Sized> SectionStream<'_, R> {
    /// Confirms the whole section was consumed, its size is the declared one,
    /// and its stored bytes hash to the manifest's value.
    pub fn finish(self) -> Result<()> {
        let kind = self.entry.kind;
        if self.produced != self.entry.size {
            return Err(FormatError::Decompress {
                kind,
                fault: format!(
                    "produced {} bytes, the manifest declares {}",
                    self.produced, self.entry.size
                ),
            });
        }
        // Bytes the BufReader fetched past the end of the frame were hashed
        // already but never reach `raw` again: count them as trailing too.
        let (mut raw, buffered) = match self.inner {
            Inner::Plain(r) => (r, 0),
            Inner::Framed(r) => (r.raw, 0),
            Inner::Zstd(d) => {
                let buf = d.finish();
                let buffered = buf.buffer().len();
                (buf.into_inner(), buffered)
            }
        };
        // Hash whatever the decoder did not need (trailing bytes after the frame
        // are an error: the stored bytes must be exactly one frame).
        let mut rest = Vec::new();
        raw.read_to_end(&mut rest)
            .map_err(|e| FormatError::Decompress {
                kind,
                fault: e.to_string(),
            })?;
        let trailing = buffered + rest.len();
        let actual = Sha256Digest::from(raw.hasher.finalize());
        if actual != self.entry.sha256 {
            return Err(FormatError::HashMismatch {
                kind,
                expected: self.entry.sha256,
                actual,
            });
        }
        if trailing != 0 {
            return Err(FormatError::Decompress {
                kind,
                fault: format!("{trailing} stored bytes follow the compressed frame"),
            });
        }
        Ok(())
    }
}
