//! The workload's `user`, resolved to numbers at pack time.
//!
//! The host never sees the image's files at run time (the guest mounts the
//! image), so names are looked up here, in the packed tree's /etc/passwd and
//! /etc/group, and the manifest carries the numbers beside the name.
//! Semantics follow Docker: `uid` or `name`, optionally `:gid` or `:group`;
//! without a group the primary group from /etc/passwd, else gid 0; the
//! supplementary groups are those of /etc/group that list the user's name;
//! HOME is the passwd entry's home directory, `/` without an entry. Ids go
//! up to [`MAX_ID`]. The files are looked up inside the tree: a symlink at
//! any component resolves within the image, never on the host.

use smolvm_format::manifest::{MAX_GROUPS, MAX_ID};
use smolvm_rootfs::tree::Tree;
use smolvm_rootfs::RootfsError;
use thiserror::Error;

/// Account databases bigger than this are not account databases.
const MAX_DB_LEN: u64 = 16 << 20;

#[derive(Debug, Error)]
pub enum UserError {
    #[error("user {user:?}: {fault}")]
    Invalid { user: String, fault: String },
    #[error("user {user:?}: reading the image's account files")]
    Read {
        user: String,
        #[source]
        source: RootfsError,
    },
}

/// One `name:x:id:...` database (passwd or group) of the tree.
struct Db {
    file: &'static str,
    text: Option<String>,
}

impl Db {
    fn load(tree: &Tree, file: &'static str, user: &str) -> Result<Db, UserError> {
        let bytes = tree
            .read_file(file, MAX_DB_LEN)
            .map_err(|source| UserError::Read {
                user: user.to_string(),
                source,
            })?;
        Ok(Db {
            file,
            text: bytes.map(|b| String::from_utf8_lossy(&b).into_owned()),
        })
    }

    /// Fields of the entry whose field `col` equals `value`.
    fn find(&self, col: usize, value: &str) -> Option<Vec<&str>> {
        self.text.as_deref()?.lines().find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.len() >= 3 && f[col] == value).then_some(f)
        })
    }

    /// Every entry's fields (lines too short to be entries are skipped).
    fn entries(&self) -> impl Iterator<Item = Vec<&str>> {
        self.text
            .as_deref()
            .unwrap_or("")
            .lines()
            .map(|line| line.split(':').collect::<Vec<_>>())
            .filter(|f| f.len() >= 3)
    }

    /// The id of `name` (a number stands for itself).
    fn id_of(&self, user: &str, name: &str) -> Result<u32, UserError> {
        if name.bytes().all(|b| b.is_ascii_digit()) {
            return parse_id(user, name, "");
        }
        let entry = self.find(0, name).ok_or_else(|| UserError::Invalid {
            user: user.to_string(),
            fault: match self.text {
                Some(_) => format!("{name:?} is not in the image's /{}", self.file),
                None => format!(
                    "the image has no /{} to look {name:?} up in; use a numeric id",
                    self.file
                ),
            },
        })?;
        parse_id(user, entry[2], &format!("/{}: {name:?} has ", self.file))
    }
}

/// A uid or gid: decimal, at most [`MAX_ID`] (`(uid_t)-1` means "no
/// change" to setuid, so it must never reach the guest init).
fn parse_id(user: &str, text: &str, context: &str) -> Result<u32, UserError> {
    match text.parse::<u32>() {
        Ok(id) if id <= MAX_ID && !text.is_empty() => Ok(id),
        _ => Err(UserError::Invalid {
            user: user.to_string(),
            fault: format!("{context}id {text:?}: ids are decimal numbers from 0 to {MAX_ID}"),
        }),
    }
}

/// Who the workload runs as, resolved in the packed tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
    /// `gid` first, then the supplementary groups, without repeats.
    pub groups: Vec<u32>,
    pub home: String,
}

