//! From an artifact file to a running guest: the one code path behind the
//! stub executable and `smolvm pack run`.
//!
//! It reads top to bottom in two steps:
//!
//! ```text
//! prepare(file, options)  ->  Prepared  ->  start()     the VM (never returns on success)
//!   verify, trust, settings,              |   fork: supervisor (publishes the root
//!   host checks, cache, disks             |         image, forwards signals, exits
//!   (every check before any side effect   |         with the guest's code)
//!    that outlives a refusal)             |   VMM:  configure libkrun, sandbox, enter
//!                                         +-> dry_run()  everything but the VM
//! ```
//!
//! What the environment says is read once at the edge ([`HostEnv`],
//! crate::dirs) and passed in; nothing below reads `std::env`.

use std::ffi::OsString;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use smolvm_format::{FileSource, MachineConfig, SectionKind};
use smolvm_signing::PublicKey;
use thiserror::Error;

use crate::cache::{default_cache_dir, Cache, CacheError};
use crate::host_env::HostEnv;
use crate::rootfs_image::Publish;
use crate::settings::Share;
use crate::settings::Volume;
use crate::spec::{build_spec, RunSpec};
use crate::trace::Trace;
use crate::trust::{version_at_least, TrustError, VersionState};
use crate::verify::{check_signature, SignatureState, VerifyError};

