//! Extended attributes: which names EROFS can hold, which are stored once
//! in the shared area and which inline after their inode.
//!
//! ```text
//! inline body, right after the inode:
//! | ibody header (12): name filter (u32, 0), shared count (u8), reserved (7)
//! | shared id (u32) ... | entry | entry | ...
//! entry: name_len (u8), name_index (u8), value_size (u16), name suffix,
//!        value, zero padding to 4 bytes
//!
//! shared area, whole blocks from the superblock's xattr_blkaddr:
//! | entry | entry | ...        (shared id = entry's byte offset / 4)
//! ```
//!
//! Which entries are shared:
//! - an entry (name and value) that more than one inode has: stored once,
//!   each inode holds a 4-byte id instead (never larger than the entry,
//!   which is at least 4 bytes), so a label or ACL repeated over a
//!   tree costs one copy;
//! - when an inode's inline body would not fit one block with the inode
//!   ([`XATTR_IBODY_MAX`]), its largest inline entries, until it does:
//!   values up to EROFS's 65535 bytes are kept.
//!
//! An inode refers to at most 255 shared entries (the count is a u8); the
//! rest stay inline. Shared entries are laid out in the order inodes
//! first use them, inodes in creation order, so the area is a function
//! of the tree alone. Entries may cross block boundaries in the shared
//! area (the kernel and fsck.erofs read them across blocks, as
//! mkfs.erofs writes them); inline ones never do.

use std::collections::{BTreeMap, HashMap};

use super::layout::entry_error;
use super::ondisk::{
    xattr_icount, xattr_name_index, InodeExtended, XattrEntry, BLOCK_BYTES,
    XATTR_IBODY_HEADER_SIZE, XATTR_SHARED_COUNT_AT, XATTR_SHARED_ID_SIZE, XATTR_SHARED_MAX,
    XATTR_VALUE_MAX,
};
use super::WHAT;
use crate::RootfsError;

/// Largest inline xattr body (header and shared ids included) of one
/// inode: the inode and its inline xattrs always fit one block, so no
/// reader has to follow them across a block boundary. What does not fit
/// goes to the shared area.
pub const XATTR_IBODY_MAX: usize = BLOCK_BYTES - InodeExtended::SIZE;

/// Every inode's inline body and the shared area they refer to.
#[derive(Debug, Default)]
pub struct XattrPlan {
    /// Per inode, in the order given: the body after the inode (empty
    /// when it has no xattrs).
    pub bodies: Vec<Vec<u8>>,
    /// The shared area's bytes (empty when nothing is shared); padded to
    /// whole blocks when written.
    pub shared: Vec<u8>,
}

