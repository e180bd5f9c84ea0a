//! `pack create`'s decisions, made before anything is read or built: the
//! command line over the Smolfile over the defaults, resolved into one
//! [`Plan`]. Pure (the environment's clock comes in as a value), so every
//! rule is unit-tested here without files.
//!
//! The machine config is merged later, in [`crate::config`], once the image
//! (if any) has said what it contains.

use std::path::{Path, PathBuf};

use smolvm_runtime::exit::UsageError;

use crate::config::Provenance;
use crate::signer::KeySpec;
use crate::smolfile::{RootfsCompression, Smolfile};

/// Extension that marks a bare payload output.
pub const BARE_EXTENSION: &str = "smolmachine";
/// Default zstd level: the speed/size point of `zstd -3`.
pub const DEFAULT_LEVEL: i32 = 3;
/// Version of an artifact that names none.
pub const DEFAULT_VERSION: &str = "0.0.0";

/// What `pack create` was asked on its command line (the top layer over
/// the Smolfile), before [`plan`] resolves it.
#[derive(Debug, Default, Clone)]
pub struct CreateOptions {
    pub output: PathBuf,
    pub smolfile: Option<PathBuf>,
    pub rootfs: Option<PathBuf>,
    /// Image reference (`--image`); see [`crate::image::reference`].
    pub image: Option<String>,
    /// Allow plain HTTP to registries not on this machine.
    pub insecure: bool,
    pub kernel: Option<PathBuf>,
    /// What `--key` names: a key file or a key source
    /// ([`crate::signer::KeySpec`]).
    pub key: Option<PathBuf>,
    pub no_sign: bool,
    /// What each `--rotate-from` names, oldest first: keys that signed this
    /// name before and endorse the signing key ([`crate::rotation`]).
    pub rotate_from: Vec<PathBuf>,
    pub stub: Option<PathBuf>,
    pub level: Option<i32>,
    pub rootfs_compression: Option<RootfsCompression>,
    pub name: Option<String>,
    pub version: Option<String>,
    /// Draw a progress bar (only if stderr is a terminal).
    pub progress: bool,
}

/// Where the root filesystem comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootSource {
    /// `--rootfs` / `rootfs =`: a directory or a tarball.
    Path(PathBuf),
    /// `--image` / `image =`: anything [`crate::image::load`] takes.
    Image {
        reference: String,
        /// [`Provenance::Cli`] or [`Provenance::Smolfile`].
        named_by: Provenance,
        /// Relative local paths resolve here (the Smolfile's directory).
        base_dir: Option<PathBuf>,
    },
}

/// Which executable the payload is appended to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StubChoice {
    /// A bare `.smolmachine` payload: no stub.
    Bare,
    /// The stub found beside this binary ([`crate::create::default_stub`]).
    Default,
    Path(PathBuf),
}

/// The time facts a plan depends on, read by the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clock {
    /// `SOURCE_DATE_EPOCH`, as set.
    pub source_date_epoch: Option<String>,
    /// Seconds since 1970, now.
    pub now: u64,
}

impl Clock {
    /// This process's environment and clock.
    pub fn from_env() -> Clock {
        Clock {
            source_date_epoch: std::env::var("SOURCE_DATE_EPOCH").ok(),
            now: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }
}

/// What to build, and from what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub output: PathBuf,
    pub root: RootSource,
    /// `None`: search the default places ([`crate::kernel::find_default_kernel`]).
    pub kernel: Option<PathBuf>,
    pub stub: StubChoice,
    /// Where the signature comes from (a key file, `env:NAME`, `-`,
    /// `ssh-agent`, `pkcs11:…`); `None` for an unsigned artifact.
    pub signing_key: Option<KeySpec>,
    /// zstd level, 1..=22.
    pub level: i32,
    pub rootfs_compression: RootfsCompression,
    pub name: String,
    pub version: String,
    /// The manifest's `created`.
    pub created: u64,
    /// `SOURCE_DATE_EPOCH`: file times in the root are clamped to it, so
    /// the same inputs give the same bytes.
    pub clamp_mtime: Option<u64>,
}

impl Plan {
    /// A bare payload rather than an executable.
    pub fn bare(&self) -> bool {
        self.stub == StubChoice::Bare
    }
}

/// True when `path` names a bare payload (`NAME.smolmachine`).
pub fn is_bare_output(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == BARE_EXTENSION)
}

/// The artifact name an output file implies: its stem, with what a name
/// may not hold replaced by `-` and no leading dot.
pub fn name_from_output(output: &Path) -> String {
    let stem = output
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("machine");
    stem.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-+".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect::<String>()
        .trim_start_matches('.')
        .to_string()
}