#[derive(Debug, Error)]
pub enum RunError {
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// Older than a minimum this start must honour (rollback protection).
    #[error("{name} {version} is older than the minimum version {minimum} ({why}); refusing to start an older release")]
    Rollback {
        name: String,
        version: String,
        minimum: String,
        /// Where the minimum comes from.
        why: String,
    },
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("{0}")]
    Config(String),
    /// The workload (with the given arguments) is past what the guest runs.
    #[error("the workload cannot run")]
    Spec(#[from] crate::spec::SpecError),
    #[error(transparent)]
    Network(#[from] crate::net::NetError),
    /// The overlay or storage disk (crate::disk).
    #[error(transparent)]
    Disk(#[from] crate::disk::DiskError),
    /// The current directory a machine asks for, not shared (crate::consent).
    #[error(transparent)]
    Consent(#[from] crate::consent::ConsentError),
    /// A run-time setting that cannot be applied (the current directory a
    /// machine shares is gone, two volumes at one guest path).
    #[error("{0}")]
    Settings(String),
    /// Something this runtime cannot honour: refusing is the only safe answer.
    #[error("{0}")]
    Unsupported(String),
    #[cfg(feature = "vmm")]
    #[error(transparent)]
    Launch(#[from] crate::launch::LaunchError),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

pub struct RunOptions {
    /// Require the signer to be one of these keys (empty: any valid signature).
    pub trusted: Vec<PublicKey>,
    /// Arguments for the workload (replace the config's cmd when non-empty).
    pub args: Vec<OsString>,
    /// Stop right before entering the VM (benchmarks, `SMOLVM_DRY_RUN=1`).
    pub dry_run: bool,
    /// Stop the machine after this long (`--smolvm-timeout`, `pack run
    /// --timeout`): exit 124 (crate::control).
    pub timeout: Option<std::time::Duration>,
    /// Ports published at run time (`--smolvm-publish`, `pack run -p`):
    /// `HOST:GUEST` or `ADDRESS:HOST:GUEST`.
    pub publish: Vec<String>,
    /// The user allows SSH agent forwarding (`--smolvm-ssh-agent`,
    /// `SMOLVM_SSH_AGENT=1`, `pack run --ssh-agent`); it happens only if the
    /// machine also asks for it (`[auth] ssh_agent = true`).
    pub ssh_agent: bool,
    /// The person shares the current directory with a machine that asks for
    /// it (`--smolvm-share-cwd`, `pack run --share-cwd`; `SMOLVM_SHARE_CWD=1`
    /// is `host.share_cwd`). Without it they are asked (crate::consent).
    pub share_cwd: bool,
    /// Where "always share this directory" answers are remembered and
    /// looked up (`None`: neither; crate::consent).
    pub consent_file: Option<PathBuf>,
    /// Puts the consent question to the person: [`crate::consent::ask_on_tty`]
    /// (called only when `host.terminal`).
    pub ask_consent: crate::consent::AskFn,
    /// Where the first signer of each name is remembered and checked when
    /// no trusted keys are configured (`None`: neither; crate::known_signers).
    pub known_signers: Option<PathBuf>,
    /// Refuse versions older than this (`--smolvm-min-version`, `pack run --min-version`).
    pub min_version: Option<String>,
    /// Where the highest version started with a trusted key is remembered
    /// per signer and name, and checked (`None`: neither).
    pub version_state: Option<PathBuf>,
    /// Start the machine's persistent storage over, empty
    /// (`--smolvm-reset-storage`, `pack run --reset-storage`).
    pub reset_storage: bool,
    /// Serve host shares on a kernel without Landlock
    /// (`--smolvm-allow-no-landlock`; crate::sandbox).
    pub allow_no_landlock: bool,
    /// Run-time env, cpus, memory, workdir and volumes (crate::settings),
    /// already checked; they win over the artifact's config.
    pub settings: crate::settings::RunSettings,
    /// The process environment, read at the edge.
    pub host: HostEnv,
}

/// Opens a checked share for the VM ([`Share`]).
fn open_share(volume: Volume) -> Result<Share, RunError> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(&volume.host)
        .map_err(|e| {
            RunError::Settings(format!(
                "the shared directory {}: {e}",
                volume.host.display()
            ))
        })?;
    Ok(Share {
        volume,
        dir: dir.into(),
    })
}

/// Everything a start needs, checked and in hand: what [`prepare`] makes
/// and [`Prepared::start`] boots.
pub struct Prepared {
    /// The effective config (run-time settings over the artifact's).
    pub config: MachineConfig,
    pub spec: RunSpec,
    /// The verified kernel (cache file, read-only, shared lock held).
    pub kernel: File,
    /// The verified EROFS root image (read-only, shared lock held).
    pub root_image: File,
    /// A first start's image, complete and verified but not yet published
    /// under its trusted name ([`Prepared::publish_rootfs`]).
    pending: Option<Publish>,
    pub disks: crate::disk::Disks,
    pub shares: Vec<Share>,
    /// `None`: no network device at all.
    pub net: Option<Arc<crate::net::Egress>>,
    /// The host's SSH agent socket, when forwarding is on.
    pub ssh_agent: Option<PathBuf>,
    pub timeout: Option<std::time::Duration>,
    pub allow_no_landlock: bool,
    pub host: HostEnv,
}

/// Verifies the artifact in `file` and prepares everything a start needs:
/// every check first (signature, trust, rollback, settings, the workload,
/// the network policy, this host's KVM and sandbox), then the cache and the
/// disks. Nothing is booted.
pub fn prepare(file: File, opts: &RunOptions, trace: &Trace) -> Result<Prepared, RunError> {
    let src = FileSource::new(file).map_err(|source| RunError::Io {
        what: "reading the artifact".into(),
        source,
    })?;
    let art = smolvm_format::Artifact::parse(&src).map_err(VerifyError::from)?;
    trace.mark("parsed trailer, header, manifest");
    let state = check_signature(&art, &opts.trusted)?;
    if state == SignatureState::Unsigned {
        // Fail closed: nothing vouches for the hashes of an unsigned artifact.
        return Err(VerifyError::Unsigned.into());
    }
    let key_id = state
        .key_id()
        .expect("an unsigned artifact was refused above");
    trace.mark("signature verified");
    let (name, version) = (&art.manifest.name, &art.manifest.version);
    let first_signer = check_first_signer(&art.manifest, &state, opts)?;
    let floor = check_rollback(name, version, &state, opts)?;

    // The person's settings over the artifact's, and what they make.
    let config = opts.settings.apply(&art.manifest.config);
    // The artifact only asks for the current directory; the person decides.
    let cwd = if config.share_cwd {
        Some(consent_to_cwd(name, key_id, opts)?)
    } else {
        None
    };
    let volumes = opts
        .settings
        .volumes_for(&config, cwd.as_ref().map(|c| c.dir.as_path()))
        .map_err(|e| RunError::Settings(e.0))?;
    let mut spec = build_spec(&config, &opts.args, opts.host.term.clone())?;
    spec.set_volumes(&volumes)?;
    let policy = crate::net::Policy::from_config(&config, &opts.publish)?;
    let ssh_agent = forward_agent(&config, &mut spec, opts);

    // This host: a machine it cannot run or contain stops here, before any
    // slow first-start work.
    check_host(&policy, !volumes.is_empty(), opts)?;
    let shares = volumes
        .into_iter()
        .map(open_share)
        .collect::<Result<Vec<_>, _>>()?;

    let cache = Cache::open(default_cache_dir()?)?;
    let (
        kernel,
        crate::rootfs_image::RootImage {
            file: root_image,
            pending,
        },
    ) = cached_sections(&cache, &art, trace)?;
    // The overlay disk is scratch space beside the cache (on disk, where a
    // tmpfs /tmp would be RAM again); the storage is the user's data.
    let rotated_from = first_signer
        .as_ref()
        .and_then(|f| f.rotated_from)
        .map(|from| from.key_id());
    let disks = crate::disk::Disks::prepare(
        &config,
        name,
        key_id,
        rotated_from,
        cache.root(),
        crate::disk::default_storage_dir,
        opts.reset_storage,
    )?;
    if let Some(note) = disks.migration.as_ref().and_then(|m| m.note(name)) {
        eprintln!("{note}");
    }
    trace.mark("disks ready");

    let net = egress(policy)?;
    Remembered {
        floor,
        cwd,
        first_signer,
    }
    .commit(name, version, key_id);
    Ok(Prepared {
        config,
        spec,
        kernel,
        root_image,
        pending,
        disks,
        shares,
        net,
        ssh_agent,
        timeout: opts.timeout,
        allow_no_landlock: opts.allow_no_landlock,
        host: opts.host.clone(),
    })
}

/// The kernel and root image from the cache, on the cold path read from
/// the artifact (each section's hash checked while it is written).
fn cached_sections(
    cache: &Cache,
    art: &smolvm_format::Artifact<'_, FileSource>,
    trace: &Trace,
) -> Result<(File, crate::rootfs_image::RootImage), RunError> {
    let kernel_entry = art
        .manifest
        .section(SectionKind::Kernel)
        .expect("parse requires it");
    let rootfs_entry = art
        .manifest
        .section(SectionKind::Rootfs)
        .expect("parse requires it");
    // The attestations (SBOM, provenance) and the icon are never used
    // here, but a damaged artifact fails closed whichever of its bytes was
    // hit; they are small (a few KiB; an icon at most 512 KiB), so every
    // start hashes them.
    for entry in art.manifest.sections.iter().filter(|e| {
        matches!(
            e.kind,
            SectionKind::Sbom | SectionKind::Provenance | SectionKind::Icon
        )
    }) {
        art.verify_section(entry).map_err(VerifyError::Format)?;
    }
    let kernel = cache.kernel(art, kernel_entry)?;
    trace.mark("kernel ready");
    let root = cache.rootfs_image(art, rootfs_entry, trace)?;
    trace.mark("rootfs ready");
    Ok((kernel, root))
}

/// The egress filter when the machine has a network: the policy and this
/// host's own addresses (which the guest may not reach unless allowed).
fn egress(policy: crate::net::Policy) -> Result<Option<Arc<crate::net::Egress>>, RunError> {
    if !policy.net {
        return Ok(None);
    }
    let own = crate::net::host_addresses().map_err(|source| RunError::Io {
        what: "listing the host's addresses for the network policy".into(),
        source,
    })?;
    Ok(Some(crate::net::Egress::new(policy, own)))
}

/// The host's SSH agent socket when this start forwards it, and the
/// workload's `SSH_AUTH_SOCK` pointing at the guest's end.
fn forward_agent(config: &MachineConfig, spec: &mut RunSpec, opts: &RunOptions) -> Option<PathBuf> {
    let ssh_agent = crate::net::agent::decide(
        config.ssh_agent,
        opts.ssh_agent || opts.host.ssh_agent,
        opts.host.ssh_auth_sock.as_deref(),
    );
    if ssh_agent.is_some() {
        spec.env.retain(|e| !e.starts_with(b"SSH_AUTH_SOCK="));
        spec.env
            .push(format!("SSH_AUTH_SOCK={}", crate::net::agent::GUEST_SOCKET).into_bytes());
    }
    ssh_agent
}

/// What a prepared start remembers once everything is checked: the version
/// floor, the consent to the current directory, the first signer.
struct Remembered {
    floor: Option<(VersionState, smolvm_signing::KeyId)>,
    cwd: Option<CwdConsent>,
    first_signer: Option<FirstSigner>,
}

/// What trust on first use remembers once the start is prepared: the
/// signer's key, pinned for the name.
struct FirstSigner {
    known: crate::known_signers::KnownSigners,
    signer: PublicKey,
    /// `None`: pin the signer (the name's first start, or the key of a
    /// pinned id that is the signer's). Else the pinned key that endorsed
    /// this signer (crate::rotation), whose storage it takes over.
    rotated_from: Option<crate::known_signers::Pin>,
}

impl Remembered {
    /// From here on this version is the floor for its signer and name. A
    /// state that cannot be written keeps the old one, with a warning.
    fn commit(self, name: &str, version: &str, key_id: smolvm_signing::KeyId) {
        if let Some((mut s, key_id)) = self.floor {
            if let Err(e) = s.remember(key_id, name, version) {
                eprintln!(
                    "warning: the minimum version of {name} is not remembered: {}",
                    crate::exit::chain(&e)
                );
            }
        }
        if let Some(c) = self.cwd {
            c.remember(name, key_id);
        }
        let remembered = match self.first_signer {
            None => Ok(()),
            Some(mut first) => match first.rotated_from {
                None => first.known.remember(name, &first.signer),
                Some(from) => {
                    eprintln!(
                        "smolvm: {name}: signer key {key_id} is endorsed by key {}, the signer remembered for {name} (rotation record); remembering {key_id} from now on",
                        from.key_id()
                    );
                    first.known.rotate(name, from, &first.signer)
                }
            },
        };
        if let Err(e) = remembered {
            eprintln!(
                "warning: the signer of {name} is not remembered: {}",
                crate::exit::chain(&e)
            );
        }
    }
}

/// Trust on first use (crate::known_signers): without trusted keys, a name
/// started here before must carry the same signer, or one the pinned key
/// endorsed (crate::rotation). Returns what to remember once the start is
/// prepared.
fn check_first_signer(
    manifest: &smolvm_format::Manifest,
    state: &SignatureState,
    opts: &RunOptions,
) -> Result<Option<FirstSigner>, RunError> {
    use crate::known_signers::{KnownSigners, PinCheck};
    // A trusted start is the person's explicit choice: pins are neither
    // checked nor changed (that is how one run accepts a new signer).
    let (SignatureState::SelfConsistent { key_id }, Some(path)) = (state, &opts.known_signers)
    else {
        return Ok(None);
    };
    let name = &manifest.name;
    // check_signature verified it against the key id and the signature.
    let signer = manifest
        .signer
        .as_ref()
        .and_then(|s| PublicKey::from_bytes(s.public_key.as_bytes()).ok())
        .ok_or(VerifyError::Unsigned)?;
    let known = KnownSigners::load(path).map_err(TrustError::from)?;
    match known.check(name, &signer) {
        // A pinned id without its key: remembering records the key.
        PinCheck::First | PinCheck::SameId { .. } => Ok(Some(FirstSigner {
            known,
            signer,
            rotated_from: None,
        })),
        PinCheck::Same => Ok(None),
        PinCheck::Changed { pinned } => {
            // check_signature verified the record; this asks only whether
            // the pinned key is in it.
            let endorsed = crate::rotation::lineage(manifest)
                .map_err(|e| VerifyError::Rotation(e.0))?
                .is_some_and(|l| pinned.in_lineage(&l));
            if endorsed {
                return Ok(Some(FirstSigner {
                    known,
                    signer,
                    rotated_from: Some(pinned),
                }));
            }
            Err(TrustError::SignerChanged {
                name: name.to_string(),
                signer: *key_id,
                pinned: pinned.key_id(),
                path: path.clone(),
            }
            .into())
        }
    }
}

/// The minimum-version checks: `--smolvm-min-version`, and the highest
/// version of this name and trusted signer started here before. Returns the
/// state to record this version in once the start is prepared.
fn check_rollback(
    name: &str,
    version: &str,
    state: &SignatureState,
    opts: &RunOptions,
) -> Result<Option<(VersionState, smolvm_signing::KeyId)>, RunError> {
    let rollback = |minimum: &str, why: String| RunError::Rollback {
        name: name.to_string(),
        version: version.to_string(),
        minimum: minimum.to_string(),
        why,
    };
    if let Some(min) = opts.min_version.as_deref() {
        if !version_at_least(version, min) {
            return Err(rollback(min, "required for this start".into()));
        }
    }
    // Only a trusted signer's releases are remembered: with the artifact's
    // own key, anyone can sign any name (SPEC.md, "Threat model").
    let (SignatureState::Trusted { key_id }, Some(path)) = (state, &opts.version_state) else {
        return Ok(None);
    };
    let s = VersionState::load(path)?;
    if let Some(min) = s.minimum(*key_id, name) {
        if !version_at_least(version, min) {
            return Err(rollback(
                min,
                format!(
                    "{name} {min} signed by key {key_id} started here before; remove {} to allow older releases again",
                    path.display()
                ),
            ));
        }
    }
    Ok(Some((s, *key_id)))
}

/// The person's consent to share the current directory, and what to
/// remember once the start is prepared.
struct CwdConsent {
    /// Canonical.
    dir: PathBuf,
    /// Set when the answer was "always".
    remember: Option<crate::consent::Consents>,
}

impl CwdConsent {
    /// Remembers an "always" answer; a state that cannot be written means
    /// the person is asked again next time.
    fn remember(self, name: &str, key_id: smolvm_signing::KeyId) {
        if let Some(mut consents) = self.remember {
            if let Err(e) = consents.remember(key_id, name, &self.dir) {
                eprintln!(
                    "warning: sharing {} with {name} is not remembered: {}",
                    self.dir.display(),
                    crate::exit::chain(&e)
                );
            }
        }
    }
}

/// Decides whether the machine gets the current directory
/// (crate::consent::decide): the flag or environment, a remembered answer,
/// or the person's answer on the terminal; refused otherwise.
fn consent_to_cwd(
    name: &str,
    key_id: smolvm_signing::KeyId,
    opts: &RunOptions,
) -> Result<CwdConsent, RunError> {
    use crate::consent::{self, Consents, Grant, Question};
    let dir = crate::settings::canonical_cwd(opts.host.cwd.as_deref())
        .map_err(|e| RunError::Settings(e.0))?;
    let home = opts
        .host
        .home
        .as_deref()
        .and_then(|h| std::fs::canonicalize(h).ok());
    let question = Question {
        dir: &dir,
        name,
        key_id,
        can_remember: opts.consent_file.is_some() && consent::can_remember(&dir, home.as_deref()),
    };
    let given = opts.share_cwd || opts.host.share_cwd;
    let consents = match (&opts.consent_file, given) {
        (Some(path), false) => Some(Consents::load(path)?),
        _ => None,
    };
    let remembered = consents
        .as_ref()
        .is_some_and(|c| c.allows(key_id, name, &dir));
    let grant = consent::decide(&question, remembered, given, opts.host.terminal, &mut |q| {
        (opts.ask_consent)(q)
    })?;
    let remember = if grant == Grant::Always {
        consents
    } else {
        None
    };
    Ok(CwdConsent { dir, remember })
}

/// What this host must offer to run the machine: a network policy it can
/// enforce, KVM, and a sandbox that can keep the VMM to what the person shared.
fn check_host(
    policy: &crate::net::Policy,
    has_shares: bool,
    opts: &RunOptions,
) -> Result<(), RunError> {
    #[cfg(all(feature = "vmm", target_os = "linux"))]
    if policy.net {
        let missing = if opts.host.simulate_no_seccomp_notify {
            Err(
                "seccomp user notification reported missing (SMOLVM_TEST_NO_SECCOMP_NOTIFY=1)"
                    .into(),
            )
        } else {
            crate::net::supervisor::available()
        };
        missing.map_err(|why| {
            RunError::Unsupported(format!(
                "this machine has network access, and its policy cannot be enforced here: {why}; refusing to start"
            ))
        })?;
    }
    #[cfg(feature = "vmm")]
    if !opts.dry_run {
        crate::launch::check_kvm(opts.host.skip_kvm_check)?;
    }
    // Shares need Landlock (or the person's explicit opt-out): refused here,
    // before the cache, the disks and the fork.
    #[cfg(all(feature = "vmm", target_os = "linux"))]
    crate::sandbox::check(has_shares, opts.allow_no_landlock)
        .map_err(crate::launch::LaunchError::from)?;
    let _ = (policy, has_shares, opts);
    Ok(())
}

impl Prepared {
    /// The one place a first start's root image is published (fsync,
    /// rename): by the supervisor while the VMM boots from it, or by a dry run.
    fn publish_rootfs(pending: Option<Publish>) -> Result<(), CacheError> {
        pending.map_or(Ok(()), Publish::finish)
    }

    /// Everything a start does but the VM: libkrun is configured as for a
    /// real start, and the root image published.
    pub fn dry_run(mut self, trace: &Trace) -> Result<(), RunError> {
        let pending = self.pending.take();
        #[cfg(feature = "vmm")]
        crate::launch::configure(&self.machine(), None)?;
        trace.mark("entering the VM");
        Self::publish_rootfs(pending)?;
        trace.mark("rootfs image published");
        Ok(())
    }

    /// Boots the machine. Two processes from here (crate::control): this
    /// one supervises and exits with the guest's status; the VMM child
    /// configures libkrun, enters its sandbox and becomes the VM. Returns
    /// only with an error (in whichever process it happened).
    #[cfg(feature = "vmm")]
    pub fn start(mut self, trace: &Trace) -> Result<std::convert::Infallible, RunError> {
        use crate::control::{fork_vmm, Side};
        let pending = self.pending.take();
        let side = fork_vmm().map_err(crate::launch::LaunchError::Control)?;
        trace.mark("control channel made, VMM forked");
        match side {
            Side::Supervisor(supervisor) => {
                if let Err(e) = Self::publish_rootfs(pending) {
                    eprintln!(
                        "warning: the root filesystem image was not saved in the cache ({}); the next start writes it again",
                        crate::exit::chain(&e)
                    );
                }
                supervisor.supervise(self.timeout)
            }
            Side::Vmm { control_socket } => {
                drop(pending);
                let machine = self.machine();
                let vmm = crate::launch::configure(&machine, Some(&control_socket))?;
                trace.mark("libkrun configured");
                Err(vmm.enter(&machine, trace).into())
            }
        }
    }

    #[cfg(feature = "vmm")]
    fn machine(&self) -> crate::launch::Machine<'_> {
        crate::launch::Machine {
            kernel: &self.kernel,
            root_image: &self.root_image,
            cpus: self.config.cpus,
            memory_mib: self.config.memory_mib,
            net: self.net.clone(),
            ssh_agent: self.ssh_agent.as_deref(),
            disks: &self.disks,
            shares: &self.shares,
            spec: &self.spec,
            allow_no_landlock: self.allow_no_landlock,
            host: &self.host,
        }
    }
}

/// [`prepare`], then [`Prepared::start`] (or [`Prepared::dry_run`]).
/// Returns only on failure, or with `Ok` after a dry run; a booted guest
/// ends the process with its own exit status.
pub fn run_artifact(file: File, opts: &RunOptions, trace: &Trace) -> Result<(), RunError> {
    let prepared = prepare(file, opts, trace)?;
    if opts.dry_run {
        return prepared.dry_run(trace);
    }
    #[cfg(feature = "vmm")]
    {
        match prepared.start(trace)? {}
    }
    #[cfg(not(feature = "vmm"))]
    {
        drop(prepared);
        Err(RunError::Config(
            "this build has no VMM (built without the `vmm` feature)".into(),
        ))
    }
}

impl crate::exit::ExitStatus for RunError {
    fn exit_code(&self) -> u8 {
        use crate::exit::{INVALID, USAGE_OR_IO};
        match self {
            RunError::Verify(e) => e.exit_code(),
            RunError::Trust(e) => e.exit_code(),
            RunError::Cache(e) => e.exit_code(),
            RunError::Config(_) | RunError::Spec(_) | RunError::Rollback { .. } => INVALID,
            // The signed config's network settings were checked at pack
            // time; what fails here are run-time publications (usage).
            RunError::Network(_)
            | RunError::Unsupported(_)
            | RunError::Settings(_)
            | RunError::Io { .. } => USAGE_OR_IO,
            RunError::Disk(e) => e.exit_code(),
            RunError::Consent(e) => e.exit_code(),
            #[cfg(feature = "vmm")]
            RunError::Launch(_) => USAGE_OR_IO,
        }
    }
}