/// Plans the xattrs of `inodes` (one entry per inode: its first path,
/// for errors, and its attributes). Errors name the entry and attribute.
pub fn plan(inodes: &[(&str, &BTreeMap<String, Vec<u8>>)]) -> Result<XattrPlan, RootfsError> {
    let encoded: Vec<Vec<Vec<u8>>> = inodes
        .iter()
        .map(|(path, xattrs)| {
            xattrs
                .iter()
                .map(|(name, value)| encode_entry(path, name, value))
                .collect()
        })
        .collect::<Result<_, _>>()?;
    let mut uses: HashMap<&[u8], usize> = HashMap::new();
    for entries in &encoded {
        for e in entries {
            *uses.entry(e).or_default() += 1;
        }
    }
    let mut plan = XattrPlan {
        bodies: Vec::with_capacity(inodes.len()),
        shared: Vec::new(),
    };
    let mut ids: HashMap<&[u8], u32> = HashMap::new();
    for ((path, _), entries) in inodes.iter().zip(&encoded) {
        if entries.is_empty() {
            plan.bodies.push(Vec::new());
            continue;
        }
        let mut shared: Vec<bool> = entries.iter().map(|e| uses[e.as_slice()] > 1).collect();
        // The first 255 in name order; the rest stay inline.
        for s in shared.iter_mut().filter(|s| **s).skip(XATTR_SHARED_MAX) {
            *s = false;
        }
        loop {
            let count = shared.iter().filter(|s| **s).count();
            let inline: usize = entries
                .iter()
                .zip(&shared)
                .filter(|(_, s)| !**s)
                .map(|(e, _)| e.len())
                .sum();
            let len = XATTR_IBODY_HEADER_SIZE + count * XATTR_SHARED_ID_SIZE + inline;
            if len <= XATTR_IBODY_MAX {
                break;
            }
            // The largest inline entry (the first of equals) moves out.
            let largest = entries
                .iter()
                .enumerate()
                .filter(|(i, _)| !shared[*i])
                .max_by(|(i, a), (j, b)| a.len().cmp(&b.len()).then(j.cmp(i)))
                .map(|(i, _)| i)
                .expect("a body over the cap has an inline entry");
            if count == XATTR_SHARED_MAX {
                return Err(entry_error(
                    path,
                    format!(
                        "its xattrs take {len} bytes inline with {XATTR_SHARED_MAX} already \
                         shared; EROFS fits at most {XATTR_IBODY_MAX} inline: keep fewer or \
                         smaller attributes"
                    ),
                ));
            }
            shared[largest] = true;
        }
        let count = shared.iter().filter(|s| **s).count();
        let mut body = vec![0u8; XATTR_IBODY_HEADER_SIZE];
        body[XATTR_SHARED_COUNT_AT] = u8::try_from(count).expect("at most 255");
        for (e, _) in entries.iter().zip(&shared).filter(|(_, s)| **s) {
            let id = match ids.get(e.as_slice()) {
                Some(&id) => id,
                None => {
                    let id =
                        u32::try_from(plan.shared.len() / 4).map_err(|_| RootfsError::Invalid {
                            what: WHAT.into(),
                            fault: "the shared xattrs outgrow EROFS's 32-bit ids (16 GiB)".into(),
                        })?;
                    plan.shared.extend_from_slice(e);
                    ids.insert(e, id);
                    id
                }
            };
            body.extend_from_slice(&id.to_le_bytes());
        }
        for (e, _) in entries.iter().zip(&shared).filter(|(_, s)| !**s) {
            body.extend_from_slice(e);
        }
        debug_assert!(body.len() <= XATTR_IBODY_MAX && xattr_icount(body.len()).is_some());
        plan.bodies.push(body);
    }
    Ok(plan)
}

