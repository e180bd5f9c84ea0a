//! `pack create`: assemble kernel, rootfs and config into a signed artifact.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest as _, Sha256};
use smolvm_format::{
    pad_stub, plan_sections_hashed, stub_record, Compression, FramedEncoder, Frames, MachineConfig,
    Manifest, NetworkPolicy, PayloadWriter, SectionData, SectionKind, SignatureBlock, Signer,
    Target, ALGORITHM_TAG_ED25519, FORMAT_VERSION,
};
use smolvm_runtime::exit::UsageError;
use smolvm_signing::{PublicKey, SecretKey};

use crate::image::{self, ImageOptions, LoadedImage, Platform};
use crate::kernel::{find_default_kernel, load_kernel};
use crate::smolfile::Smolfile;
use smolvm_rootfs::tree::Tree;

/// Extension that marks a bare payload output.
pub const BARE_EXTENSION: &str = "smolmachine";
/// Default zstd level: the speed/size point of `zstd -3`.
pub const DEFAULT_LEVEL: i32 = 3;

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
    pub key: Option<PathBuf>,
    pub no_sign: bool,
    pub stub: Option<PathBuf>,
    pub level: Option<i32>,
    pub name: Option<String>,
    pub version: Option<String>,
    /// Draw a progress bar (only if stderr is a terminal).
    pub progress: bool,
}

#[derive(Debug)]
pub struct CreateReport {
    pub output: PathBuf,
    pub bare: bool,
    pub file_size: u64,
    pub key_id: Option<String>,
    pub sections: Vec<(SectionKind, u64, u64)>,
}

/// True when `path` names a bare payload (`NAME.smolmachine`).
pub fn is_bare_output(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == BARE_EXTENSION)
}

/// Where the default stub lives: `SMOLVM_STUB`, else beside this binary
/// (cargo puts `smolvm-stub` in the same target directory).
pub fn default_stub() -> Result<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("SMOLVM_STUB") {
        candidates.push(PathBuf::from(p));
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            candidates.push(dir.join("smolvm-stub"));
            // `cargo build --profile stub` (size-tuned) next to a release/debug smolvm.
            candidates.push(dir.join("../stub/smolvm-stub"));
            candidates.push(dir.join("../../stub/smolvm-stub"));
        }
    }
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        UsageError(format!(
            "no stub executable found (looked at {}); build it with `cargo build --profile stub -p smolvm-stub`, pass --stub PATH, or write a bare payload with -o NAME.smolmachine",
            candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        ))
        .into()
    })
}

fn source_date_epoch() -> Result<Option<u64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v.trim().parse().map(Some).with_context(|| {
            format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds since 1970")
        }),
        Err(_) => Ok(None),
    }
}

/// Where the root filesystem comes from.
enum RootSource {
    /// `--rootfs` / `rootfs =`: a directory or a tarball.
    Path(PathBuf),
    /// `--image` / `image =`: anything [`image::load`] takes.
    Image {
        reference: String,
        /// "cli" or "smolfile", for the config's provenance.
        provenance: &'static str,
        /// Relative local paths resolve here (the Smolfile's directory).
        base_dir: Option<PathBuf>,
    },
}

/// Resolves the machine config from the Smolfile, recording where each value came from.
pub fn machine_config(s: &Smolfile) -> MachineConfig {
    let mut c = MachineConfig::default();
    let mut prov = |field: &str, set: bool| {
        c.provenance.insert(
            field.to_string(),
            if set { "smolfile" } else { "default" }.to_string(),
        );
    };
    prov("entrypoint", s.entrypoint.is_some());
    prov("cmd", s.cmd.is_some());
    prov("env", s.env.is_some());
    prov("workdir", s.workdir.is_some());
    prov("user", s.user.is_some());
    prov("cpus", s.cpus.is_some());
    prov("memory_mib", s.memory.is_some());
    prov("net", s.net.is_some());
    c.image = s.image.clone();
    c.entrypoint = s.entrypoint.clone().unwrap_or_default();
    c.cmd = s.cmd.clone().unwrap_or_default();
    c.env = s.env.clone().unwrap_or_default();
    c.workdir = s.workdir.clone();
    c.user = s.user.clone();
    if let Some(cpus) = s.cpus {
        c.cpus = cpus;
    }
    if let Some(m) = s.memory {
        c.memory_mib = m;
    }
    c.net = s.net.unwrap_or(false);
    if let Some(n) = &s.network {
        c.network = NetworkPolicy {
            allow_hosts: n.allow_hosts.clone(),
            allow_cidrs: n.allow_cidrs.clone(),
        };
    }
    c.ports = s.ports.clone().unwrap_or_default();
    c.volumes = s.volumes.clone().unwrap_or_default();
    c.storage_gib = s.storage;
    c.overlay_gib = s.overlay;
    c.init = s.init.clone().unwrap_or_default();
    c.ssh_agent = s.auth.as_ref().is_some_and(|a| a.ssh_agent);
    c
}

