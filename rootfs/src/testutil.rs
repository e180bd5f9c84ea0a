//! Layer tars built by hand in tests (no fixtures: every byte is written
//! here). Shared with the packer's image tests through the `testutil`
//! feature.

pub struct Entry {
    path: String,
    kind: tar::EntryType,
    data: Vec<u8>,
    link: Option<String>,
    mode: u32,
    uid: u64,
    gid: u64,
    dev: (u32, u32),
}

fn entry(path: &str, kind: tar::EntryType) -> Entry {
    Entry {
        path: path.into(),
        kind,
        data: Vec::new(),
        link: None,
        mode: 0o644,
        uid: 0,
        gid: 0,
        dev: (0, 0),
    }
}

pub fn file(path: &str, data: &[u8]) -> Entry {
    Entry {
        data: data.to_vec(),
        ..entry(path, tar::EntryType::Regular)
    }
}

pub fn dir(path: &str) -> Entry {
    Entry {
        mode: 0o755,
        ..entry(path, tar::EntryType::Directory)
    }
}

pub fn symlink(path: &str, target: &str) -> Entry {
    Entry {
        link: Some(target.into()),
        mode: 0o777,
        ..entry(path, tar::EntryType::Symlink)
    }
}

pub fn hardlink(path: &str, target: &str) -> Entry {
    Entry {
        link: Some(target.into()),
        ..entry(path, tar::EntryType::Link)
    }
}

pub fn device(path: &str, kind: tar::EntryType, major: u32, minor: u32) -> Entry {
    Entry {
        dev: (major, minor),
        mode: 0o666,
        ..entry(path, kind)
    }
}

pub fn with_mode(e: Entry, mode: u32) -> Entry {
    Entry { mode, ..e }
}

pub fn owned(e: Entry, uid: u64, gid: u64, mode: u32) -> Entry {
    Entry {
        uid,
        gid,
        mode,
        ..e
    }
}

/// A tar of `entries`, in the order given. Names and link targets are
/// written into the header bytes directly, so `..` and absolute paths go in
/// unchanged (the tar crate's setters would refuse them).
pub fn tar(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(e.kind);
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(1);
        h.set_size(e.data.len() as u64);
        if matches!(e.kind, tar::EntryType::Char | tar::EntryType::Block) {
            h.set_device_major(e.dev.0).unwrap();
            h.set_device_minor(e.dev.1).unwrap();
        }
        let name = if e.kind == tar::EntryType::Directory {
            format!("{}/", e.path)
        } else {
            e.path.clone()
        };
        let raw = h.as_old_mut();
        assert!(name.len() < 100, "test names fit the old header");
        raw.name.fill(0);
        raw.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = &e.link {
            raw.linkname.fill(0);
            raw.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_cksum();
        b.append(&h, &e.data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

/// A one-entry tar whose name is exactly `name`.
pub fn raw_name_tar(name: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_entry_type(tar::EntryType::Regular);
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_cksum();
    b.append(&h, &b"x"[..]).unwrap();
    b.into_inner().unwrap()
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}
