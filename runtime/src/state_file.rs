//! The small JSON files a start remembers between runs in the state
//! directory (crate::dirs::state): the signer first seen per name
//! (crate::known_signers), the remembered consents (crate::consent) and the
//! minimum versions (crate::trust).
//! Read with a size cap (a file that large is not ours), written
//! atomically (temporary file, fsync, rename), so a crash mid-write leaves
//! the old file or the new one, never half of one.
//!
//! Changed only through [`update`]: read, change and write under an
//! exclusive `flock` on `NAME.lock` beside the file, so two starts at the
//! same time (two tools double-clicked together, a script starting several)
//! do not lose each other's updates (each would read the old file, add its
//! entry, and the last rename would win). The lock file is separate because
//! the state file itself is replaced on every write; it is never removed
//! (removing it while another start waits on it would let a third one in).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

/// A state file bigger than this is not ours (a few dozen bytes an entry).
pub const MAX_STATE_LEN: u64 = 1 << 20;

#[derive(Debug, Error)]
pub enum StateError {
    #[error("{what} {}: cannot {action} it", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {}: {fault}; {fix}", path.display())]
    Syntax {
        what: &'static str,
        path: PathBuf,
        fault: String,
        /// How the person gets past it (which command, or which file to remove).
        fix: &'static str,
    },
}

/// `StateError::Io` for `action` on the state file `path`.
fn io_error<'a>(
    path: &'a Path,
    what: &'static str,
) -> impl Fn(&'static str) -> Box<dyn FnOnce(std::io::Error) -> StateError + 'a> + 'a {
    move |action| {
        Box::new(move |source| StateError::Io {
            what,
            path: path.to_path_buf(),
            action,
            source,
        })
    }
}

/// Reads `path` (none yet: the default value). `what` names the file in
/// errors, `fix` says how to get past a file that does not parse.
pub fn load<T: DeserializeOwned + Default>(
    path: &Path,
    what: &'static str,
    fix: &'static str,
) -> Result<T, StateError> {
    let io = io_error(path, what);
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(T::default()),
        Err(e) => return Err(io("open")(e)),
    };
    let mut text = String::new();
    file.take(MAX_STATE_LEN + 1)
        .read_to_string(&mut text)
        .map_err(io("read"))?;
    let syntax = |fault: String| StateError::Syntax {
        what,
        path: path.to_path_buf(),
        fault,
        fix,
    };
    if text.len() as u64 > MAX_STATE_LEN {
        return Err(syntax(format!("larger than {MAX_STATE_LEN} bytes")));
    }
    serde_json::from_str(&text).map_err(|e| syntax(format!("not what smolvm writes there: {e}")))
}

/// Writes `value` to `path` atomically, creating the directory. Callers
/// that change what they read use [`update`].
fn store<T: Serialize>(path: &Path, what: &'static str, value: &T) -> Result<(), StateError> {
    let io = io_error(path, what);
    create_dir(path).map_err(io("create the directory of"))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io("write"))?;
    let json = serde_json::to_vec_pretty(value).map_err(|e| io("encode")(e.into()))?;
    tmp.write_all(&json).map_err(io("write"))?;
    tmp.as_file().sync_all().map_err(io("write"))?;
    tmp.persist(path).map_err(|e| io("replace")(e.error))?;
    Ok(())
}

/// Reads `path`, lets `change` change the value, and writes it when
/// `change` says it did; all under an exclusive lock on `path.lock` (see the
/// module doc). Returns the value as written (or as read, unchanged).
pub fn update<T: Serialize + DeserializeOwned + Default>(
    path: &Path,
    what: &'static str,
    fix: &'static str,
    change: impl FnOnce(&mut T) -> bool,
) -> Result<T, StateError> {
    let _lock = Lock::take(path, what)?;
    let mut value = load(path, what, fix)?;
    if change(&mut value) {
        store(path, what, &value)?;
    }
    Ok(value)
}

/// An exclusive `flock` on `STATE.lock`, released when dropped (the
/// descriptor closes).
struct Lock {
    _file: std::fs::File,
}

impl Lock {
    fn take(path: &Path, what: &'static str) -> Result<Lock, StateError> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::OpenOptionsExt;
        let io = io_error(path, what);
        create_dir(path).map_err(io("create the directory of"))?;
        let mut name = path.as_os_str().to_owned();
        name.push(".lock");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&name)
            .map_err(io("create the lock file of"))?;
        loop {
            // SAFETY: flock on a descriptor this function owns (`file`),
            // open until the Lock is dropped.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(Lock { _file: file });
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(io("lock")(e));
            }
        }
    }
}

/// Creates the directory of the state file `path` (0700: what a person
/// trusts and allows is nobody else's business).
fn create_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(dir)
}

/// A state file that cannot be read or written is this host's.
impl crate::exit::ExitStatus for StateError {
    fn exit_code(&self) -> u8 {
        crate::exit::USAGE_OR_IO
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn round_trips_and_refuses_what_is_not_ours() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("state/x.json");
        let empty: BTreeMap<String, String> = load(&path, "x", "remove it").unwrap();
        assert!(empty.is_empty());
        let v = BTreeMap::from([("a".to_string(), "b".to_string())]);
        store(&path, "x", &v).unwrap();
        assert_eq!(
            load::<BTreeMap<String, String>>(&path, "x", "fix").unwrap(),
            v
        );
        std::fs::write(&path, "[1]").unwrap();
        let e = load::<BTreeMap<String, String>>(&path, "x", "remove it")
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.json") && e.ends_with("remove it"), "{e}");
        std::fs::write(
            &path,
            vec![b' '; usize::try_from(MAX_STATE_LEN + 1).unwrap()],
        )
        .unwrap();
        let e = load::<BTreeMap<String, String>>(&path, "x", "fix").unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
    }

    /// `update` changes what is in the file now, not what a caller read
    /// earlier; writes only on a change; leaves its lock file beside it.
    #[test]
    fn update_reads_under_the_lock_and_writes_on_change() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("state/x.json");
        let add = |k: &'static str| {
            move |m: &mut BTreeMap<String, String>| m.insert(k.into(), "1".into()).is_none()
        };
        update(&path, "x", "fix", add("a")).unwrap();
        let both = update(&path, "x", "fix", add("b")).unwrap();
        assert_eq!(both.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert!(t.path().join("state/x.json.lock").exists());
        let before = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        update(&path, "x", "fix", |_: &mut BTreeMap<String, String>| false).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            before
        );
    }
}
