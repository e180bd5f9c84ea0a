//! What a tar entry's PAX records say beyond its header: extended
//! attributes (`SCHILY.xattr.NAME`), an mtime with its fraction and sign,
//! and the GNU sparse formats 0.0, 0.1 and 1.0 (the file's own name and
//! size, and the map of its data segments).
//!
//! The old GNU sparse entries (type `S`, `tar -S --format=gnu`) need
//! nothing here: the tar crate expands them itself.
//!
//! ```text
//! sparse 0.0:  GNU.sparse.size=REAL, then GNU.sparse.offset=O / GNU.sparse.numbytes=N
//!              pairs in record order; the entry's data is the segments back to back
//! sparse 0.1:  GNU.sparse.size=REAL, GNU.sparse.map=O,N,O,N,...
//! sparse 1.0:  GNU.sparse.major=1 minor=0, GNU.sparse.name, GNU.sparse.realsize=REAL;
//!              the data starts with the map as decimal lines (count, then O and N
//!              for each segment), padded with NULs to a 512-byte boundary
//! ```

use std::io::Read;

/// Segments in one sparse map: GNU tar writes one per data run, so a
/// million means a hostile archive, and each costs 16 bytes of memory.
pub const MAX_SPARSE_SEGMENTS: u64 = 1 << 20;

/// A 1.0 map line: a u64 in decimal is at most 20 digits, then `\n`.
const MAX_MAP_LINE: usize = 21;

/// The PAX records of one entry, in order (a key may repeat: sparse 0.0).
#[derive(Debug, Default)]
pub struct PaxRecords {
    records: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A sparse file: its size and where its data segments lie.
#[derive(Debug)]
pub struct SparseMap {
    pub real_size: u64,
    /// (offset, length) in ascending order, none overlapping.
    segments: Vec<(u64, u64)>,
}

impl PaxRecords {
    /// The records of `entry`'s PAX header (none without one). A record
    /// that cannot be framed is an error: what follows it could be read
    /// differently by another tool.
    pub fn read<R: Read>(entry: &mut tar::Entry<'_, R>) -> std::io::Result<PaxRecords> {
        let mut records = Vec::new();
        if let Some(exts) = entry.pax_extensions()? {
            for ext in exts {
                let ext = ext?;
                records.push((ext.key_bytes().to_vec(), ext.value_bytes().to_vec()));
            }
        }
        Ok(PaxRecords { records })
    }

    /// The last value of `key` (a later record overrides an earlier one).
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.records
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }

    /// Extended attributes from `SCHILY.xattr.NAME` records (GNU tar,
    /// bsdtar and image builders write them this way).
    pub fn xattrs(&self) -> std::collections::BTreeMap<String, Vec<u8>> {
        self.records
            .iter()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix(b"SCHILY.xattr.")?;
                Some((String::from_utf8_lossy(name).into_owned(), v.clone()))
            })
            .collect()
    }

    /// The name of a PAX sparse file (format 1.0 keeps it here).
    pub fn sparse_name(&self) -> Option<&[u8]> {
        self.get(b"GNU.sparse.name")
    }

    fn is_sparse(&self) -> bool {
        self.records
            .iter()
            .any(|(k, _)| k.starts_with(b"GNU.sparse."))
    }

    /// The sparse map of a PAX sparse file, `None` for any other entry.
    /// For format 1.0 the map is read off the front of `entry`'s data,
    /// which then holds only the segments. `stored` is the entry's size.
    pub fn sparse<R: Read>(&self, entry: &mut R, stored: u64) -> Result<Option<SparseMap>, String> {
        if !self.is_sparse() {
            return Ok(None);
        }
        let number = |key: &[u8]| -> Result<Option<u64>, String> {
            self.get(key)
                .map(|v| {
                    parse_u64(v).ok_or_else(|| {
                        format!(
                            "PAX {} {:?} is not a number",
                            String::from_utf8_lossy(key),
                            String::from_utf8_lossy(v)
                        )
                    })
                })
                .transpose()
        };
        let version = (number(b"GNU.sparse.major")?, number(b"GNU.sparse.minor")?);
        let (real_size, segments, data_len) = match version {
            (Some(1), Some(0)) => {
                let real = number(b"GNU.sparse.realsize")?
                    .ok_or("a sparse 1.0 entry without GNU.sparse.realsize")?;
                let (segments, map_len) = read_map_1_0(entry, stored)?;
                (real, segments, stored - map_len)
            }
            (None, None) => {
                let real = number(b"GNU.sparse.size")?
                    .or(number(b"GNU.sparse.realsize")?)
                    .ok_or("a sparse entry without GNU.sparse.size")?;
                let segments = match self.get(b"GNU.sparse.map") {
                    Some(map) => parse_map_0_1(map)?,
                    None => self.map_0_0()?,
                };
                (real, segments, stored)
            }
            (major, minor) => {
                return Err(format!(
                    "GNU sparse format {}.{} is not supported (0.0, 0.1 and 1.0 are)",
                    major.map_or("?".into(), |m| m.to_string()),
                    minor.map_or("?".into(), |m| m.to_string())
                ))
            }
        };
        let map = SparseMap {
            real_size,
            segments,
        };
        map.check(data_len)?;
        Ok(Some(map))
    }

    /// Format 0.0: GNU.sparse.offset / GNU.sparse.numbytes pairs in order.
    fn map_0_0(&self) -> Result<Vec<(u64, u64)>, String> {
        let mut segments = Vec::new();
        let mut offset = None;
        for (k, v) in &self.records {
            let key = k.as_slice();
            if key != b"GNU.sparse.offset" && key != b"GNU.sparse.numbytes" {
                continue;
            }
            let n = parse_u64(v).ok_or_else(|| {
                format!(
                    "PAX {} {:?} is not a number",
                    String::from_utf8_lossy(key),
                    String::from_utf8_lossy(v)
                )
            })?;
            match (key, offset.take()) {
                (b"GNU.sparse.offset", None) => offset = Some(n),
                (b"GNU.sparse.numbytes", Some(o)) => segments.push((o, n)),
                _ => return Err("GNU.sparse.offset and numbytes records do not pair".into()),
            }
            if segments.len() as u64 > MAX_SPARSE_SEGMENTS {
                return Err(format!(
                    "the sparse map has more than {MAX_SPARSE_SEGMENTS} segments"
                ));
            }
        }
        if offset.is_some() {
            return Err("a GNU.sparse.offset without its numbytes".into());
        }
        Ok(segments)
    }
}

