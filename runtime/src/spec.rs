//! The run spec: what the guest init executes, as handed to it in the file
//! `/.smolvm/spec` (see guest-init/init.c for the reader).
//!
//! Format: NUL-terminated strings: `smolvm-spec-1`, workdir, uid (decimal
//! or empty), gid (decimal or empty), argc, argv..., envc, env...

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use smolvm_format::MachineConfig;

/// Environment every workload gets unless the config sets the variable.
const DEFAULT_ENV: &[(&str, &str)] = &[
    (
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
    ("HOME", "/root"),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    pub argv: Vec<Vec<u8>>,
    pub env: Vec<Vec<u8>>,
    pub workdir: Vec<u8>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// Builds the spec: entrypoint + (the executable's arguments if any, else cmd).
pub fn build_spec(
    config: &MachineConfig,
    args: &[OsString],
    root: Option<&Path>,
) -> Result<RunSpec, String> {
    let mut argv: Vec<Vec<u8>> = config
        .entrypoint
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    if args.is_empty() {
        argv.extend(config.cmd.iter().map(|s| s.as_bytes().to_vec()));
    } else {
        argv.extend(args.iter().map(|a| a.as_bytes().to_vec()));
    }
    if argv.is_empty() {
        argv.push(b"/bin/sh".to_vec());
    }
    if argv.iter().any(|a| a.contains(&0)) {
        return Err("an argument contains a NUL byte".into());
    }
    let mut env: Vec<Vec<u8>> = Vec::new();
    for (k, v) in DEFAULT_ENV {
        if !config
            .env
            .iter()
            .any(|e| e.split_once('=').is_some_and(|(ek, _)| ek == *k))
        {
            env.push(format!("{k}={v}").into_bytes());
        }
    }
    if let Some(term) = std::env::var_os("TERM") {
        if !config.env.iter().any(|e| e.starts_with("TERM=")) {
            let mut t = b"TERM=".to_vec();
            t.extend_from_slice(term.as_bytes());
            env.push(t);
        }
    }
    env.extend(config.env.iter().map(|e| e.as_bytes().to_vec()));
    let (uid, gid) = match &config.user {
        None => (None, None),
        Some(u) => resolve_user(u, root)?,
    };
    Ok(RunSpec {
        argv,
        env,
        workdir: config
            .workdir
            .clone()
            .unwrap_or_else(|| "/".into())
            .into_bytes(),
        uid,
        gid,
    })
}

/// `user` as in OCI: `uid`, `uid:gid`, `name` or `name:group`, names looked
/// up in the image's /etc/passwd and /etc/group.
fn resolve_user(user: &str, root: Option<&Path>) -> Result<(Option<u32>, Option<u32>), String> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let lookup = |file: &str, name: &str| -> Result<(u32, Option<u32>), String> {
        if let Ok(n) = name.parse::<u32>() {
            return Ok((n, None));
        }
        let root =
            root.ok_or_else(|| format!("user {name:?}: no root filesystem to look it up in"))?;
        let text = read_nofollow(&root.join(file))
            .map_err(|e| format!("user {name:?}: reading /{file}: {e}"))?;
        for line in text.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() >= 3 && f[0] == name {
                let id = f[2]
                    .parse()
                    .map_err(|_| format!("/{file}: bad id for {name:?}"))?;
                let primary = f.get(3).and_then(|g| g.parse().ok());
                return Ok((id, primary));
            }
        }
        Err(format!(
            "user or group {name:?} is not in the image's /{file}"
        ))
    };
    let (uid, primary_gid) = lookup("etc/passwd", u)?;
    let gid = match g {
        Some(g) => Some(lookup("etc/group", g)?.0),
        None => primary_gid.or(Some(uid)),
    };
    Ok((Some(uid), gid))
}

/// Reads an image file without following a final symlink out of the image.
fn read_nofollow(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let mut s = String::new();
    f.by_ref().take(1 << 20).read_to_string(&mut s)?;
    Ok(s)
}

impl RunSpec {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut put = |b: &[u8]| {
            out.extend_from_slice(b);
            out.push(0);
        };
        put(b"smolvm-spec-1");
        put(&self.workdir);
        put(self
            .uid
            .map(|u| u.to_string())
            .unwrap_or_default()
            .as_bytes());
        put(self
            .gid
            .map(|g| g.to_string())
            .unwrap_or_default()
            .as_bytes());
        put(self.argv.len().to_string().as_bytes());
        for a in &self.argv {
            put(a);
        }
        put(self.env.len().to_string().as_bytes());
        for e in &self.env {
            put(e);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_replace_cmd_and_keep_entrypoint() {
        let c = MachineConfig {
            entrypoint: vec!["/bin/echo".into()],
            cmd: vec!["default".into()],
            ..MachineConfig::default()
        };
        let s = build_spec(&c, &["a b".into(), "".into(), "\"q\"".into()], None).unwrap();
        assert_eq!(
            s.argv,
            vec![
                b"/bin/echo".to_vec(),
                b"a b".to_vec(),
                b"".to_vec(),
                b"\"q\"".to_vec()
            ]
        );
        let s = build_spec(&c, &[], None).unwrap();
        assert_eq!(s.argv, vec![b"/bin/echo".to_vec(), b"default".to_vec()]);
    }

    #[test]
    fn encoding_is_nul_separated_with_counts() {
        let s = RunSpec {
            argv: vec![b"sh".to_vec(), b"".to_vec()],
            env: vec![b"A=1".to_vec()],
            workdir: b"/".to_vec(),
            uid: Some(5),
            gid: None,
        };
        assert_eq!(
            s.encode(),
            b"smolvm-spec-1\0/\x005\0\x002\0sh\0\0\x31\0A=1\0".to_vec()
        );
    }

    #[test]
    fn names_resolve_from_the_image() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(d.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        let c = MachineConfig {
            user: Some("app".into()),
            ..MachineConfig::default()
        };
        let s = build_spec(&c, &[], Some(d.path())).unwrap();
        assert_eq!((s.uid, s.gid), (Some(1000), Some(1001)));
        let c = MachineConfig {
            user: Some("app:staff".into()),
            ..MachineConfig::default()
        };
        let s = build_spec(&c, &[], Some(d.path())).unwrap();
        assert_eq!((s.uid, s.gid), (Some(1000), Some(50)));
        let c = MachineConfig {
            user: Some("nobody".into()),
            ..MachineConfig::default()
        };
        assert!(build_spec(&c, &[], Some(d.path()))
            .unwrap_err()
            .contains("nobody"));
    }
}