/// Resolves the command line (`opts`) over the Smolfile over the defaults.
/// `smolfile_dir` is where the Smolfile's relative image paths resolve.
pub fn plan(
    opts: &CreateOptions,
    smolfile: &Smolfile,
    smolfile_dir: Option<&Path>,
    clock: &Clock,
) -> Result<Plan, UsageError> {
    let pack = smolfile.pack.clone().unwrap_or_default();
    let artifact = smolfile.artifact.clone().unwrap_or_default();
    // Command-line flags replace the Smolfile's choice of root entirely.
    let root = match (&opts.rootfs, &opts.image) {
        (Some(p), _) => RootSource::Path(p.clone()),
        (None, Some(r)) => RootSource::Image {
            reference: r.clone(),
            named_by: Provenance::Cli,
            base_dir: None,
        },
        (None, None) => match (&smolfile.rootfs, &smolfile.image) {
            (Some(_), Some(_)) => return Err(UsageError(
                "the Smolfile sets both `rootfs` and `image`; keep one (or choose with --rootfs / --image)".into(),
            )),
            (Some(p), None) => RootSource::Path(p.clone()),
            (None, Some(r)) => RootSource::Image {
                reference: r.clone(),
                named_by: Provenance::Smolfile,
                base_dir: smolfile_dir.map(Path::to_path_buf),
            },
            (None, None) => return Err(UsageError(
                "no root filesystem: pass --image REF or --rootfs DIR|TAR, or set `image` or `rootfs` in the Smolfile".into(),
            )),
        },
    };
    let level = opts.level.or(pack.level).unwrap_or(DEFAULT_LEVEL);
    if !(1..=22).contains(&level) {
        return Err(UsageError(format!("--level {level} is outside 1..=22")));
    }
    let signing_key = if opts.no_sign {
        None
    } else {
        let value = opts.key.clone().or(pack.key.clone()).ok_or_else(|| UsageError(
            "no signing key: pass --key SECRET (make one with `smolvm pack keygen -o DIR`), or --no-sign for an unsigned artifact".into(),
        ))?;
        Some(KeySpec::parse(value.as_os_str()).map_err(|e| UsageError(e.to_string()))?)
    };
    let stub = if is_bare_output(&opts.output) {
        StubChoice::Bare
    } else {
        opts.stub
            .clone()
            .or(pack.stub.clone())
            .map_or(StubChoice::Default, StubChoice::Path)
    };
    let name = opts
        .name
        .clone()
        .or(artifact.name.clone())
        .unwrap_or_else(|| name_from_output(&opts.output));
    smolvm_format::manifest::validate_name(&name).map_err(UsageError)?;
    let version = opts
        .version
        .clone()
        .or(artifact.version.clone())
        .unwrap_or_else(|| DEFAULT_VERSION.into());
    let clamp_mtime = match &clock.source_date_epoch {
        Some(v) => Some(v.trim().parse::<u64>().map_err(|_| {
            UsageError(format!(
                "SOURCE_DATE_EPOCH={v:?} is not a number of seconds since 1970"
            ))
        })?),
        None => None,
    };
    Ok(Plan {
        output: opts.output.clone(),
        root,
        kernel: opts.kernel.clone().or(smolfile.kernel.clone()),
        stub,
        signing_key,
        level,
        rootfs_compression: opts
            .rootfs_compression
            .or(pack.rootfs_compression)
            .unwrap_or_default(),
        name,
        version,
        created: clamp_mtime.unwrap_or(clock.now),
        clamp_mtime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock() -> Clock {
        Clock {
            source_date_epoch: None,
            now: 1_700_000_000,
        }
    }

    fn opts(output: &str) -> CreateOptions {
        CreateOptions {
            output: output.into(),
            rootfs: Some("root".into()),
            key: Some("k.key".into()),
            ..CreateOptions::default()
        }
    }

    fn smolfile(text: &str) -> Smolfile {
        Smolfile::parse(text, Path::new("Smolfile")).unwrap()
    }

    fn planned(o: &CreateOptions, s: &str) -> Result<Plan, String> {
        plan(o, &smolfile(s), Some(Path::new("/proj")), &clock()).map_err(|e| e.0)
    }

    #[test]
    fn defaults_from_the_output_name() {
        let p = planned(&opts("out/my tool.smolmachine"), "").unwrap();
        assert_eq!(p.name, "my-tool");
        assert_eq!(p.version, DEFAULT_VERSION);
        assert_eq!(p.level, DEFAULT_LEVEL);
        assert_eq!(p.stub, StubChoice::Bare);
        assert!(p.bare());
        assert_eq!(p.created, 1_700_000_000);
        assert_eq!(p.clamp_mtime, None);
        assert_eq!(p.kernel, None);
        assert_eq!(p.signing_key, Some(KeySpec::File("k.key".into())));
    }

    #[test]
    fn rootfs_compression_is_none_unless_the_smolfile_or_the_flag_says_otherwise() {
        let c = |o: &CreateOptions, s: &str| planned(o, s).unwrap().rootfs_compression;
        assert_eq!(c(&opts("tool"), ""), RootfsCompression::None);
        let lz4 = "[pack]\nrootfs_compression = \"lz4\"\n";
        assert_eq!(c(&opts("tool"), lz4), RootfsCompression::Lz4);
        // The flag wins over the Smolfile, either way.
        let none = "[pack]\nrootfs_compression = \"none\"\n";
        let flag = |r| CreateOptions {
            rootfs_compression: Some(r),
            ..opts("tool")
        };
        assert_eq!(
            c(&flag(RootfsCompression::Lz4), none),
            RootfsCompression::Lz4
        );
        assert_eq!(
            c(&flag(RootfsCompression::None), lz4),
            RootfsCompression::None
        );
        let e = Smolfile::parse(
            "[pack]\nrootfs_compression = \"zstd\"\n",
            Path::new("Smolfile"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("rootfs_compression") || e.contains("zstd"),
            "{e}"
        );
    }

    #[test]
    fn an_executable_output_takes_the_default_stub_unless_one_is_named() {
        assert_eq!(
            planned(&opts("tool"), "").unwrap().stub,
            StubChoice::Default
        );
        let s = "[pack]\nstub = \"/s/stub\"\n";
        assert_eq!(
            planned(&opts("tool"), s).unwrap().stub,
            StubChoice::Path("/s/stub".into())
        );
        let o = CreateOptions {
            stub: Some("/cli/stub".into()),
            ..opts("tool")
        };
        assert_eq!(
            planned(&o, s).unwrap().stub,
            StubChoice::Path("/cli/stub".into())
        );
    }

    #[test]
    fn the_command_line_wins_over_the_smolfile() {
        let s = "kernel = \"/s/vmlinux\"\n[artifact]\nname = \"from-smolfile\"\nversion = \"1.0\"\n[pack]\nlevel = 9\nkey = \"/s/k.key\"\n";
        let p = planned(&opts("tool"), s).unwrap();
        assert_eq!(
            (p.name.as_str(), p.version.as_str(), p.level),
            ("from-smolfile", "1.0", 9)
        );
        assert_eq!(p.kernel, Some("/s/vmlinux".into()));
        assert_eq!(p.signing_key, Some(KeySpec::File("k.key".into())));
        let o = CreateOptions {
            name: Some("cli".into()),
            version: Some("2.0".into()),
            level: Some(19),
            kernel: Some("/cli/vmlinux".into()),
            ..opts("tool")
        };
        let p = planned(&o, s).unwrap();
        assert_eq!(
            (p.name.as_str(), p.version.as_str(), p.level),
            ("cli", "2.0", 19)
        );
        assert_eq!(p.kernel, Some("/cli/vmlinux".into()));
    }

    #[test]
    fn the_root_source_and_who_named_the_image() {
        let image_only = CreateOptions {
            rootfs: None,
            image: Some("alpine:3".into()),
            ..opts("tool")
        };
        assert_eq!(
            planned(&image_only, "rootfs = \"r\"\n").unwrap().root,
            RootSource::Image {
                reference: "alpine:3".into(),
                named_by: Provenance::Cli,
                base_dir: None,
            }
        );
        let neither = CreateOptions {
            rootfs: None,
            ..opts("tool")
        };
        assert_eq!(
            planned(&neither, "image = \"oci:./img\"\n").unwrap().root,
            RootSource::Image {
                reference: "oci:./img".into(),
                named_by: Provenance::Smolfile,
                base_dir: Some("/proj".into()),
            }
        );
        let e = planned(&neither, "image = \"a\"\nrootfs = \"r\"\n").unwrap_err();
        assert!(e.contains("both `rootfs` and `image`"), "{e}");
        let e = planned(&neither, "").unwrap_err();
        assert!(e.starts_with("no root filesystem"), "{e}");
        // --rootfs beats both a Smolfile image and --image.
        let both = CreateOptions {
            image: Some("alpine:3".into()),
            ..opts("tool")
        };
        assert_eq!(
            planned(&both, "image = \"a\"\n").unwrap().root,
            RootSource::Path("root".into())
        );
    }

    #[test]
    fn refusals_name_the_fix() {
        let e = planned(
            &CreateOptions {
                level: Some(23),
                ..opts("tool")
            },
            "",
        )
        .unwrap_err();
        assert_eq!(e, "--level 23 is outside 1..=22");
        let e = planned(
            &CreateOptions {
                key: None,
                ..opts("tool")
            },
            "",
        )
        .unwrap_err();
        assert!(e.contains("--no-sign"), "{e}");
        let unsigned = CreateOptions {
            key: None,
            no_sign: true,
            ..opts("tool")
        };
        assert_eq!(planned(&unsigned, "").unwrap().signing_key, None);
        assert!(planned(
            &CreateOptions {
                name: Some("bad/name".into()),
                ..opts("tool")
            },
            ""
        )
        .is_err());
    }

    #[test]
    fn source_date_epoch_fixes_created_and_clamps_mtimes() {
        let o = opts("tool");
        let s = Smolfile::default();
        let fixed = Clock {
            source_date_epoch: Some(" 1600000000\n".into()),
            ..clock()
        };
        let p = plan(&o, &s, None, &fixed).unwrap();
        assert_eq!(
            (p.created, p.clamp_mtime),
            (1_600_000_000, Some(1_600_000_000))
        );
        let bad = Clock {
            source_date_epoch: Some("yesterday".into()),
            ..clock()
        };
        let e = plan(&o, &s, None, &bad).unwrap_err().0;
        assert!(e.contains("SOURCE_DATE_EPOCH=\"yesterday\""), "{e}");
    }
}
