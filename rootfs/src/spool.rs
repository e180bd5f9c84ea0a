//! The private directory that file contents too large to keep in memory
//! are spooled to while a tree is read.
//!
//! Its own module because the flattener fills a spool and the
//! [`Tree`](crate::tree::Tree) it builds keeps it alive: the tree must not
//! depend on the flattener, and writing files is no part of the tree model.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

/// The private directory spooled file contents live in; removed when the
/// last tree holding it is dropped.
#[derive(Debug)]
pub struct Spool {
    dir: tempfile::TempDir,
    files: u64,
}

impl Spool {
    pub(crate) fn new() -> std::io::Result<Spool> {
        Ok(Spool {
            dir: tempfile::Builder::new().prefix("smolvm-spool-").tempdir()?,
            files: 0,
        })
    }

    /// Copies exactly `size` bytes of `r` into a new file, leaving zero
    /// blocks as holes, and returns its path.
    pub(crate) fn store(&mut self, r: &mut impl Read, size: u64) -> std::io::Result<PathBuf> {
        const CHUNK: usize = 256 << 10;
        self.files += 1;
        let path = self.dir.path().join(self.files.to_string());
        let mut file = std::fs::File::create_new(&path)?;
        let mut buf = vec![0u8; CHUNK];
        let mut copied: u64 = 0;
        let mut limited = r.take(size);
        loop {
            let n = match limited.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf[..n].iter().all(|b| *b == 0) {
                file.seek(SeekFrom::Current(n as i64))?;
            } else {
                file.write_all(&buf[..n])?;
            }
            copied += n as u64;
        }
        if copied != size {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the archive ends after {copied} of the entry's {size} bytes"),
            ));
        }
        // A trailing hole is only a seek: the length makes it part of the file.
        file.set_len(size)?;
        Ok(path)
    }
}