/// `user` as uid, gid, groups and home, looked up in `tree`.
pub fn resolve_user(user: &str, tree: &Tree) -> Result<Account, UserError> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    if u.is_empty() || g.is_some_and(str::is_empty) {
        return Err(UserError::Invalid {
            user: user.into(),
            fault: "expected USER, UID, USER:GROUP or UID:GID".into(),
        });
    }
    let passwd = Db::load(tree, "etc/passwd", user)?;
    let uid = passwd.id_of(user, u)?;
    let entry = passwd.find(2, &uid.to_string());
    let group = Db::load(tree, "etc/group", user)?;
    let gid = match g {
        Some(g) => group.id_of(user, g)?,
        None => match entry.as_ref().and_then(|f| f.get(3)) {
            Some(g) => parse_id(user, g, "/etc/passwd: its primary group has ")?,
            None => 0,
        },
    };
    let mut groups = vec![gid];
    // Memberships are by name: the entry's name for a numeric user.
    if let Some(name) = entry.as_ref().map(|f| f[0]) {
        for f in group.entries() {
            let member = f.get(3).is_some_and(|m| m.split(',').any(|m| m == name));
            if member {
                let id = parse_id(user, f[2], &format!("/etc/group: group {:?} has ", f[0]))?;
                if !groups.contains(&id) {
                    groups.push(id);
                }
            }
        }
    }
    if groups.len() > MAX_GROUPS {
        return Err(UserError::Invalid {
            user: user.to_string(),
            fault: format!(
                "member of {} groups in /etc/group; a workload runs with at most {MAX_GROUPS}",
                groups.len()
            ),
        });
    }
    let home = entry
        .as_ref()
        .and_then(|f| f.get(5))
        .filter(|h| h.starts_with('/'))
        .map_or("/", |h| h)
        .to_string();
    if home.chars().any(char::is_control) {
        return Err(UserError::Invalid {
            user: user.to_string(),
            fault: "/etc/passwd: the home directory has control characters".into(),
        });
    }
    Ok(Account {
        uid,
        gid,
        groups,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use smolvm_rootfs::tree::{FileData, Node, NodeKind};

    fn tree(files: &[(&str, NodeKind)]) -> Tree {
        let mut t = Tree::default();
        for (path, kind) in files {
            t.nodes.insert(
                (*path).to_string(),
                Node {
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                    mtime: 0,
                    mtime_nsec: 0,
                    kind: kind.clone(),
                    xattrs: Default::default(),
                },
            );
        }
        t
    }

    fn file(s: &str) -> NodeKind {
        NodeKind::File(FileData::Inline(s.as_bytes().to_vec()))
    }

    fn accounts() -> Tree {
        tree(&[
            ("etc", NodeKind::Dir),
            (
                "etc/passwd",
                file("root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n"),
            ),
            ("etc/group", file("root:x:0:\nstaff:x:50:\n")),
        ])
    }

    fn ids(user: &str, t: &Tree) -> (u32, u32) {
        let a = resolve_user(user, t).unwrap();
        (a.uid, a.gid)
    }

    #[test]
    fn names_numbers_and_primary_groups() {
        let t = accounts();
        assert_eq!(ids("app", &t), (1000, 1001));
        assert_eq!(ids("1000", &t), (1000, 1001));
        assert_eq!(ids("4242", &t), (4242, 0));
        assert_eq!(ids("app:staff", &t), (1000, 50));
        assert_eq!(ids("7:9", &Tree::default()), (7, 9));
    }

    #[test]
    fn home_comes_from_passwd_and_is_root_dir_without_an_entry() {
        let t = accounts();
        assert_eq!(resolve_user("app", &t).unwrap().home, "/home/app");
        assert_eq!(resolve_user("1000:50", &t).unwrap().home, "/home/app");
        assert_eq!(resolve_user("0", &t).unwrap().home, "/root");
        assert_eq!(resolve_user("4242", &t).unwrap().home, "/");
        assert_eq!(resolve_user("7:9", &Tree::default()).unwrap().home, "/");
    }

    #[test]
    fn supplementary_groups_are_the_memberships_of_the_name() {
        let mut t = accounts();
        t.nodes.insert(
            "etc/group".into(),
            Node {
                mode: 0o644,
                uid: 0,
                gid: 0,
                mtime: 0,
                mtime_nsec: 0,
                kind: file("root:x:0:\nstaff:x:50:bob,app\nappgrp:x:1001:\nwheel:x:10:app\ndocker:x:999:bob\n"),
                xattrs: Default::default(),
            },
        );
        assert_eq!(resolve_user("app", &t).unwrap().groups, vec![1001, 50, 10]);
        // A numeric user is a member by its passwd name.
        assert_eq!(resolve_user("1000", &t).unwrap().groups, vec![1001, 50, 10]);
        // An explicit group leads; memberships still apply, without repeats.
        assert_eq!(resolve_user("app:staff", &t).unwrap().groups, vec![50, 10]);
        // No passwd entry: no name, so no memberships.
        assert_eq!(resolve_user("4242", &t).unwrap().groups, vec![0]);
    }

    #[test]
    fn ids_stop_below_the_no_change_value() {
        let t = accounts();
        assert_eq!(ids("4294967294:4294967294", &t), (MAX_ID, MAX_ID));
        for user in [
            "4294967295",
            "0:4294967295",
            "4294967296",
            "99999999999999999999",
        ] {
            let e = resolve_user(user, &t).unwrap_err().to_string();
            assert!(e.contains("from 0 to 4294967294"), "{user}: {e}");
        }
        let mut bad = accounts();
        bad.nodes.insert(
            "etc/passwd".into(),
            Node {
                mode: 0o644,
                uid: 0,
                gid: 0,
                mtime: 0,
                mtime_nsec: 0,
                kind: file("app:x:4294967295:0::/:/bin/sh\n"),
                xattrs: Default::default(),
            },
        );
        let e = resolve_user("app", &bad).unwrap_err().to_string();
        assert!(e.contains("/etc/passwd") && e.contains("4294967295"), "{e}");
    }

    #[test]
    fn unknown_names_and_bad_forms_are_errors() {
        let t = accounts();
        let e = resolve_user("nobody", &t).unwrap_err().to_string();
        assert!(e.contains("not in the image's /etc/passwd"), "{e}");
        let e = resolve_user("app:wheel", &t).unwrap_err().to_string();
        assert!(e.contains("/etc/group"), "{e}");
        let e = resolve_user("app", &Tree::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("no /etc/passwd"), "{e}");
        assert!(resolve_user(":1", &t).is_err());
        assert!(resolve_user("1:", &t).is_err());
    }

    #[test]
    fn passwd_behind_a_symlink_resolves_inside_the_tree_only() {
        let mut t = accounts();
        let passwd = t.nodes.remove("etc/passwd").unwrap();
        t.nodes.insert("usr".into(), t.nodes["etc"].clone());
        t.nodes.insert("usr/passwd".into(), passwd);
        t.nodes.insert(
            "etc/passwd".into(),
            Node {
                kind: NodeKind::Symlink("../../../usr/passwd".into()),
                ..t.nodes["etc"].clone()
            },
        );
        assert_eq!(ids("app", &t), (1000, 1001));
    }
}
