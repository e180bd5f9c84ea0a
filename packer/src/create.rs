//! `pack create`: assemble kernel, rootfs and config into a signed artifact.
//!
//! Four steps, each in its own place:
//! 1. [`crate::plan`]: the command line over the Smolfile, resolved into
//!    what to build (pure);
//! 2. the inputs read and the sections built ([`crate::sections`]), the
//!    machine config merged in layers once the image has been read
//!    ([`crate::config`]);
//! 3. sealed: signer record and signature ([`smolvm_runtime::seal`], beside
//!    the verification that undoes it);
//! 4. written atomically, re-verified before it replaces anything ([`write_atomically`]).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::Digest as _;
use smolvm_format::{
    pad_stub, stub_record, Manifest, PayloadWriter, SectionKind, Sha256Digest, Target,
    FORMAT_VERSION,
};
use smolvm_runtime::exit::UsageError;
use smolvm_signing::{KeyId, PublicKey};

use crate::config::{self, ImageSource};
use crate::image::{self, ImageOptions, LoadedImage, Platform};
use crate::kernel::{find_default_kernel, load_kernel};
use crate::plan::{plan, Clock, Plan, RootSource, StubChoice};
use crate::sections::{self, Sections};
use crate::signer::Signer;
use crate::smolfile::Smolfile;
use smolvm_rootfs::tree::Tree;

pub use crate::plan::{is_bare_output, CreateOptions, BARE_EXTENSION, DEFAULT_LEVEL};

#[derive(Debug)]
pub struct CreateReport {
    pub output: PathBuf,
    pub bare: bool,
    pub file_size: u64,
    pub key_id: Option<KeyId>,
    pub sections: Vec<(SectionKind, u64, u64)>,
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

/// Runs `pack create`: plan, read the inputs, build the sections, seal,
/// write.
pub fn create(opts: &CreateOptions) -> Result<CreateReport> {
    let smolfile = match &opts.smolfile {
        Some(p) => Smolfile::load(p)?,
        None => Smolfile::default(),
    };
    for note in &smolfile.notes {
        eprintln!("note: {note}");
    }
    let smolfile_dir = opts.smolfile.as_deref().and_then(Path::parent);
    let plan = plan(opts, &smolfile, smolfile_dir, &Clock::from_env())?;
    refuse_directory_output(&plan.output)?;
    let inputs = SmallInputs::open(&plan, opts, &smolfile)?;

    // The kernel loads (a libkrunfw is parsed and its kernel extracted) and
    // compresses while the root is read, which is mostly waiting on the
    // file system; a kernel error is still reported first.
    let (kernel, root) = std::thread::scope(|scope| {
        let kernel =
            scope.spawn(|| sections::compress(&load_kernel(&inputs.kernel_path)?.elf, plan.level));
        let root = load_root(&plan.root, opts);
        (kernel.join().expect("kernel thread"), root)
    });
    let kernel = kernel?;
    let (mut tree, image) = root?;
    tree.ensure_mount_points();

    let config = workload_config(&smolfile, image.as_ref(), &tree)?;
    let mut attestations = tree_attestations(&plan, &tree, inputs.icon.as_deref())?;
    let rootfs = rootfs_section(&plan, &tree, opts.progress)?;
    // Provenance last: it names the digests of everything above it.
    let statement = provenance(
        &plan,
        opts,
        &inputs,
        image.as_ref(),
        &config,
        [("kernel", &kernel), ("rootfs", &rootfs)],
        &attestations,
    )?;
    attestations.push((
        SectionKind::Provenance,
        sections::compress(&serde_json::to_vec(&statement)?, plan.level)?,
    ));
    let sections = sections::lay_out(&config, kernel, rootfs, attestations)?;
    seal_and_write(&plan, &inputs, &sections, config)
}

/// `-o` naming a directory is refused before anything is read or
/// compressed: the rename at the end could only fail, and tempfile's error
/// would name the fault twice.
fn refuse_directory_output(output: &Path) -> Result<()> {
    if std::fs::metadata(output).is_ok_and(|m| m.is_dir()) {
        // An io::Error, so the exit code is 2 (usage or I/O).
        return Err(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            format!(
                "-o {out}: is a directory; name the file to write in it (-o {out}/NAME)",
                out = output.display()
            ),
        )
        .into());
    }
    Ok(())
}