impl SparseMap {
    /// Segments ascend without overlap, end within the file, and hold
    /// exactly the `data_len` bytes the entry stores.
    fn check(&self, data_len: u64) -> Result<(), String> {
        let mut end = 0u64;
        let mut total = 0u64;
        for &(offset, len) in &self.segments {
            if offset < end {
                return Err(format!(
                    "sparse segment at {offset} overlaps or precedes the one before"
                ));
            }
            end = offset
                .checked_add(len)
                .filter(|e| *e <= self.real_size)
                .ok_or_else(|| {
                    format!(
                        "sparse segment {offset}+{len} runs past the file's {} bytes",
                        self.real_size
                    )
                })?;
            total = total.checked_add(len).ok_or("sparse segments overflow")?;
        }
        if total != data_len {
            return Err(format!(
                "the sparse map lists {total} bytes of data but the entry stores {data_len}"
            ));
        }
        Ok(())
    }

    /// The whole file: zeros in the holes, the entry's data in the segments.
    pub fn reader<R: Read>(self, data: R) -> SparseReader<R> {
        SparseReader {
            data,
            map: self,
            next: 0,
            pos: 0,
        }
    }
}

/// Reads a sparse file back to its full length; see [`SparseMap::reader`].
pub struct SparseReader<R> {
    data: R,
    map: SparseMap,
    /// Index of the first segment not wholly read.
    next: usize,
    pos: u64,
}

impl<R: Read> Read for SparseReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.pos >= self.map.real_size || buf.is_empty() {
                return Ok(0);
            }
            let (offset, len) = self
                .map
                .segments
                .get(self.next)
                .copied()
                .unwrap_or((self.map.real_size, 0));
            let want = |upto: u64| {
                usize::try_from(upto - self.pos).map_or(buf.len(), |n| n.min(buf.len()))
            };
            if self.pos < offset {
                let n = want(offset);
                buf[..n].fill(0);
                self.pos += n as u64;
                return Ok(n);
            }
            let end = offset + len; // checked in SparseMap::check
            if self.pos >= end {
                self.next += 1;
                continue;
            }
            let n = want(end);
            let got = self.data.read(&mut buf[..n])?;
            if got == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "the archive ends inside a sparse segment at byte {}",
                        self.pos
                    ),
                ));
            }
            self.pos += got as u64;
            return Ok(got);
        }
    }
}

