//! The workload's `user`, resolved to numbers at pack time.
//!
//! The host never sees the image's files at run time (the guest mounts the
//! image), so names are looked up here, in the packed tree's /etc/passwd and
//! /etc/group, and the manifest carries the numbers beside the name.
//! Semantics follow Docker: `uid` or `name`, optionally `:gid` or `:group`;
//! without a group the primary group from /etc/passwd, else gid 0.

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

    /// The id of `name` (a number stands for itself).
    fn id_of(&self, user: &str, name: &str) -> Result<u32, UserError> {
        if let Ok(n) = name.parse::<u32>() {
            return Ok(n);
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
        entry[2].parse().map_err(|_| UserError::Invalid {
            user: user.to_string(),
            fault: format!("/{}: {name:?} has a bad id {:?}", self.file, entry[2]),
        })
    }
}

/// `user` as uid and gid, looked up in `tree`.
pub fn resolve_user(user: &str, tree: &Tree) -> Result<(u32, u32), UserError> {
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
    let gid = match g {
        Some(g) => Db::load(tree, "etc/group", user)?.id_of(user, g)?,
        None => passwd
            .find(2, &uid.to_string())
            .and_then(|f| f.get(3).and_then(|g| g.parse().ok()))
            .unwrap_or(0),
    };
    Ok((uid, gid))
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

    #[test]
    fn names_numbers_and_primary_groups() {
        let t = accounts();
        assert_eq!(resolve_user("app", &t).unwrap(), (1000, 1001));
        assert_eq!(resolve_user("1000", &t).unwrap(), (1000, 1001));
        assert_eq!(resolve_user("4242", &t).unwrap(), (4242, 0));
        assert_eq!(resolve_user("app:staff", &t).unwrap(), (1000, 50));
        assert_eq!(resolve_user("7:9", &Tree::default()).unwrap(), (7, 9));
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
        assert_eq!(resolve_user("app", &t).unwrap(), (1000, 1001));
    }
}
