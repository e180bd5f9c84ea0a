//! Extended attributes stored inline after their inode: which names EROFS
//! can hold and how the body is encoded.
//!
//! ```text
//! | ibody header (12, zero: no shared xattrs) | entry | entry | ...
//! entry: name_len (u8), name_index (u8), value_size (u16), name suffix,
//!        value, zero padding to 4 bytes
//! ```

use std::collections::BTreeMap;

use super::layout::entry_error;
use super::ondisk::{
    xattr_icount, xattr_name_index, InodeExtended, XattrEntry, BLOCK_BYTES, XATTR_IBODY_HEADER_SIZE,
};
use crate::RootfsError;

/// Largest inline xattr body (header included) of one inode: the inode
/// and its xattrs always fit one block, so no reader has to follow them
/// across a block boundary. ext4 caps an inode's xattrs at one 4 KiB block
/// too, so a tree read from a real file system fits.
pub const XATTR_IBODY_MAX: usize = BLOCK_BYTES - InodeExtended::SIZE;

/// The inline xattr body of the entry at `path`, attributes in name
/// order; empty when it has none. Errors name the entry and attribute.
pub fn encode_ibody(
    path: &str,
    xattrs: &BTreeMap<String, Vec<u8>>,
) -> Result<Vec<u8>, RootfsError> {
    if xattrs.is_empty() {
        return Ok(Vec::new());
    }
    let mut body = vec![0u8; XATTR_IBODY_HEADER_SIZE];
    for (name, value) in xattrs {
        let bad = |fault: String| entry_error(path, format!("xattr {name:?}: {fault}"));
        let (index, suffix) = xattr_name_index(name).ok_or_else(|| {
            bad(
                "namespace not storable in EROFS (user., trusted., security., \
                 system.posix_acl_access/default)"
                    .into(),
            )
        })?;
        // "user." names a namespace, not an attribute; the ACL names are
        // whole names, stored with an empty suffix.
        if suffix.is_empty() && name.ends_with('.') {
            return Err(bad("name is only a namespace prefix".into()));
        }
        let name_len = u8::try_from(suffix.len()).map_err(|_| {
            bad(format!(
                "name is {} bytes after the prefix; at most 255",
                suffix.len()
            ))
        })?;
        let value_size = u16::try_from(value.len())
            .map_err(|_| bad(format!("value is {} bytes; at most 65535", value.len())))?;
        body.extend_from_slice(
            &XattrEntry {
                name_len,
                name_index: index,
                value_size,
            }
            .encode(),
        );
        body.extend_from_slice(suffix.as_bytes());
        body.extend_from_slice(value);
        body.resize(body.len().next_multiple_of(4), 0);
        if body.len() > XATTR_IBODY_MAX {
            return Err(bad(format!(
                "the xattrs up to this one take {} bytes; at most {XATTR_IBODY_MAX} fit \
                 one block with the inode",
                body.len()
            )));
        }
    }
    debug_assert!(xattr_icount(body.len()).is_some(), "capped above");
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(pairs: &[(&str, &[u8])]) -> Result<Vec<u8>, String> {
        let map = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect();
        encode_ibody("some/file", &map).map_err(|e| e.to_string())
    }

    #[test]
    fn entries_carry_name_index_suffix_and_padding() {
        let b = body(&[
            ("security.capability", &[1, 2, 3]),
            ("system.posix_acl_access", &[9; 4]),
        ])
        .unwrap();
        // Header, then 4 + 10 + 3 -> 20, then 4 + 0 + 4 -> 8 (name order).
        assert_eq!(b.len(), 12 + 20 + 8);
        assert!(b[..12].iter().all(|&x| x == 0));
        assert_eq!(&b[12..16], &[10, 6, 3, 0]);
        assert_eq!(&b[16..26], b"capability");
        assert_eq!(&b[26..29], &[1, 2, 3]);
        assert_eq!(&b[32..36], &[0, 2, 4, 0]);
        assert_eq!(xattr_icount(b.len()), Some(8));
        assert_eq!(body(&[]).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn names_and_sizes_erofs_cannot_store_are_refused() {
        for (pairs, want) in [
            (
                vec![("system.nfs4_acl", &b""[..])],
                "namespace not storable",
            ),
            (vec![("os2.x", &b""[..])], "namespace not storable"),
            (vec![("user.", &b"v"[..])], "only a namespace prefix"),
            (vec![("user.big", &[0u8; 5000][..])], "at most 4032 fit"),
        ] {
            let e = body(&pairs).unwrap_err();
            assert!(e.contains("\"some/file\"") && e.contains(want), "{e}");
            assert!(
                e.contains(&format!("{:?}", pairs[0].0)),
                "names the attribute: {e}"
            );
        }
        let long = format!("user.{}", "n".repeat(256));
        assert!(body(&[(&long, b"")]).unwrap_err().contains("at most 255"));
        // The largest body that fits.
        let fits = vec![0u8; XATTR_IBODY_MAX - 12 - 4 - 1];
        assert_eq!(body(&[("user.x", &fits)]).unwrap().len(), XATTR_IBODY_MAX);
    }
}