/// Format 1.0's map at the front of the data: returns the segments and the
/// bytes the map took (padded to 512).
fn read_map_1_0<R: Read>(data: &mut R, stored: u64) -> Result<(Vec<(u64, u64)>, u64), String> {
    let mut consumed = 0u64;
    let mut next_number = |consumed: &mut u64| -> Result<u64, String> {
        let mut line = Vec::with_capacity(MAX_MAP_LINE);
        loop {
            let mut b = [0u8];
            if *consumed >= stored {
                return Err("the sparse map runs past the entry's data".into());
            }
            data.read_exact(&mut b)
                .map_err(|e| format!("reading the sparse map: {e}"))?;
            *consumed += 1;
            if b[0] == b'\n' {
                break;
            }
            line.push(b[0]);
            if line.len() > MAX_MAP_LINE {
                return Err("a sparse map line is not a number".into());
            }
        }
        parse_u64(&line).ok_or_else(|| {
            format!(
                "sparse map line {:?} is not a number",
                String::from_utf8_lossy(&line)
            )
        })
    };
    let count = next_number(&mut consumed)?;
    if count > MAX_SPARSE_SEGMENTS {
        return Err(format!(
            "the sparse map has {count} segments; at most {MAX_SPARSE_SEGMENTS} are accepted"
        ));
    }
    let mut segments = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    for _ in 0..count {
        let offset = next_number(&mut consumed)?;
        let len = next_number(&mut consumed)?;
        segments.push((offset, len));
    }
    let padded = consumed.next_multiple_of(512);
    if padded > stored {
        return Err("the sparse map's padding runs past the entry's data".into());
    }
    let mut pad = vec![0u8; usize::try_from(padded - consumed).unwrap_or(0)];
    data.read_exact(&mut pad)
        .map_err(|e| format!("reading the sparse map: {e}"))?;
    Ok((segments, padded))
}

/// Format 0.1's `GNU.sparse.map`: `offset,length,offset,length,...`.
fn parse_map_0_1(map: &[u8]) -> Result<Vec<(u64, u64)>, String> {
    if map.is_empty() {
        return Ok(Vec::new());
    }
    let numbers: Vec<u64> = map
        .split(|b| *b == b',')
        .map(|n| parse_u64(n).ok_or_else(|| "GNU.sparse.map holds a non-number".to_string()))
        .collect::<Result<_, _>>()?;
    if !numbers.len().is_multiple_of(2) {
        return Err("GNU.sparse.map has an odd count of numbers".into());
    }
    if numbers.len() as u64 / 2 > MAX_SPARSE_SEGMENTS {
        return Err(format!(
            "the sparse map has more than {MAX_SPARSE_SEGMENTS} segments"
        ));
    }
    Ok(numbers.chunks_exact(2).map(|p| (p[0], p[1])).collect())
}