/// The small inputs, read first so a missing kernel, key or stub is
/// reported before a large root is read.
struct SmallInputs {
    kernel_path: PathBuf,
    rotate_from: Vec<Signer>,
    signer: Option<Signer>,
    /// Padded to a page; empty for a bare payload.
    stub: Vec<u8>,
    icon: Option<Vec<u8>>,
}

impl SmallInputs {
    fn open(plan: &Plan, opts: &CreateOptions, smolfile: &Smolfile) -> Result<SmallInputs> {
        let kernel_path = match &plan.kernel {
            Some(p) => p.clone(),
            None => find_default_kernel()?,
        };
        // Checked (one key on stdin at most) before either is opened.
        let rotate_from = crate::rotation::open_keys(&opts.rotate_from, plan.signing_key.as_ref())?;
        let signer = match &plan.signing_key {
            Some(spec) => Some(spec.open()?),
            None => None,
        };
        let stub = read_stub(&plan.stub)?;
        let icon = match smolfile.artifact.as_ref().and_then(|a| a.icon.as_deref()) {
            Some(path) => Some(crate::icon::load(path)?),
            None => None,
        };
        Ok(SmallInputs {
            kernel_path,
            rotate_from,
            signer,
            stub,
            icon,
        })
    }
}

/// The machine config, with the workload checked as the guest will check
/// it and its user resolved to numbers in the tree being packed.
fn workload_config(
    smolfile: &Smolfile,
    image: Option<&ImageSource>,
    tree: &Tree,
) -> Result<smolvm_format::MachineConfig> {
    let mut config = config::machine_config(smolfile, image);
    // What the guest init and execve would refuse at every start is refused
    // now, naming the field (NUL bytes, control characters, size limits).
    smolvm_runtime::spec::check_workload(&config).context("the workload in the config")?;
    // The guest switches to numbers: names are looked up now, in the tree
    // being packed (the host never reads the image at run time).
    if let Some(user) = &config.user {
        let account = crate::user::resolve_user(user, tree)?;
        config.uid = Some(account.uid);
        config.gid = Some(account.gid);
        config.groups = account.groups;
        config.home = Some(account.home);
    }
    Ok(config)
}

/// The SBOM (what the root's package databases list, read from the tree
/// before it is written as an image) and the icon, as sections.
fn tree_attestations(
    plan: &Plan,
    tree: &Tree,
    icon: Option<&[u8]>,
) -> Result<Vec<(SectionKind, sections::Compressed)>> {
    let sbom = crate::sbom::spdx(tree, &plan.name, &plan.version, plan.created)
        .context("building the SBOM")?;
    let mut attestations = vec![(
        SectionKind::Sbom,
        sections::compress(&serde_json::to_vec(&sbom)?, plan.level)?,
    )];
    if let Some(icon) = icon {
        attestations.push((SectionKind::Icon, sections::stored(icon)));
    }
    Ok(attestations)
}

/// The root as an EROFS image section, with a progress bar on a terminal.
fn rootfs_section(plan: &Plan, tree: &Tree, progress: bool) -> Result<sections::Compressed> {
    let bar = progress_bar(progress, tree.content_len());
    let rootfs = sections::rootfs(
        tree,
        plan.level,
        &smolvm_rootfs::erofs::ErofsOptions {
            clamp_mtime: plan.clamp_mtime,
            compression: plan.rootfs_compression.into(),
        },
        &|n| bar.set_position(n),
    )?;
    bar.finish_and_clear();
    Ok(rootfs)
}