/// A `Vec` sink that hashes what it is given. Under a multithreaded zstd
/// encoder the thread that receives the output mostly waits for the
/// workers, so hashing there costs no wall time.
struct HashingVec {
    bytes: Vec<u8>,
    hasher: Sha256,
}

impl HashingVec {
    fn with_capacity(n: usize) -> Self {
        HashingVec {
            bytes: Vec::with_capacity(n),
            hasher: Sha256::new(),
        }
    }

    fn finish(self) -> (Vec<u8>, [u8; 32]) {
        (self.bytes, self.hasher.finalize().into())
    }
}

impl Write for HashingVec {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.hasher.update(buf);
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A section's stored bytes as the compressor left them.
struct Compressed {
    stored: Vec<u8>,
    sha256: [u8; 32],
    /// Content bytes.
    size: u64,
    /// The frame table; `None` when the section is a single frame, which
    /// is then exactly what an unframed zstd section is.
    frames: Option<Frames>,
}

/// A framed encoder into a hashing buffer sized for `hint` content bytes.
fn encoder(hint: u64, level: i32) -> Result<FramedEncoder<HashingVec>> {
    // Room for a 2:1 ratio up front: growing a Vec of tens of MB by
    // doubling copies it again and again. Untouched capacity costs
    // address space only.
    let capacity = usize::try_from(hint / 2)
        .unwrap_or(usize::MAX)
        .clamp(1 << 20, 1 << 30);
    Ok(FramedEncoder::new(
        HashingVec::with_capacity(capacity),
        level,
        worker_threads(),
    )?)
}

fn finish(enc: FramedEncoder<HashingVec>) -> Result<Compressed> {
    let size = enc.content_len();
    let (sink, frames) = enc.finish()?;
    let (stored, sha256) = sink.finish();
    Ok(Compressed {
        stored,
        sha256,
        size,
        frames: (frames.stored_lens.len() > 1).then_some(frames),
    })
}

/// Compresses `data` into independent frames (so a first start can
/// decompress them on every core) and hashes the result.
fn compress(data: &[u8], level: i32) -> Result<Compressed> {
    let mut enc = encoder(data.len() as u64, level)?;
    enc.write_all(data)?;
    finish(enc)
}

fn worker_threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

fn progress_bar(enabled: bool, len: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if !(enabled && std::io::stderr().is_terminal()) {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:8} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("template")
        .progress_chars("=> "),
    );
    bar.set_message("rootfs");
    bar
}