/// A decimal u64: digits only, no sign, no spaces.
fn parse_u64(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// A PAX time (`mtime`): `[-]SECONDS[.FRACTION]`, as seconds and
/// nanoseconds with the nanoseconds always counted forward (-1.5 is
/// second -2 plus 500,000,000 ns). Digits past nanoseconds are dropped.
pub fn parse_pax_time(v: &[u8]) -> Option<(i64, u32)> {
    let (negative, v) = match v.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    let (whole, fraction) = match v.iter().position(|b| *b == b'.') {
        Some(dot) => (&v[..dot], &v[dot + 1..]),
        None => (v, &b""[..]),
    };
    if !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let secs = i64::try_from(parse_u64(whole)?).ok()?;
    let mut nsec: u32 = 0;
    for i in 0..9 {
        nsec = nsec * 10 + fraction.get(i).map_or(0, |d| u32::from(d - b'0'));
    }
    if !negative {
        return Some((secs, nsec));
    }
    if nsec == 0 {
        Some((secs.checked_neg()?, 0))
    } else {
        Some((secs.checked_neg()?.checked_sub(1)?, 1_000_000_000 - nsec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times_keep_sign_and_nanoseconds() {
        assert_eq!(parse_pax_time(b"1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(parse_pax_time(b"1.5"), Some((1, 500_000_000)));
        assert_eq!(parse_pax_time(b"1.123456789999"), Some((1, 123_456_789)));
        assert_eq!(parse_pax_time(b"-1.5"), Some((-2, 500_000_000)));
        assert_eq!(parse_pax_time(b"-86400"), Some((-86400, 0)));
        for bad in [&b""[..], b"-", b"1.x", b"x", b"1e9", b"+1", b"1.2.3"] {
            assert_eq!(parse_pax_time(bad), None, "{bad:?}");
        }
    }

    /// Records of the tar crate's PAX iterator as seen through the public
    /// API: values with newlines (vendor/patches/tar) stay whole.
    #[test]
    fn pax_values_with_newlines_and_binary_bytes_stay_whole() {
        let cap =
            b"\x01\x00\x00\x02\x02\x00\x0a\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
        let mut body = Vec::new();
        body.extend_from_slice(b"16 linkpath=a\nb\n");
        body.extend_from_slice(b"57 SCHILY.xattr.security.capability=");
        body.extend_from_slice(cap);
        body.extend_from_slice(b"\n");
        // A value holding what looks like a record stays one value.
        body.extend_from_slice(b"17 path=x\n22 l=y\n");
        let exts: Vec<_> = tar::PaxExtensions::new(&body)
            .map(|e| e.map(|e| (e.key_bytes().to_vec(), e.value_bytes().to_vec())))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(exts.len(), 3, "{exts:?}");
        assert_eq!(exts[0], (b"linkpath".to_vec(), b"a\nb".to_vec()));
        assert_eq!(exts[1].1, cap.to_vec());
        assert_eq!(exts[2], (b"path".to_vec(), b"x\n22 l=y".to_vec()));
        // Lengths that cannot frame a record are errors and end the walk.
        for bad in [
            &b"99 path=x\n"[..],
            b"5 path=x\n",
            b"x path=x\n",
            b"9 pathx\n\n",
            b"+9 path=x\n",
        ] {
            let mut it = tar::PaxExtensions::new(bad);
            assert!(it.next().unwrap().is_err(), "{bad:?}");
            assert!(it.next().is_none(), "{bad:?}");
        }
    }

    fn records(r: &[(&str, &str)]) -> PaxRecords {
        PaxRecords {
            records: r
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect(),
        }
    }

    fn expand(map: SparseMap, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        map.reader(data).read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn sparse_maps_of_every_pax_format_expand() {
        let want = |len: usize| {
            let mut v = vec![0u8; len];
            v[3..5].copy_from_slice(b"ab");
            v[10..11].copy_from_slice(b"c");
            v
        };
        let p = records(&[
            ("GNU.sparse.size", "16"),
            ("GNU.sparse.offset", "3"),
            ("GNU.sparse.numbytes", "2"),
            ("GNU.sparse.offset", "10"),
            ("GNU.sparse.numbytes", "1"),
        ]);
        let map = p.sparse(&mut &b""[..], 3).unwrap().unwrap();
        assert_eq!(expand(map, b"abc"), want(16));
        let p = records(&[("GNU.sparse.size", "16"), ("GNU.sparse.map", "3,2,10,1")]);
        let map = p.sparse(&mut &b""[..], 3).unwrap().unwrap();
        assert_eq!(expand(map, b"abc"), want(16));
        let p = records(&[
            ("GNU.sparse.major", "1"),
            ("GNU.sparse.minor", "0"),
            ("GNU.sparse.realsize", "16"),
        ]);
        let mut data = b"2\n3\n2\n10\n1\n".to_vec();
        data.resize(512, 0);
        data.extend_from_slice(b"abc");
        let mut r = &data[..];
        let map = p.sparse(&mut r, data.len() as u64).unwrap().unwrap();
        assert_eq!(expand(map, r), want(16));
        // A file that ends in a hole.
        let p = records(&[
            ("GNU.sparse.size", "1000"),
            ("GNU.sparse.map", "0,1,1000,0"),
        ]);
        let map = p.sparse(&mut &b""[..], 1).unwrap().unwrap();
        let out = expand(map, b"x");
        assert_eq!((out.len(), out[0], out[999]), (1000, b'x', 0));
    }

    #[test]
    fn bad_sparse_maps_are_refused() {
        for (r, stored) in [
            (
                vec![("GNU.sparse.size", "16"), ("GNU.sparse.map", "3,2,4,1")],
                3,
            ),
            (
                vec![("GNU.sparse.size", "16"), ("GNU.sparse.map", "3,2,15,2")],
                4,
            ),
            (
                vec![("GNU.sparse.size", "16"), ("GNU.sparse.map", "3,2")],
                3,
            ),
            (
                vec![("GNU.sparse.size", "16"), ("GNU.sparse.map", "3,2,1")],
                3,
            ),
            (vec![("GNU.sparse.map", "3,2")], 2),
            (
                vec![
                    ("GNU.sparse.size", "16"),
                    ("GNU.sparse.numbytes", "2"),
                    ("GNU.sparse.offset", "3"),
                ],
                2,
            ),
            (
                vec![
                    ("GNU.sparse.major", "2"),
                    ("GNU.sparse.minor", "0"),
                    ("GNU.sparse.realsize", "1"),
                ],
                0,
            ),
            (
                vec![
                    ("GNU.sparse.size", "18446744073709551615"),
                    ("GNU.sparse.map", "18446744073709551615,1"),
                ],
                1,
            ),
        ] {
            let p = records(&r);
            assert!(p.sparse(&mut &b""[..], stored).is_err(), "{r:?}");
        }
        // 1.0: a map longer than the data, a count over the cap, a non-number.
        let p = records(&[
            ("GNU.sparse.major", "1"),
            ("GNU.sparse.minor", "0"),
            ("GNU.sparse.realsize", "16"),
        ]);
        for data in [&b"1\n3\n"[..], b"99999999\n", b"1\nx\n1\n"] {
            let mut padded = data.to_vec();
            padded.resize(512, 0);
            let e = p.sparse(&mut &padded[..], data.len() as u64).unwrap_err();
            assert!(!e.is_empty());
            let e = p.sparse(&mut &padded[..], 512).unwrap_err();
            assert!(!e.is_empty());
        }
    }
}