/// The in-toto provenance statement: what was read, and the digests of
/// every section built from it.
fn provenance(
    plan: &Plan,
    opts: &CreateOptions,
    inputs: &SmallInputs,
    image: Option<&ImageSource>,
    config: &smolvm_format::MachineConfig,
    built: [(&str, &sections::Compressed); 2],
    attestations: &[(SectionKind, sections::Compressed)],
) -> Result<serde_json::Value> {
    let config_digest = Sha256Digest::of(&config.to_canonical_json()).to_string();
    let subjects = std::iter::once(("config".into(), config_digest))
        .chain(
            built
                .iter()
                .map(|(n, s)| ((*n).into(), s.sha256.to_string())),
        )
        .chain(
            attestations
                .iter()
                .map(|(kind, a)| (kind.name().into(), a.sha256.to_string())),
        )
        .collect();
    Ok(crate::provenance::statement(&crate::provenance::Build {
        name: &plan.name,
        version: &plan.version,
        created: plan.created,
        root: match &plan.root {
            RootSource::Path(p) => p.file_name().map_or_else(
                || p.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            RootSource::Image { reference, .. } => reference.clone(),
        },
        level: plan.level,
        rootfs_compression: format!("{:?}", plan.rootfs_compression).to_ascii_lowercase(),
        inputs: self::inputs(plan, opts, &inputs.kernel_path, image, &inputs.stub)?,
        subjects,
        invocation: crate::provenance::invocation(&|k| std::env::var(k).ok()),
    }))
}

/// Signs the manifest (with the rotation links when rotating) and writes
/// the artifact atomically.
fn seal_and_write(
    plan: &Plan,
    inputs: &SmallInputs,
    sections: &Sections,
    config: smolvm_format::MachineConfig,
) -> Result<CreateReport> {
    let public = inputs.signer.as_ref().map(Signer::public_key);
    let mut manifest = manifest(plan, &inputs.stub, sections, config, public.as_ref());
    if let (Some(record), Some(public)) = (manifest.signer.as_mut(), &public) {
        record.rotated_from = crate::rotation::links(&plan.name, &inputs.rotate_from, public)?;
    }
    let writer = PayloadWriter::new(&manifest)?;
    let signature = match (&inputs.signer, &public) {
        (Some(signer), Some(public)) => Some(smolvm_runtime::seal::signature_block(
            public,
            signer.sign(&writer.signing_input())?,
        )),
        _ => None,
    };
    let file_size = write_atomically(&plan.output, plan.bare(), public.as_ref(), |mut out| {
        writer.write(&mut out, &inputs.stub, &sections.data, signature.as_ref())?;
        Ok(())
    })?;
    Ok(CreateReport {
        output: plan.output.clone(),
        bare: plan.bare(),
        file_size,
        key_id: public.map(|pk| pk.key_id()),
        sections: sections
            .data
            .iter()
            .map(|s| (s.kind, s.stored.len() as u64, s.size))
            .collect(),
    })
}

/// The files and image `pack create` read, with their digests, for the
/// provenance.
fn inputs(
    plan: &Plan,
    opts: &CreateOptions,
    kernel: &Path,
    image: Option<&ImageSource>,
    padded_stub: &[u8],
) -> Result<Vec<crate::provenance::Input>> {
    use crate::provenance::Input;
    // File names only: the same inputs in another directory (another
    // checkout, another runner) must give the same bytes.
    let name_of = |path: &Path| -> String {
        path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    };
    let file_digest = |path: &Path| -> Result<(String, String)> {
        let mut hasher = sha2::Sha256::new();
        let mut f = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
        std::io::copy(&mut f, &mut hasher).with_context(|| format!("{}", path.display()))?;
        Ok(("sha256".into(), hex::encode(hasher.finalize())))
    };
    let mut out = vec![Input {
        name: "kernel",
        uri: name_of(kernel),
        digest: file_digest(kernel)?,
    }];
    if let Some(smolfile) = &opts.smolfile {
        out.push(Input {
            name: "smolfile",
            uri: name_of(smolfile),
            digest: file_digest(smolfile)?,
        });
    }
    match (&plan.root, image) {
        (RootSource::Image { reference, .. }, Some(img)) => {
            if let Some(d) = &img.digest {
                out.push(Input {
                    name: "image",
                    uri: reference.clone(),
                    digest: ("sha256".into(), d.0.to_string()),
                });
            }
        }
        (RootSource::Path(p), _) if p.is_file() => out.push(Input {
            name: "rootfs",
            uri: name_of(p),
            digest: file_digest(p)?,
        }),
        _ => {}
    }
    if !padded_stub.is_empty() {
        out.push(Input {
            name: "stub",
            uri: "stub (padded to a page)".into(),
            digest: ("sha256".into(), Sha256Digest::of(padded_stub).to_string()),
        });
    }
    Ok(out)
}

/// The stub's bytes, padded to a page; empty for a bare payload.
fn read_stub(choice: &StubChoice) -> Result<Vec<u8>> {
    let path = match choice {
        StubChoice::Bare => return Ok(Vec::new()),
        StubChoice::Default => default_stub()?,
        StubChoice::Path(p) => p.clone(),
    };
    let bytes = std::fs::read(&path).with_context(|| format!("stub {}", path.display()))?;
    if !bytes.starts_with(b"\x7fELF") {
        bail!("stub {}: not an ELF executable", path.display());
    }
    Ok(pad_stub(bytes))
}

/// The manifest of what was built, signed by `signer` if given.
fn manifest(
    plan: &Plan,
    padded_stub: &[u8],
    sections: &Sections,
    config: smolvm_format::MachineConfig,
    signer: Option<&PublicKey>,
) -> Manifest {
    Manifest {
        format_version: FORMAT_VERSION,
        name: plan.name.clone(),
        version: plan.version.clone(),
        created: plan.created,
        target: Target {
            os: "linux".into(),
            // kernel.rs accepts x86_64 kernels only, so that is the guest's arch.
            arch: "x86_64".into(),
        },
        signer: signer.map(smolvm_runtime::seal::signer_record),
        stub: stub_record(padded_stub),
        sections: sections.entries.clone(),
        config,
    }
}

/// Writes beside `output` with `write`, and renames into place only after
/// the file re-verifies (against `signer`, when signed): a failed pack
/// never leaves a half-written file or replaces a good one. Returns the
/// file's size.
pub fn write_atomically(
    output: &Path,
    bare: bool,
    signer: Option<&PublicKey>,
    write: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<u64> {
    let out_dir = match output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".smolvm-pack-")
        .tempfile_in(&out_dir)
        .with_context(|| format!("creating a temporary file in {}", out_dir.display()))?;
    {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
        write(&mut w)?;
        w.flush()?;
    }
    // The data reaching the disk and the re-verification (which reads the
    // page cache either way) overlap: both must succeed before the rename.
    let (synced, verified) = std::thread::scope(|scope| {
        let file = tmp.as_file();
        let sync = scope.spawn(|| file.sync_all());
        let verified = self_verify(tmp.path(), signer);
        (sync.join().expect("fsync thread"), verified)
    });
    verified.context("the written artifact failed its own verification; nothing was written")?;
    synced.with_context(|| format!("writing {} to disk", output.display()))?;
    let file_size = tmp.as_file().metadata()?.len();
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = if bare { 0o644 } else { 0o755 };
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode))?;
    }
    tmp.persist(output)
        .map_err(|e| e.error) // its Display repeats the io::Error's
        .with_context(|| format!("writing {}", output.display()))?;
    Ok(file_size)
}

/// Reads the root filesystem from wherever `source` says; for an image,
/// also what the config records of it.
fn load_root(source: &RootSource, opts: &CreateOptions) -> Result<(Tree, Option<ImageSource>)> {
    Ok(match source {
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
            named_by,
            base_dir,
        } => {
            let LoadedImage {
                tree,
                config,
                digest,
            } = image::load(
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
            let source = ImageSource {
                reference: reference.clone(),
                named_by: *named_by,
                digest: digest.as_ref().map(smolvm_format::ImageDigest::from),
                config,
            };
            (tree, Some(source))
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