/// One entry, padded to 4 bytes: the same bytes inline and shared.
fn encode_entry(path: &str, name: &str, value: &[u8]) -> Result<Vec<u8>, RootfsError> {
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
    let value_size = u16::try_from(value.len()).map_err(|_| {
        bad(format!(
            "value is {} bytes; EROFS stores at most {XATTR_VALUE_MAX}",
            value.len()
        ))
    })?;
    let mut out = Vec::with_capacity((XattrEntry::SIZE + suffix.len() + value.len() + 3) & !3);
    out.extend_from_slice(
        &XattrEntry {
            name_len,
            name_index: index,
            value_size,
        }
        .encode(),
    );
    out.extend_from_slice(suffix.as_bytes());
    out.extend_from_slice(value);
    out.resize(out.len().next_multiple_of(4), 0);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Map = BTreeMap<String, Vec<u8>>;

    fn map(pairs: &[(&str, &[u8])]) -> Map {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect()
    }

    fn plan_of(maps: &[Map]) -> Result<XattrPlan, String> {
        let paths: Vec<String> = (0..maps.len()).map(|i| format!("file{i}")).collect();
        let inodes: Vec<(&str, &Map)> = paths.iter().map(|p| p.as_str()).zip(maps).collect();
        plan(&inodes).map_err(|e| e.to_string())
    }

    fn body(pairs: &[(&str, &[u8])]) -> Result<Vec<u8>, String> {
        plan_of(&[map(pairs)]).map(|mut p| p.bodies.remove(0))
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
            (vec![("user.big", &[0u8; 65536][..])], "at most 65535"),
        ] {
            let e = body(&pairs).unwrap_err();
            assert!(e.contains("\"file0\"") && e.contains(want), "{e}");
            assert!(
                e.contains(&format!("{:?}", pairs[0].0)),
                "names the attribute: {e}"
            );
        }
        let long = format!("user.{}", "n".repeat(256));
        assert!(body(&[(&long, b"")]).unwrap_err().contains("at most 255"));
    }

    /// The largest body that stays wholly inline, and one byte more moves
    /// the value to the shared area.
    #[test]
    fn a_body_over_one_block_moves_its_largest_entries_to_the_shared_area() {
        let fits = vec![7u8; XATTR_IBODY_MAX - 12 - 4 - 1];
        let p = plan_of(&[map(&[("user.x", &fits)])]).unwrap();
        assert_eq!(p.bodies[0].len(), XATTR_IBODY_MAX);
        assert!(p.shared.is_empty());

        let big = vec![7u8; XATTR_IBODY_MAX - 12 - 4];
        let p = plan_of(&[map(&[("user.a", b"small"), ("user.x", &big)])]).unwrap();
        let b = &p.bodies[0];
        // Header (one shared), the id 0, then user.a inline.
        assert_eq!(b[XATTR_SHARED_COUNT_AT], 1);
        assert_eq!(&b[12..16], &0u32.to_le_bytes());
        assert_eq!(&b[16..20], &[1, 1, 5, 0]);
        assert_eq!(b.len(), 12 + 4 + 12);
        assert_eq!(p.shared.len(), (4 + 1 + big.len()).next_multiple_of(4));
        let size = u16::try_from(big.len()).unwrap().to_le_bytes();
        assert_eq!(&p.shared[..4], &[1, 1, size[0], size[1]]);

        // The largest value EROFS can store.
        let max = vec![1u8; XATTR_VALUE_MAX];
        let p = plan_of(&[map(&[("user.max", &max), ("user.max2", &max)])]).unwrap();
        assert_eq!(p.bodies[0].len(), 12 + 8);
        assert_eq!(p.shared.len(), 2 * (4 + 3 + 65535 + 2));
    }

    #[test]
    fn entries_on_several_inodes_are_stored_once() {
        let cap = map(&[("security.capability", &[1, 0, 0, 2, 0x0a, 0, 0, 0])]);
        let mut own = cap.clone();
        own.insert("user.own".into(), b"x".to_vec());
        let p = plan_of(&[cap.clone(), Map::new(), own, cap]).unwrap();
        let entry_len = (4 + 10 + 8usize).next_multiple_of(4);
        assert_eq!(p.shared.len(), entry_len);
        let mut want = vec![0u8; 12 + 4];
        want[XATTR_SHARED_COUNT_AT] = 1; // then id 0
        assert_eq!(p.bodies[0], want);
        assert!(p.bodies[1].is_empty());
        // user.own is on one inode only: inline, after the shared id.
        assert_eq!(p.bodies[2][XATTR_SHARED_COUNT_AT], 1);
        assert_eq!(p.bodies[2].len(), 12 + 4 + 8);
        assert_eq!(p.bodies[3], p.bodies[0]);
    }

    #[test]
    fn an_inode_refers_to_at_most_255_shared_entries() {
        let names: Vec<String> = (0..300).map(|i| format!("user.{i:03}")).collect();
        let m: Map = names.iter().map(|n| (n.clone(), vec![1])).collect();
        let p = plan_of(&[m.clone(), m]).unwrap();
        for b in &p.bodies {
            assert_eq!(usize::from(b[XATTR_SHARED_COUNT_AT]), 255);
            // 45 left inline, 8 bytes each (4 + "000" + one byte).
            assert_eq!(b.len(), 12 + 255 * 4 + 45 * 8);
        }
        assert_eq!(p.shared.len(), 255 * 8);

        // Too much even with 255 shared.
        let big = vec![0u8; 40];
        let m: Map = (0..400)
            .map(|i| (format!("user.{i:03}"), big.clone()))
            .collect();
        let e = plan_of(&[m]).unwrap_err();
        assert!(
            e.contains("\"file0\"") && e.contains("255 already shared"),
            "{e}"
        );
    }
}