/// Runs `pack create`.
pub fn create(opts: &CreateOptions) -> Result<CreateReport> {
    let smolfile = match &opts.smolfile {
        Some(p) => Smolfile::load(p)?,
        None => Smolfile::default(),
    };
    let pack = smolfile.pack.clone().unwrap_or_default();
    let artifact = smolfile.artifact.clone().unwrap_or_default();
    let bare = is_bare_output(&opts.output);

    // Command-line flags replace the Smolfile's choice of root entirely.
    let root_source = match (&opts.rootfs, &opts.image) {
        (Some(p), _) => RootSource::Path(p.clone()),
        (None, Some(r)) => RootSource::Image {
            reference: r.clone(),
            provenance: "cli",
            base_dir: None,
        },
        (None, None) => match (&smolfile.rootfs, &smolfile.image) {
            (Some(_), Some(_)) => return Err(UsageError(
                "the Smolfile sets both `rootfs` and `image`; keep one (or choose with --rootfs / --image)".into()
            ).into()),
            (Some(p), None) => RootSource::Path(p.clone()),
            (None, Some(r)) => RootSource::Image {
                reference: r.clone(),
                provenance: "smolfile",
                base_dir: opts
                    .smolfile
                    .as_deref()
                    .and_then(Path::parent)
                    .map(Path::to_path_buf),
            },
            (None, None) => return Err(UsageError(
                "no root filesystem: pass --image REF or --rootfs DIR|TAR, or set `image` or `rootfs` in the Smolfile".into()
            ).into()),
        },
    };
    let kernel_path = match opts.kernel.clone().or(smolfile.kernel.clone()) {
        Some(p) => p,
        None => find_default_kernel()?,
    };
    let level = opts.level.or(pack.level).unwrap_or(DEFAULT_LEVEL);
    if !(1..=22).contains(&level) {
        return Err(UsageError(format!("--level {level} is outside 1..=22")).into());
    }
    let secret = if opts.no_sign {
        None
    } else {
        let key = opts.key.clone().or(pack.key.clone()).ok_or_else(|| UsageError(
            "no signing key: pass --key SECRET (make one with `smolvm pack keygen -o DIR`), or --no-sign for an unsigned artifact".into(),
        ))?;
        Some(SecretKey::read_file(&key)?)
    };
    let stub = if bare {
        Vec::new()
    } else {
        let path = match opts.stub.clone().or(pack.stub.clone()) {
            Some(p) => p,
            None => default_stub()?,
        };
        let bytes = std::fs::read(&path).with_context(|| format!("stub {}", path.display()))?;
        if !bytes.starts_with(b"\x7fELF") {
            bail!("stub {}: not an ELF executable", path.display());
        }
        pad_stub(bytes)
    };
    let name = match opts.name.clone().or(artifact.name.clone()) {
        Some(n) => n,
        None => {
            let stem = opts
                .output
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
    };
    smolvm_format::manifest::validate_name(&name).map_err(anyhow::Error::msg)?;
    let version = opts
        .version
        .clone()
        .or(artifact.version.clone())
        .unwrap_or_else(|| "0.0.0".into());
    let epoch = source_date_epoch()?;
    let created = epoch.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });

    // The kernel loads (a libkrunfw is parsed and its kernel extracted) and
    // compresses while the root is read, which is mostly waiting on the
    // file system; a kernel error is still reported first.
    let (kernel_stored, root) = std::thread::scope(|scope| {
        let kernel = scope.spawn(|| compress(&load_kernel(&kernel_path)?.elf, level));
        let root = load_root(&root_source, opts);
        (kernel.join().expect("kernel thread"), root)
    });
    let kernel_stored = kernel_stored?;
    let (mut tree, image) = root?;
    tree.ensure_mount_points();
    let mut config = machine_config(&smolfile);
    match (&root_source, image) {
        (
            RootSource::Image {
                reference,
                provenance,
                ..
            },
            Some((image_config, digest)),
        ) => {
            config.image = Some(reference.clone());
            config.image_digest = digest.map(|d| d.to_string());
            config
                .provenance
                .insert("image".into(), (*provenance).to_string());
            if let Some(ic) = &image_config {
                image::config::apply_image_config(&mut config, &smolfile, ic);
            }
        }
        // A root given as a path: no image went into this artifact.
        _ => config.image = None,
    }
    // What the guest init and execve would refuse at every start is refused
    // now, naming the field (NUL bytes, control characters, size limits).
    smolvm_runtime::spec::check_workload(&config).context("the workload in the config")?;
    // The guest switches to numbers: names are looked up now, in the tree
    // being packed (the host never reads the image at run time).
    if let Some(user) = &config.user {
        let (uid, gid) = crate::user::resolve_user(user, &tree)?;
        config.uid = Some(uid);
        config.gid = Some(gid);
    }
    let bar = progress_bar(opts.progress, tree.content_len());

    let rootfs = {
        let mut enc = encoder(tree.content_len(), level)?;
        smolvm_rootfs::erofs::write_image(
            &tree,
            &mut enc,
            &smolvm_rootfs::erofs::ErofsOptions { clamp_mtime: epoch },
            &|n| bar.set_position(n),
        )?;
        finish(enc)?
    };
    bar.finish_and_clear();

    let config_json = config.to_canonical_json();
    let config_sha256: [u8; 32] = Sha256::digest(&config_json).into();
    let sections = vec![
        SectionData {
            kind: SectionKind::Config,
            compression: Compression::None,
            size: config_json.len() as u64,
            stored: config_json,
        },
        SectionData {
            kind: SectionKind::Kernel,
            compression: Compression::Zstd,
            size: kernel_stored.size,
            stored: kernel_stored.stored,
        },
        SectionData {
            kind: SectionKind::Rootfs,
            compression: Compression::Zstd,
            size: rootfs.size,
            stored: rootfs.stored,
        },
    ];
    let mut entries = plan_sections_hashed(
        &sections,
        &[config_sha256, kernel_stored.sha256, rootfs.sha256],
    )?;
    entries[1].frames = kernel_stored.frames;
    entries[2].frames = rootfs.frames;
    let public = secret.as_ref().map(SecretKey::public_key);
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        name,
        version,
        created,
        target: Target {
            os: "linux".into(),
            // kernel.rs accepts x86_64 kernels only, so that is the guest's arch.
            arch: "x86_64".into(),
        },
        signer: public.map(|pk| Signer {
            algorithm: smolvm_signing::ALGORITHM_ED25519.into(),
            key_id: pk.key_id().to_string(),
            public_key: hex::encode(pk.to_bytes()),
        }),
        stub: stub_record(&stub),
        sections: entries,
        config,
    };
    let writer = PayloadWriter::new(&manifest)?;
    let signature = secret.as_ref().map(|sk| SignatureBlock {
        algorithm: ALGORITHM_TAG_ED25519,
        key_id: sk.public_key().key_id().to_bytes(),
        signature: sk.sign(&writer.signing_input()),
    });

    // Write beside the destination and rename into place only after the
    // output re-verifies: a failed pack never leaves a half-written file or
    // replaces a good one.
    let out_dir = match opts.output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".smolvm-pack-")
        .tempfile_in(&out_dir)
        .with_context(|| format!("creating a temporary file in {}", out_dir.display()))?;
    {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
        writer.write(&mut w, &stub, &sections, signature.as_ref())?;
        w.flush()?;
    }
    tmp.as_file().sync_all()?;
    let file_size = tmp.as_file().metadata()?.len();
    self_verify(tmp.path(), public.as_ref())
        .context("the written artifact failed its own verification; nothing was written")?;
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = if bare { 0o644 } else { 0o755 };
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode))?;
    }
    tmp.persist(&opts.output)
        .with_context(|| format!("writing {}", opts.output.display()))?;
    Ok(CreateReport {
        output: opts.output.clone(),
        bare,
        file_size,
        key_id: public.map(|pk| pk.key_id().to_string()),
        sections: sections
            .iter()
            .map(|s| (s.kind, s.stored.len() as u64, s.size))
            .collect(),
    })
}

