//! Content digests (`sha256:<64 hex>`) and readers that compute them.

use std::io::Read;

use sha2::{Digest as _, Sha256};

/// A SHA-256 content digest. Other algorithms are refused: every image
/// tool in use writes sha256, and a digest we cannot check is no check.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parses `sha256:<64 lowercase hex>`.
    pub fn parse(s: &str) -> Result<Digest, String> {
        let Some((alg, hex)) = s.split_once(':') else {
            return Err(format!("digest {s:?} is not ALGORITHM:HEX"));
        };
        if alg != "sha256" {
            return Err(format!(
                "digest {s:?} uses {alg:?}; only sha256 digests are supported"
            ));
        }
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(format!(
                "digest {s:?} is not sha256: followed by 64 lowercase hex digits"
            ));
        }
        Ok(Digest {
            hex: hex.to_string(),
        })
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest {
            hex: hex::encode(Sha256::digest(bytes)),
        }
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Path of the blob in an OCI layout (and in the blob cache).
    pub fn blob_path(&self) -> String {
        format!("blobs/sha256/{}", self.hex)
    }
}

impl From<&Digest> for smolvm_format::ImageDigest {
    /// The config's form of a digest already checked by [`Digest::parse`].
    fn from(d: &Digest) -> Self {
        smolvm_format::ImageDigest(d.hex.parse().expect("Digest holds 64 lowercase hex digits"))
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

/// Hashes and counts what passes through; fails once more than `limit`
/// bytes were read (a blob larger than its descriptor says, or a bomb).
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    limit: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R, limit: u64) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
            limit,
        }
    }

    /// Reads the rest of the stream (so trailing bytes are hashed too) and
    /// returns the digest and the byte count.
    pub fn finish(mut self) -> std::io::Result<(Digest, u64)> {
        std::io::copy(&mut self, &mut std::io::sink())?;
        Ok((
            Digest {
                hex: hex::encode(self.hasher.finalize()),
            },
            self.count,
        ))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        if self.count > self.limit {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("more than {} bytes", self.limit),
            ));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_only_sha256_hex() {
        let good = format!("sha256:{}", "0a".repeat(32));
        assert_eq!(Digest::parse(&good).unwrap().to_string(), good);
        for bad in [
            "sha256:abc".to_string(),
            format!("sha512:{}", "0".repeat(128)),
            format!("sha256:{}", "A".repeat(64)),
            "0".repeat(64),
        ] {
            assert!(Digest::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hashing_reader_matches_and_caps() {
        let data = b"hello world";
        let (d, n) = HashingReader::new(&data[..], 100).finish().unwrap();
        assert_eq!(d, Digest::of(data));
        assert_eq!(n, 11);
        assert!(HashingReader::new(&data[..], 5).finish().is_err());
    }
}
