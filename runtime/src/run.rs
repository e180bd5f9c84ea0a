//! From an artifact file to a running guest: the one code path behind the
//! stub executable and `smolvm pack run`.

use std::ffi::OsString;
use std::fs::File;
use std::path::PathBuf;
use std::time::Instant;

use smolvm_format::{FileSource, SectionKind};
use smolvm_signing::PublicKey;
use thiserror::Error;

use crate::cache::{default_cache_dir, Cache, CacheError};
use crate::spec::build_spec;
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
    /// Refuse versions older than this (`--smolvm-min-version`, `pack run --min-version`).
    pub min_version: Option<String>,
    /// Where the highest version started with a trusted key is remembered
    /// per signer and name, and checked (`None`: neither).
    pub version_state: Option<PathBuf>,
    /// Start the machine's persistent storage over, empty
    /// (`--smolvm-reset-storage`, `pack run --reset-storage`).
    pub reset_storage: bool,
    /// Run-time env, cpus, memory, workdir and volumes (crate::settings),
    /// already checked; they win over the artifact's config.
    pub settings: crate::settings::RunSettings,
}

/// Phase timings printed to stderr when `SMOLVM_TRACE=1`.
pub struct Trace {
    start: Instant,
    enabled: bool,
}

impl Trace {
    pub fn new() -> Trace {
        Trace {
            start: Instant::now(),
            enabled: std::env::var_os("SMOLVM_TRACE").is_some_and(|v| v == "1"),
        }
    }

    pub fn mark(&self, phase: &str) {
        if self.enabled {
            eprintln!(
                "smolvm-trace: {:>9.3} ms  {phase}",
                self.start.elapsed().as_secs_f64() * 1e3
            );
        }
    }
}

impl Default for Trace {
    fn default() -> Self {
        Trace::new()
    }
}

/// Verifies the artifact in `file`, prepares kernel and root from the cache
/// and boots. Returns only on failure, or with `Ok` after a dry run; a
/// booted guest ends the process with its own exit status.
pub fn run_artifact(file: File, opts: &RunOptions, trace: &Trace) -> Result<(), RunError> {
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
    trace.mark("signature verified");
    let (name, version) = (&art.manifest.name, &art.manifest.version);
    let rollback = |minimum: &str, why: String| RunError::Rollback {
        name: name.clone(),
        version: version.clone(),
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
    let mut remembered = match (&state, &opts.version_state) {
        (SignatureState::Trusted { key_id }, Some(path)) => {
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
            Some((s, *key_id))
        }
        _ => None,
    };
    let effective = opts.settings.apply(&art.manifest.config);
    let config = &effective;
    let cwd = std::env::current_dir().ok();
    let volumes = opts
        .settings
        .volumes_for(config, cwd.as_deref())
        .map_err(|e| RunError::Settings(e.0))?;
    // Before the cache and the VM: a workload past the guest's limits stops here.
    let mut spec = build_spec(config, &opts.args)?;
    spec.set_volumes(&volumes)?;
    let policy = crate::net::Policy::from_config(config, &opts.publish)?;
    let ssh_agent = crate::net::agent::decide(config.ssh_agent, opts.ssh_agent);
    if ssh_agent.is_some() {
        spec.env.retain(|e| !e.starts_with(b"SSH_AUTH_SOCK="));
        spec.env
            .push(format!("SSH_AUTH_SOCK={}", crate::net::agent::GUEST_SOCKET).into_bytes());
    }
    // On a terminal, its type travels with it (unless the machine sets
    // TERM): a shell in the guest edits lines and draws for the user's terminal.
    if let Some(term) = crate::control::terminal_type() {
        if !spec.env.iter().any(|e| e.starts_with(b"TERM=")) {
            spec.env.push(term);
        }
    }
    // Fail closed: a network this host cannot police is not started.
    #[cfg(all(feature = "vmm", target_os = "linux"))]
    if policy.net {
        crate::net::supervisor::available().map_err(|why| {
            RunError::Unsupported(format!(
                "this machine has network access, and its policy cannot be enforced here: {why}; refusing to start"
            ))
        })?;
    }
    let kernel_entry = art
        .manifest
        .section(SectionKind::Kernel)
        .expect("parse requires it");
    let rootfs_entry = art
        .manifest
        .section(SectionKind::Rootfs)
        .expect("parse requires it");

    // Before any slow first-start work: a host that cannot boot says so at once.
    #[cfg(feature = "vmm")]
    if !opts.dry_run {
        crate::launch::check_kvm()?;
    }
    let cache = Cache::open(default_cache_dir()?)?;
    // Cold path only: a section is read (and its hash checked while it is
    // written) when the cache does not hold it yet.
    let kernel = cache.kernel(&art, kernel_entry)?;
    trace.mark("kernel ready");
    let crate::rootfs_image::RootImage {
        file: root_image,
        pending,
    } = cache.rootfs_image(&art, rootfs_entry, trace)?;
    let boot_dir = cache.boot_dir()?;
    trace.mark("rootfs ready");
    // The overlay disk is scratch space beside the cache (on disk, where a
    // tmpfs /tmp would be RAM again); the storage is the user's data.
    #[cfg_attr(not(feature = "vmm"), allow(unused_variables))]
    let disks = crate::disk::Disks::prepare(
        config,
        name,
        cache.root(),
        crate::disk::default_storage_dir,
        opts.reset_storage,
    )?;
    trace.mark("disks ready");
    // Everything checked: from here on this version is the floor for its
    // signer and name. A state that cannot be written keeps the old floor.
    if let Some((s, key_id)) = remembered.as_mut() {
        if let Err(e) = s.remember(*key_id, name, version) {
            eprintln!(
                "warning: the minimum version of {name} is not remembered: {}",
                crate::exit::chain(&e)
            );
        }
    }

    #[cfg(feature = "vmm")]
    {
        use crate::launch::{boot, Machine};
        let machine = Machine {
            kernel: &kernel,
            root_image: &root_image,
            root: &boot_dir,
            cpus: config.cpus,
            memory_mib: config.memory_mib,
            timeout: opts.timeout,
            net: if policy.net {
                let own = crate::net::host_addresses().map_err(|source| RunError::Io {
                    what: "listing the host's addresses for the network policy".into(),
                    source,
                })?;
                Some(crate::net::Egress::new(policy, own))
            } else {
                None
            },
            ssh_agent: ssh_agent.as_deref(),
            disks: &disks,
            volumes: &volumes,
            spec: &spec,
        };
        trace.mark("entering the VM");
        if opts.dry_run {
            // Everything a start does but the VM: the image is published
            // here, where a real start's supervisor does it (launch::boot).
            boot(&machine, false, None)?;
            if let Some(p) = pending {
                p.finish()?;
                trace.mark("rootfs image published");
            }
        } else {
            boot(&machine, true, pending)?;
        }
        Ok(())
    }
    #[cfg(not(feature = "vmm"))]
    {
        if let Some(p) = pending {
            p.finish()?;
        }
        let _ = (
            kernel, root_image, boot_dir, spec, policy, ssh_agent, volumes,
        );
        Err(RunError::Config(
            "this build has no VMM (built without the `vmm` feature)".into(),
        ))
    }
}