/// The image's config and digest, when the root came from an image.
type ImageInfo = Option<(
    Option<image::ImageRuntimeConfig>,
    Option<image::digest::Digest>,
)>;

/// Reads the root filesystem from wherever `source` says.
fn load_root(root_source: &RootSource, opts: &CreateOptions) -> Result<(Tree, ImageInfo)> {
    Ok(match root_source {
        RootSource::Path(rootfs_path) => {
            let tree = if std::fs::metadata(rootfs_path)
                .with_context(|| format!("rootfs {}", rootfs_path.display()))?
                .is_dir()
            {
                Tree::from_dir(rootfs_path)?
            } else {
                Tree::from_archive(rootfs_path)?
            };
            (tree, None)
        }
        RootSource::Image {
            reference,
            base_dir,
            ..
        } => {
            let loaded = image::load(
                reference,
                &ImageOptions {
                    // The guest arch of every artifact (the manifest's `target`).
                    platform: Platform::for_target("linux", "x86_64"),
                    insecure: opts.insecure,
                    cache_dir: None,
                    base_dir: base_dir.clone(),
                    registry: image::registry::RegistryOptions {
                        progress: opts.progress,
                        ..Default::default()
                    },
                },
            )?;
            let LoadedImage {
                tree,
                config,
                digest,
            } = loaded;
            (tree, Some((config, digest)))
        }
    })
}

/// Reads the file back and verifies it as `pack verify --key` would.
fn self_verify(path: &Path, public: Option<&PublicKey>) -> Result<()> {
    let src = smolvm_format::FileSource::new(std::fs::File::open(path)?)?;
    let trusted: Vec<PublicKey> = public.into_iter().copied().collect();
    smolvm_runtime::verify_artifact(
        &src,
        &smolvm_runtime::VerifyOptions {
            trusted: &trusted,
            require_signature: public.is_some(),
            integrity: true,
        },
    )?;
    Ok(())
}
