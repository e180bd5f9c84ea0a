//! The run spec: what the guest init executes, as handed to it in the file
//! `/.smolvm/spec` (see guest-init/init.c for the reader).
//!
//! Format: NUL-terminated strings: `smolvm-spec-1`, workdir, uid (decimal
//! or empty), gid (decimal or empty), argc, argv..., envc, env...

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

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
/// The user is the one resolved at pack time (`config.uid`/`gid`): the host
/// never reads the image's files.
pub fn build_spec(config: &MachineConfig, args: &[OsString]) -> Result<RunSpec, String> {
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
    Ok(RunSpec {
        argv,
        env,
        workdir: config
            .workdir
            .clone()
            .unwrap_or_else(|| "/".into())
            .into_bytes(),
        uid: config.uid,
        gid: config.gid,
    })
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
        let s = build_spec(&c, &["a b".into(), "".into(), "\"q\"".into()]).unwrap();
        assert_eq!(
            s.argv,
            vec![
                b"/bin/echo".to_vec(),
                b"a b".to_vec(),
                b"".to_vec(),
                b"\"q\"".to_vec()
            ]
        );
        let s = build_spec(&c, &[]).unwrap();
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
}
