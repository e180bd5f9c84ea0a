//! Section building: the kernel and the root filesystem compressed into
//! independent zstd frames (so a first start decompresses them on every
//! core), hashed while they are written.

use std::io::Write;

use anyhow::Result;
use sha2::{Digest as _, Sha256};
use smolvm_format::{
    plan_sections_hashed, Compression, FramedEncoder, Frames, MachineConfig, SectionData,
    SectionEntry, SectionKind, Sha256Digest,
};
use smolvm_rootfs::tree::Tree;

/// A `Vec` sink that hashes what it is given. Under a multithreaded zstd
/// encoder the thread that receives the output mostly waits for the
/// workers, so hashing there costs no wall time.
struct HashingVec {
    bytes: Vec<u8>,
    hasher: Sha256,
}

impl HashingVec {
    fn with_capacity(n: usize) -> Self {
        HashingVec {
            bytes: Vec::with_capacity(n),
            hasher: Sha256::new(),
        }
    }

    fn finish(self) -> (Vec<u8>, Sha256Digest) {
        (self.bytes, self.hasher.finalize().into())
    }
}

impl Write for HashingVec {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.hasher.update(buf);
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A section's stored bytes as the compressor left them.
pub struct Compressed {
    pub stored: Vec<u8>,
    pub sha256: Sha256Digest,
    /// Content bytes.
    pub size: u64,
    /// The frame table; `None` when the section is a single frame, which
    /// is then exactly what an unframed zstd section is.
    pub frames: Option<Frames>,
}

/// A framed encoder into a hashing buffer sized for `hint` content bytes.
fn encoder(hint: u64, level: i32) -> Result<FramedEncoder<HashingVec>> {
    // Room for a 2:1 ratio up front: growing a Vec of tens of MB by
    // doubling copies it again and again. Untouched capacity costs
    // address space only.
    let capacity = usize::try_from(hint / 2)
        .unwrap_or(usize::MAX)
        .clamp(1 << 20, 1 << 30);
    Ok(FramedEncoder::new(
        HashingVec::with_capacity(capacity),
        level,
        worker_threads(),
    )?)
}

fn finish(enc: FramedEncoder<HashingVec>) -> Result<Compressed> {
    let size = enc.content_len();
    let (sink, frames) = enc.finish()?;
    let (stored, sha256) = sink.finish();
    Ok(Compressed {
        stored,
        sha256,
        size,
        frames: (frames.stored_lens.len() > 1).then_some(frames),
    })
}

/// `data` stored as it is (the icon, which is already compressed), hashed.
pub fn stored(data: &[u8]) -> Compressed {
    Compressed {
        stored: data.to_vec(),
        sha256: Sha256Digest::of(data),
        size: data.len() as u64,
        frames: None,
    }
}

/// Compresses `data` into independent frames (so a first start can
/// decompress them on every core) and hashes the result.
pub fn compress(data: &[u8], level: i32) -> Result<Compressed> {
    let mut enc = encoder(data.len() as u64, level)?;
    enc.write_all(data)?;
    finish(enc)
}

fn worker_threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// The root filesystem as a compressed EROFS image; `progress` hears the
/// content bytes written so far.
pub fn rootfs(
    tree: &Tree,
    level: i32,
    opts: &smolvm_rootfs::erofs::ErofsOptions,
    progress: &dyn Fn(u64),
) -> Result<Compressed> {
    let mut enc = encoder(tree.content_len(), level)?;
    smolvm_rootfs::erofs::write_image(tree, &mut enc, opts, progress)?;
    finish(enc)
}

/// An artifact's sections in table order, and the table that describes them.
pub struct Sections {
    pub data: Vec<SectionData>,
    pub entries: Vec<SectionEntry>,
}

/// Lays out config, kernel and rootfs (in that order: the config is read
/// first and is small), then the attestations (SBOM, provenance: read
/// only by `pack inspect` and `pack verify --source`), with their hashes
/// and frame tables.
pub fn lay_out(
    config: &MachineConfig,
    kernel: Compressed,
    rootfs: Compressed,
    attestations: Vec<(SectionKind, Compressed)>,
) -> Result<Sections> {
    let config_json = config.to_canonical_json();
    let config_sha256 = Sha256Digest::of(&config_json);
    let data = vec![
        SectionData {
            kind: SectionKind::Config,
            compression: Compression::None,
            size: config_json.len() as u64,
            stored: config_json,
        },
        SectionData {
            kind: SectionKind::Kernel,
            compression: Compression::Zstd,
            size: kernel.size,
            stored: kernel.stored,
        },
        SectionData {
            kind: SectionKind::Rootfs,
            compression: Compression::Zstd,
            size: rootfs.size,
            stored: rootfs.stored,
        },
    ];
    let mut data = data;
    let mut hashes = vec![config_sha256, kernel.sha256, rootfs.sha256];
    let mut frames = vec![None, kernel.frames, rootfs.frames];
    for (kind, a) in attestations {
        data.push(SectionData {
            kind,
            // A PNG does not shrink, and the stub copies it on install
            // without a decompressor: stored as is ([`stored`]).
            compression: if kind == SectionKind::Icon {
                Compression::None
            } else {
                Compression::Zstd
            },
            size: a.size,
            stored: a.stored,
        });
        hashes.push(a.sha256);
        frames.push(a.frames);
    }
    let mut entries = plan_sections_hashed(&data, &hashes)?;
    for (entry, f) in entries.iter_mut().zip(frames) {
        entry.frames = f;
    }
    Ok(Sections { data, entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash computed while compressing is the hash of the stored
    /// bytes, and the table says what each section holds.
    #[test]
    fn laid_out_sections_carry_the_hash_of_their_stored_bytes() {
        let kernel = compress(&[0x90; 70_000], 3).unwrap();
        let rootfs = compress(b"root", 3).unwrap();
        let s = lay_out(&MachineConfig::default(), kernel, rootfs, Vec::new()).unwrap();
        let kinds: Vec<SectionKind> = s.entries.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                SectionKind::Config,
                SectionKind::Kernel,
                SectionKind::Rootfs
            ]
        );
        for (d, e) in s.data.iter().zip(&s.entries) {
            assert_eq!(e.sha256, Sha256Digest::of(&d.stored), "{}", e.kind);
            assert_eq!(e.stored_len, d.stored.len() as u64);
        }
        assert_eq!(s.entries[1].size, 70_000);
        assert_eq!(
            zstd::decode_all(s.data[1].stored.as_slice()).unwrap(),
            vec![0x90; 70_000]
        );
    }
}
