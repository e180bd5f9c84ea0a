//! `smolvm`: pack a Linux workload into one signed executable that boots it
//! in its own microVM.
//!
//! Exit codes: 0 ok; 1 verification or validation failed; 2 usage or I/O
//! error; when a machine runs, the guest's own exit code. Every error is
//! mapped by `smolvm_runtime::exit` (with the packer's own types from
//! `smolvm_packer::exit`), the same mapping the stub uses.

// The doc comments of the clap types below are `--help` text, written for a
// terminal (`[:TAG|@DIGEST]`), not rustdoc links.
#![allow(rustdoc::broken_intra_doc_links)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use smolvm_format::{Artifact, FileSource, FormatError, SectionKind};
use smolvm_packer::create::{create, CreateOptions};
use smolvm_packer::exit::packer_exit_code;
use smolvm_packer::image::reference::RegistryRef;
use smolvm_packer::image::registry::RegistryOptions;
use smolvm_packer::provenance::SourceRequirement;
use smolvm_packer::remote::{remote_reference, RemoteArtifact, RemoteOptions};
use smolvm_runtime::exit::{self, ExitStatus};
use smolvm_runtime::inspect;
use smolvm_runtime::known_signers;
use smolvm_runtime::trust::{
    default_key_dirs, default_state_file, env_key_files, resolve_trusted, version_at_least,
};
use smolvm_runtime::{check_signature, verify_artifact, VerifyError, VerifyOptions};
use smolvm_signing::PublicKey;

#[derive(Parser)]
#[command(
    name = "smolvm",
    version,
    about = "Pack a Linux workload into one signed executable that boots it in its own microVM"
)]
struct Cli {
    #[command(subcommand)]
    command: Top,
}

#[derive(Subcommand)]
enum Top {
    /// Create, inspect, verify and run smolmachine artifacts.
    #[command(subcommand)]
    Pack(Pack),
}

#[derive(Subcommand)]
enum Pack {
    /// Pack a kernel, a root filesystem and a config into a signed artifact.
    ///
    /// `-o NAME` writes a packed executable (the stub runtime with the payload
    /// appended, mode 0755); `-o NAME.smolmachine` writes the bare payload.
    /// The output re-verifies with the signing key before it is put in place.
    ///
    /// Example:
    ///   smolvm pack keygen -o keys
    ///   smolvm pack create --rootfs ./root --key keys/smolvm.key -o hello
    ///   smolvm pack create --image alpine:3.20 --key keys/smolvm.key -o alpine
    ///   smolvm pack create --image alpine:3.20 --key env:SMOLVM_SIGNING_KEY -o alpine
    ///   smolvm pack create --image alpine:3.20 --key ssh-agent -o alpine
    ///   smolvm pack create --smolfile Smolfile --no-sign -o app.smolmachine
    #[command(verbatim_doc_comment)]
    Create(CreateArgs),
    /// Show what an artifact contains: identity, signer, sections, config.
    ///
    /// Reads without trusting: the signature state is reported, not required.
    ///
    /// Example:
    ///   smolvm pack inspect hello
    ///   smolvm pack inspect --json hello.smolmachine | jq .config
    ///   smolvm pack inspect localhost:5000/tools/hello:1.0   # in a registry
    #[command(verbatim_doc_comment)]
    Inspect {
        /// A packed executable, a bare .smolmachine payload, or a registry
        /// reference naming its registry (REGISTRY/REPOSITORY[:TAG|@DIGEST])
        /// of a pushed one: only its manifest, signature and config are read.
        file: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Allow plain HTTP to a registry not on this machine.
        #[arg(long)]
        insecure: bool,
        /// List the root filesystem instead: type, mode, owner, size, sha256
        /// and path of every entry, read from the image in the artifact.
        #[arg(long, conflicts_with_all = ["sbom", "provenance"])]
        files: bool,
        /// Print the signed SBOM instead (SPDX 2.3 JSON: the packages the
        /// root's dpkg, apk and Python databases list).
        #[arg(long, conflicts_with = "provenance")]
        sbom: bool,
        /// Print the signed provenance instead (in-toto Statement, SLSA v1
        /// predicate: builder, CI invocation, source, input digests).
        #[arg(long)]
        provenance: bool,
    },
    /// Show what changed between two artifacts, for release review.
    ///
    /// Compares identity (name, version), every config field, the kernel
    /// (uncompressed sha256) and the root filesystem's entries (added,
    /// removed, changed: content, mode, owner, type, symlink target).
    /// Neither artifact is trusted or verified here: `pack verify` them.
    /// Exit 0: identical. Exit 1: they differ. Exit 2: usage or I/O error.
    ///
    /// Example:
    ///   smolvm pack diff app-1.0 app-1.1
    ///   smolvm pack diff --json app-1.0.smolmachine app-1.1.smolmachine | jq .files.changed
    #[command(verbatim_doc_comment)]
    Diff {
        /// The older artifact (packed executable or bare payload).
        a: PathBuf,
        /// The newer artifact.
        b: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Check structure, every hash and the signature against trusted keys.
    ///
    /// Exit 0: valid and signed by one of the --key keys. Exit 1: invalid,
    /// unsigned, or signed by a key not given. Exit 2: usage or I/O error.
    ///
    /// Example:
    ///   smolvm pack verify --key keys/smolvm.pub hello
    ///   smolvm pack verify --key ~/.ssh/id_ed25519.pub --min-version 1.2.0 --json hello
    ///   smolvm pack verify --key keys/smolvm.pub ghcr.io/me/hello:1.0
    #[command(verbatim_doc_comment)]
    Verify {
        /// A packed executable, a bare .smolmachine payload, or a registry
        /// reference of a pushed one (REGISTRY/REPOSITORY[:TAG|@DIGEST]):
        /// there the signature and the config section are checked without
        /// downloading the kernel or the root filesystem.
        file: PathBuf,
        /// Allow plain HTTP to a registry not on this machine.
        #[arg(long)]
        insecure: bool,
        /// Trusted public key file (smolvm .pub or OpenSSH id_ed25519.pub); repeatable.
        #[arg(long = "key", value_name = "PUB")]
        keys: Vec<PathBuf>,
        /// Refuse artifacts older than this version (rollback protection).
        #[arg(long, value_name = "VERSION")]
        min_version: Option<String>,
        /// Require the signed provenance to name this source repository
        /// (`https://github.com/o/r` or `github.com/o/r`), and, after @, a commit
        /// (7 or more hex digits of it). Exit 1 (wrong-source) otherwise.
        #[arg(long, value_name = "REPO[@COMMIT]")]
        source: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Boot a bare .smolmachine payload (or a packed executable) here.
    ///
    /// Same runtime as a packed executable: verify (fail closed), prepare the
    /// kernel and root from the per-user cache, boot with libkrun. ARGS after
    /// `--` go to the workload; the exit code is the guest's. Without --key
    /// (or SMOLVM_TRUSTED_KEYS), the keys in the trusted-keys directories
    /// (~/.config/smolvm/trusted-keys, /etc/smolvm/trusted-keys) are required
    /// when there are any; older versions than one already started with a
    /// trusted key are refused.
    ///
    /// Run-time settings (-e, -v, --cpus, --mem, --workdir) win over the
    /// machine's Smolfile, which wins over its image, which wins over the
    /// defaults.
    ///
    /// Example:
    ///   smolvm pack run --key keys/smolvm.pub hello.smolmachine -- echo hi
    ///   smolvm pack run -v ./data:/data:ro -e LEVEL=debug --mem 1024 app.smolmachine
    #[command(verbatim_doc_comment)]
    Run(RunArgs),
    /// Generate an ed25519 signing key pair: DIR/NAME.key (0600) and DIR/NAME.pub.
    Keygen {
        /// Directory to write the key pair into (created if missing).
        #[arg(short = 'o', long = "output", value_name = "DIR")]
        dir: PathBuf,
        /// File stem of the key files.
        #[arg(long, default_value = "smolvm")]
        name: String,
        /// Replace an existing key pair.
        #[arg(long)]
        force: bool,
    },
    /// Print the public key file (smolvm .pub format) of a signing key.
    ///
    /// For keys held elsewhere, so that the .pub to publish comes from the
    /// key itself: takes every `pack create --key` form.
    ///
    /// Example:
    ///   smolvm pack pubkey --key ssh-agent > release.pub
    ///   smolvm pack pubkey --key "pkcs11:token=ci;object=smolvm?module-path=M" > release.pub
    #[command(verbatim_doc_comment)]
    Pubkey {
        /// The key: a secret key file, env:NAME, -, ssh-agent[:WHICH] or pkcs11:URI.
        #[arg(long, value_name = "SECRET")]
        key: PathBuf,
    },
    /// Store an artifact in an OCI registry, byte for byte, as an OCI artifact.
    ///
    /// The file (packed executable or bare payload) becomes one layer of an
    /// OCI manifest with artifactType application/vnd.smolmachine.artifact.v2,
    /// tagged REF; its name, version and key id are copied into annotations.
    /// Credentials are those image pulls use (~/.docker/config.json: `docker
    /// login`); plain HTTP only to this machine unless --insecure. Prints the
    /// manifest digest (REF@DIGEST pins exactly this artifact).
    ///
    /// Example:
    ///   smolvm pack push hello ghcr.io/me/hello:1.0
    ///   smolvm pack push app.smolmachine localhost:5000/app:1.0
    #[command(verbatim_doc_comment)]
    Push {
        /// The artifact to store.
        file: PathBuf,
        /// Where: REGISTRY/REPOSITORY[:TAG] (the tag defaults to latest).
        reference: String,
        /// Allow plain HTTP to a registry not on this machine.
        #[arg(long)]
        insecure: bool,
    },
    /// The guest kernel `pack create` packs by default.
    #[command(subcommand)]
    Kernel(KernelCmd),
    /// What the per-user cache holds (kernels, root images, registry blobs).
    #[command(subcommand)]
    Cache(CacheCmd),
    /// The signers remembered on first use (trust on first use).
    ///
    /// With no trusted keys configured, the first start of each name
    /// remembers its signer's key id ($XDG_STATE_HOME/smolvm/known-signers.json,
    /// default ~/.local/state/smolvm); an artifact of that name signed by
    /// another key is refused (exit 1). To accept a new signer for one run,
    /// give its public key (--smolvm-key=NEW.pub, pack run --key NEW.pub);
    /// for good, forget the old one here.
    ///
    /// Example:
    ///   smolvm pack trust list
    ///   smolvm pack trust forget notes
    #[command(subcommand, verbatim_doc_comment)]
    Trust(TrustCmd),
    /// Remove cache entries no running machine holds.
    ///
    /// The cache ($SMOLVM_CACHE_DIR, else $XDG_CACHE_HOME/smolvm, else
    /// ~/.cache/smolvm) keeps each kernel and root image a start used, and
    /// the blobs image pulls fetched. Without options, everything not in use
    /// goes (the next start writes what it needs again). --keep-last keeps the
    /// N most recently used of each kind; --older-than removes what was last
    /// used longer ago; --max-size removes the least recently used until the
    /// cache fits. Entries a running machine holds are always kept.
    ///
    /// Example:
    ///   smolvm pack prune --dry-run
    ///   smolvm pack prune --keep-last 3 --older-than 30d
    ///   smolvm pack prune --max-size 10G
    #[command(verbatim_doc_comment)]
    Prune {
        /// Keep the N most recently used entries of each kind.
        #[arg(long, value_name = "N")]
        keep_last: Option<usize>,
        /// Remove entries last used longer ago than this (30d, 12h, 2weeks).
        #[arg(long, value_name = "AGE", value_parser = smolvm_packer::prune::parse_age)]
        older_than: Option<std::time::Duration>,
        /// Remove least recently used entries until the cache is at most this (10G, 512M).
        #[arg(long, value_name = "SIZE", value_parser = smolvm_packer::prune::parse_size)]
        max_size: Option<u64>,
        /// Show what would be removed; remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Fetch an artifact from an OCI registry.
    ///
    /// The download is checked against its digest, then verified like
    /// `pack verify` (structure, every hash, the signature; with --key, the
    /// signer must be one of those keys) before OUT appears. Artifacts are
    /// stored as pushed: `-o NAME` needs a pushed packed executable (written
    /// 0755), `-o NAME.smolmachine` a pushed bare payload.
    ///
    /// The download goes to .smolvm-pull-HEX.part beside OUT (HEX: the
    /// artifact's sha256). If the transfer breaks (connection reset,
    /// timeout, registry 5xx), that file is kept and the next pull of the
    /// same artifact into the same directory resumes it with a ranged
    /// request; bytes that fail their digest are deleted instead. A second
    /// pull of the same artifact into the same directory while one runs
    /// fails at once (exit 2) rather than wait.
    ///
    /// Example:
    ///   smolvm pack pull ghcr.io/me/hello:1.0 --key keys/smolvm.pub -o hello
    ///   smolvm pack pull localhost:5000/app@sha256:... -o app.smolmachine
    #[command(verbatim_doc_comment)]
    Pull {
        /// REGISTRY/REPOSITORY[:TAG|@DIGEST].
        reference: String,
        /// Output: NAME for a packed executable, NAME.smolmachine for a bare payload.
        #[arg(short = 'o', long = "output", value_name = "OUT")]
        output: PathBuf,
        /// Require the signer to be this public key; repeatable.
        #[arg(long = "key", value_name = "PUB")]
        keys: Vec<PathBuf>,
        /// Allow plain HTTP to a registry not on this machine.
        #[arg(long)]
        insecure: bool,
    },
}

#[derive(Subcommand)]
enum KernelCmd {
    /// Download Debian's libkrunfw (the kernel smolvm is tested with),
    /// check it against the hashes pinned in this smolvm, and put it in the
    /// per-user cache (~/.cache/smolvm/kernel/libkrunfw.so.5), where
    /// `pack create` finds it. Exit 1 if a hash does not match (nothing is
    /// installed), 2 if the download fails.
    ///
    /// Example:
    ///   smolvm pack kernel fetch
    ///   smolvm pack kernel fetch --deb libkrunfw5_5.5.0+ds-1_amd64.deb   # offline
    #[command(verbatim_doc_comment)]
    Fetch {
        /// Use this copy of the pinned .deb instead of downloading it.
        #[arg(long, value_name = "FILE")]
        deb: Option<PathBuf>,
        /// Fetch and verify again even if a verified copy is cached.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum TrustCmd {
    /// List each name and the key id of its first signer.
    List,
    /// Forget the remembered signer of NAME: its next start (without
    /// trusted keys) remembers the signer that artifact carries.
    Forget {
        /// The artifact name, as `pack inspect` shows it.
        name: String,
    },
}

#[derive(Subcommand)]
enum CacheCmd {
    /// List the cache's entries: kind, size, last use, whether a running
    /// machine holds it, and its hash.
    Ls,
}

// `pack run`'s flags (the help text is the variant's doc comment and the
// fields' doc comments).
#[derive(Args)]
struct RunArgs {
    /// The artifact to boot.
    file: PathBuf,
    /// Require the signer to be this public key; repeatable (replaces
    /// the trusted-keys directories).
    #[arg(long = "key", value_name = "PUB")]
    keys: Vec<PathBuf>,
    /// Refuse artifacts older than this version (rollback protection).
    #[arg(long, value_name = "VERSION")]
    min_version: Option<String>,
    /// Verify and prepare, but do not start the VM.
    #[arg(long)]
    dry_run: bool,
    /// Publish a guest TCP port on the host: `[ADDR:]HOST:GUEST`, bound to
    /// ADDR (default 127.0.0.1). Needs `net = true`; repeatable.
    #[arg(short = 'p', long = "publish", value_name = "[ADDR:]HOST:GUEST")]
    publish: Vec<String>,
    /// Let the workload use your SSH agent ($SSH_AUTH_SOCK) if the machine
    /// asks for it (`[auth] ssh_agent`); keys never enter the guest.
    #[arg(long)]
    ssh_agent: bool,
    /// Share your current directory with a machine packed with
    /// `share_cwd = true` (at /cwd, read-write) without being asked.
    /// Without it (or SMOLVM_SHARE_CWD=1) you are asked on the terminal,
    /// and with no terminal the machine does not start (exit 2).
    #[arg(long)]
    share_cwd: bool,
    /// Serve shares (volumes, the current directory) even on a kernel
    /// without Landlock, where the VMM could reach every file you can
    /// (machines without shares start there anyway).
    #[arg(long)]
    allow_no_landlock: bool,
    /// Start the machine's persistent storage (its guest-only `volumes`,
    /// one disk per signer and machine name in
    /// ~/.local/share/smolvm/storage/KEYID) over, empty.
    #[arg(long)]
    reset_storage: bool,
    /// Stop the machine after SECONDS (2.5 is fine): the
    /// workload gets SIGTERM, is forced down 3 s later if still running,
    /// and `pack run` exits with 124.
    #[arg(long, value_name = "SECONDS", value_parser = smolvm_runtime::control::parse_timeout)]
    timeout: Option<std::time::Duration>,
    /// Share the existing host directory HOST at GUEST in the guest
    /// (read-only with `:ro`); files created there belong to you. Repeatable.
    #[arg(short = 'v', long = "volume", value_name = "HOST:GUEST[:ro]", value_parser = parse_volume)]
    volumes: Vec<smolvm_runtime::settings::Volume>,
    /// Set an environment variable for the workload; repeatable.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    env: Vec<String>,
    /// vCPUs, 1 up to this host's CPUs.
    #[arg(long, value_name = "N", value_parser = parse_cpus)]
    cpus: Option<u8>,
    /// Guest memory in MiB, 64 up to this host's memory.
    #[arg(long = "mem", value_name = "MIB", value_parser = parse_memory)]
    memory: Option<u32>,
    /// The workload's working directory (an absolute guest path).
    #[arg(long, value_name = "DIR", value_parser = parse_workdir)]
    workdir: Option<String>,
    /// Arguments for the workload (replace the config's cmd).
    #[arg(last = true)]
    args: Vec<std::ffi::OsString>,
}

// These doc comments are `--help` text, where `[:TAG]` means optional, not
// a rustdoc link.
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Args)]
struct CreateArgs {
    /// Output: NAME for a packed executable, NAME.smolmachine for a bare payload.
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    output: PathBuf,
    /// Smolfile (TOML) describing the machine; paths in it are relative to it.
    #[arg(long, value_name = "FILE")]
    smolfile: Option<PathBuf>,
    /// Root filesystem: a directory, or a .tar / .tar.gz / .tar.zst archive.
    #[arg(long, value_name = "DIR|TAR", conflicts_with = "image")]
    rootfs: Option<PathBuf>,
    /// Image to pack: a registry reference (alpine:3.20, localhost:5000/app@sha256:...),
    /// an OCI layout (oci:DIR[:TAG|@DIGEST]), a docker save archive
    /// (docker-archive:FILE[:REPO:TAG], or - for one on stdin), or a root
    /// filesystem directory or tarball. Its Entrypoint, Cmd, Env, WorkingDir
    /// and User fill what the Smolfile leaves unset.
    #[arg(long, value_name = "REF")]
    image: Option<String>,
    /// Allow plain HTTP to registries that are not on this machine
    /// (localhost registries may always use it).
    #[arg(long)]
    insecure: bool,
    /// Guest kernel: an ELF vmlinux or a libkrunfw.so (default: search the usual places).
    #[arg(long, value_name = "PATH")]
    kernel: Option<PathBuf>,
    /// Key to sign with: a secret key file (smolvm .key or unencrypted
    /// OpenSSH id_ed25519), or a source that keeps it off the disk:
    /// env:NAME (the key file's text in a variable), - (on stdin),
    /// ssh-agent[:SHA256:FP|KEYID|COMMENT] (an ed25519 key in the agent),
    /// pkcs11:URI (RFC 7512, e.g. pkcs11:token=ci;object=smolvm?module-path=M;
    /// PIN from SMOLVM_PKCS11_PIN). Every source signs identical bytes.
    #[arg(long, value_name = "SECRET", conflicts_with = "no_sign")]
    key: Option<PathBuf>,
    /// Produce an unsigned artifact (reported as unsigned, never as valid).
    #[arg(long)]
    no_sign: bool,
    /// A key that signed this name before (any --key form): it endorses the
    /// signing key in a rotation record, so runtimes that remember it as the
    /// name's signer accept the new key and remember that one. Repeatable,
    /// oldest first, for a chain (--rotate-from A --rotate-from B --key C).
    #[arg(
        long = "rotate-from",
        value_name = "OLD_SECRET",
        conflicts_with = "no_sign"
    )]
    rotate_from: Vec<PathBuf>,
    /// Executable to append the payload to (default: the smolvm stub runtime).
    #[arg(long, value_name = "PATH")]
    stub: Option<PathBuf>,
    /// zstd compression level, 1-22.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..=22))]
    level: Option<i32>,
    /// How the root filesystem image stores file data: none (default: the
    /// smallest download and the fastest pack; the largest image in the
    /// user's cache) or lz4 (the guest decompresses on read; a first start
    /// writes ~37% fewer bytes to the user's disk and starts sooner, but
    /// the download is ~15% larger and packing takes about a quarter longer).
    #[arg(long, value_name = "none|lz4", value_enum)]
    rootfs_compression: Option<smolvm_packer::smolfile::RootfsCompression>,
    /// Artifact name (default: the Smolfile's artifact.name, else the output file name).
    #[arg(long)]
    name: Option<String>,
    /// Artifact version (default: the Smolfile's artifact.version, else 0.0.0).
    #[arg(long = "artifact-version", value_name = "VERSION")]
    version: Option<String>,
}

/// An error with the exit code it maps to.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        let code = smolvm_runtime::error::exit_code_with(error.as_ref(), &packer_exit_code);
        Failure { code, error }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("smolvm: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}

fn run(cli: Cli) -> Result<u8, Failure> {
    match cli.command {
        Top::Pack(Pack::Create(a)) => pack_create(a),
        Top::Pack(Pack::Inspect {
            file,
            json,
            insecure,
            files,
            sbom,
            provenance,
        }) => inspect(&file, json, insecure, files, sbom, provenance),
        Top::Pack(Pack::Diff { a, b, json }) => diff(&a, &b, json),
        Top::Pack(Pack::Verify {
            file,
            insecure,
            keys,
            min_version,
            source,
            json,
        }) => verify(file, keys, min_version, source, json, insecure),
        Top::Pack(Pack::Push {
            file,
            reference,
            insecure,
        }) => push(&file, &reference, insecure),
        Top::Pack(Pack::Pull {
            reference,
            output,
            keys,
            insecure,
        }) => pull(&reference, &output, &keys, insecure),
        Top::Pack(Pack::Cache(CacheCmd::Ls)) => cache_ls(),
        Top::Pack(Pack::Trust(cmd)) => trust(cmd),
        Top::Pack(Pack::Kernel(KernelCmd::Fetch { deb, force })) => kernel_fetch(deb, force),
        Top::Pack(Pack::Prune {
            keep_last,
            older_than,
            max_size,
            dry_run,
        }) => prune(
            &smolvm_packer::prune::Policy {
                keep_last,
                older_than,
                max_size,
            },
            dry_run,
        ),
        Top::Pack(Pack::Run(a)) => pack_run(a),
        Top::Pack(Pack::Pubkey { key }) => pubkey(&key),
        Top::Pack(Pack::Keygen { dir, name, force }) => keygen(&dir, &name, force),
    }
}

fn pack_create(a: CreateArgs) -> Result<u8, Failure> {
    let report = create(&CreateOptions {
        output: a.output,
        smolfile: a.smolfile,
        rootfs: a.rootfs,
        image: a.image,
        insecure: a.insecure,
        kernel: a.kernel,
        key: a.key,
        no_sign: a.no_sign,
        rotate_from: a.rotate_from,
        stub: a.stub,
        level: a.level,
        rootfs_compression: a.rootfs_compression,
        name: a.name,
        version: a.version,
        progress: true,
    })?;
    eprintln!(
        "wrote {} ({}, {} bytes, {})",
        report.output.display(),
        if report.bare {
            "bare payload"
        } else {
            "packed executable"
        },
        report.file_size,
        report
            .key_id
            .map(|k| format!("signed by key {k}, verified"))
            .unwrap_or_else(|| "UNSIGNED".into())
    );
    Ok(0)
}

fn inspect(
    file: &std::path::Path,
    json: bool,
    insecure: bool,
    files: bool,
    sbom: bool,
    provenance: bool,
) -> Result<u8, Failure> {
    if let Some(r) = remote_reference(file) {
        if files || sbom || provenance {
            return Err(anyhow::Error::new(exit::UsageError(format!(
                "--files reads the root filesystem, which inspect does not download:                          `smolvm pack pull {} -o FILE` first",
                file.display()
            )))
            .into());
        }
        return inspect_remote(&r, json, insecure);
    }
    let src = open(file)?;
    let art = Artifact::parse(&src).map_err(|e| format_failure(file, e))?;
    let attestation = if sbom {
        Some(SectionKind::Sbom)
    } else if provenance {
        Some(SectionKind::Provenance)
    } else {
        None
    };
    if let Some(kind) = attestation {
        let v = smolvm_packer::contents::attestation(&art, kind)
            .with_context(|| format!("{}", file.display()))?;
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return Ok(0);
    }
    if files {
        let records = smolvm_packer::contents::files(&art)
            .with_context(|| format!("{}: the root filesystem", file.display()))?;
        if json {
            let v: Vec<_> = records.iter().map(|r| r.to_json()).collect();
            println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        } else {
            for r in &records {
                println!("{}", r.to_line());
            }
        }
        return Ok(0);
    }
    let sig = check_signature(&art, &[]).map_err(|e| exit::chain(&e).to_string());
    let pinned = pinned_signer(&art.manifest.name)?;
    if json {
        let mut v = inspect::render_json(&art, &sig);
        add_pin_json(&mut v, pinned);
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
    } else {
        print!(
            "{}",
            inspect::render_human_with(&art, &sig, &art.manifest.config, &[], pinned)
        );
    }
    Ok(0)
}

fn diff(a: &std::path::Path, b: &std::path::Path, json: bool) -> Result<u8, Failure> {
    let (src_a, src_b) = (open(a)?, open(b)?);
    let art_a = Artifact::parse(&src_a).map_err(|e| format_failure(a, e))?;
    let art_b = Artifact::parse(&src_b).map_err(|e| format_failure(b, e))?;
    let d = smolvm_packer::contents::diff(&art_a, &art_b)
        .with_context(|| format!("comparing {} with {}", a.display(), b.display()))?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&d.to_json()).expect("json")
        );
    } else {
        print!("{}", d.to_human());
    }
    Ok(if d.is_empty() { 0 } else { 1 })
}

fn kernel_fetch(deb: Option<PathBuf>, force: bool) -> Result<u8, Failure> {
    use smolvm_packer::kernel_fetch::{cache_path, fetch, DEFAULT_MIRROR, PINNED};
    let mirror = std::env::var("SMOLVM_DEBIAN_MIRROR").unwrap_or_else(|_| DEFAULT_MIRROR.into());
    let dest = cache_path()?;
    if deb.is_none() {
        eprintln!(
            "fetching libkrunfw5 {} from {mirror} (checked against pinned hashes)",
            PINNED.version
        );
    }
    let done = fetch(&dest, deb.as_deref(), &mirror, force)?;
    println!(
        "{} {} (libkrunfw5 {}, sha256 {})",
        if done.downloaded {
            "installed"
        } else {
            "already verified:"
        },
        done.path.display(),
        PINNED.version,
        PINNED.library_sha256
    );
    Ok(0)
}

fn pack_run(a: RunArgs) -> Result<u8, Failure> {
    let RunArgs {
        file,
        keys,
        min_version,
        dry_run,
        publish,
        ssh_agent,
        share_cwd,
        allow_no_landlock,
        reset_storage,
        timeout,
        volumes,
        env,
        cpus,
        memory,
        workdir,
        args,
    } = a;
    let mut keys = keys;
    keys.extend(env_key_files());
    let trusted = resolve_trusted(&keys, &default_key_dirs())
        .map_err(anyhow::Error::from)?
        .keys;
    let f = std::fs::File::open(&file).with_context(|| file.display().to_string())?;
    let trace = smolvm_runtime::Trace::new();
    smolvm_runtime::run_artifact(
        f,
        &smolvm_runtime::RunOptions {
            trusted,
            args,
            dry_run,
            timeout,
            publish,
            ssh_agent,
            share_cwd,
            consent_file: smolvm_runtime::consent::default_consent_file(),
            known_signers: smolvm_runtime::known_signers::default_known_signers_file(),
            ask_consent: smolvm_runtime::consent::ask_on_tty,
            min_version,
            version_state: default_state_file(),
            reset_storage,
            allow_no_landlock,
            host: smolvm_runtime::host_env::HostEnv {
                simulate_no_seccomp_notify: smolvm_runtime::host_env::is_one(
                    "SMOLVM_TEST_NO_SECCOMP_NOTIFY",
                ),
                ..smolvm_runtime::host_env::HostEnv::read()
            },
            settings: smolvm_runtime::settings::RunSettings {
                env,
                cpus,
                memory_mib: memory,
                workdir,
                volumes,
            },
        },
        &trace,
    )
    .map_err(|e| Failure {
        code: e.exit_code(),
        error: anyhow::Error::new(e).context(file.display().to_string()),
    })?;
    Ok(0)
}

fn pubkey(key: &std::path::Path) -> Result<u8, Failure> {
    let spec =
        smolvm_packer::signer::KeySpec::parse(key.as_os_str()).map_err(anyhow::Error::from)?;
    let public = spec.open().map_err(anyhow::Error::from)?.public_key();
    print!("{}", public.to_file_string());
    Ok(0)
}

fn keygen(dir: &std::path::Path, name: &str, force: bool) -> Result<u8, Failure> {
    let (secret, public, pk) =
        smolvm_signing::write_keypair(dir, name, force).map_err(anyhow::Error::from)?;
    println!("secret key {} (keep it private)", secret.display());
    println!("public key {} (key id {})", public.display(), pk.key_id());
    Ok(0)
}

// `pack run`'s run-time settings, checked as the stub checks its flags
// (clap reports a bad value with exit 2).
fn parse_volume(v: &str) -> Result<smolvm_runtime::settings::Volume, String> {
    smolvm_runtime::settings::parse_volume(v).map_err(|e| e.0)
}
fn parse_env(v: &str) -> Result<String, String> {
    smolvm_runtime::settings::parse_env(v).map_err(|e| e.0)
}
fn parse_cpus(v: &str) -> Result<u8, String> {
    smolvm_runtime::settings::parse_cpus(v, smolvm_runtime::settings::host_cpus()).map_err(|e| e.0)
}
fn parse_memory(v: &str) -> Result<u32, String> {
    smolvm_runtime::settings::parse_memory(v, smolvm_runtime::settings::host_memory_mib())
        .map_err(|e| e.0)
}
fn parse_workdir(v: &str) -> Result<String, String> {
    smolvm_runtime::settings::parse_workdir(v).map_err(|e| e.0)
}

/// Trusted public keys from `--key` files.
fn read_keys(keys: &[PathBuf]) -> Result<Vec<PublicKey>, Failure> {
    Ok(keys
        .iter()
        .map(|k| PublicKey::read_file(k))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::from)?)
}

fn open(file: &std::path::Path) -> Result<FileSource, Failure> {
    let f = std::fs::File::open(file).with_context(|| format!("{}", file.display()))?;
    Ok(FileSource::new(f).with_context(|| format!("{}", file.display()))?)
}

fn format_failure(file: &std::path::Path, e: FormatError) -> Failure {
    anyhow::Error::new(e)
        .context(file.display().to_string())
        .into()
}

fn verify(
    file: PathBuf,
    keys: Vec<PathBuf>,
    min_version: Option<String>,
    source: Option<String>,
    json: bool,
    insecure: bool,
) -> Result<u8, Failure> {
    let source = source
        .map(|s| SourceRequirement::parse(&s).map_err(exit::UsageError))
        .transpose()
        .map_err(anyhow::Error::from)?;
    let trusted = read_keys(&keys)?;
    let options = VerifyOptions {
        trusted: &trusted,
        require_signature: true,
        integrity: true,
    };
    if let Some(r) = remote_reference(&file) {
        let conn = connect(&r, insecure, false)?;
        let remote = RemoteArtifact::open(&conn, &r).map_err(anyhow::Error::from)?;
        // The signature and the small config section; the kernel and the
        // rootfs are pinned by signed hashes that pull and every start check.
        let outcome = verify_artifact(
            &remote,
            &VerifyOptions {
                integrity: false,
                ..options
            },
        )
        .and_then(|(art, state)| {
            art.verify_config_section()?;
            Ok((art, state))
        });
        let forged = match &outcome {
            Ok((art, _)) => remote.check_annotations(art).err(),
            Err(_) => None,
        };
        let checked = format!(
            "signature, structure and config section verified in the registry ({} bytes read); the kernel and rootfs are pinned by signed hashes that pull and every start check",
            remote.fetched()
        );
        if source.is_some() {
            return Err(anyhow::Error::new(exit::UsageError(format!(
                "--source reads the provenance section, which verify does not download from a \
                 registry: `smolvm pack pull {} -o FILE` first",
                file.display()
            )))
            .into());
        }
        let refused = forged.map(|f| ("invalid", f));
        return Ok(report(
            &file,
            &outcome,
            refused,
            &checked,
            min_version,
            json,
        ));
    }
    let src = open(&file)?;
    let outcome = verify_artifact(&src, &options);
    let checked = match &outcome {
        Ok((art, _)) => format!(
            "structure, stub and {} section hashes verified",
            art.manifest.sections.len()
        ),
        Err(_) => String::new(),
    };
    // Only a valid artifact's provenance is worth reading: its signer
    // vouches for it.
    let refused = match (&outcome, &source) {
        (Ok((art, smolvm_runtime::SignatureState::Trusted { .. })), Some(want)) => {
            smolvm_packer::contents::attestation(art, SectionKind::Provenance)
                .map_err(|e| format!("{e:#}"))
                .and_then(|statement| want.check(&statement))
                .err()
                .map(|why| ("wrong-source", format!("provenance: {why}")))
        }
        _ => None,
    };
    Ok(report(
        &file,
        &outcome,
        refused,
        &checked,
        min_version,
        json,
    ))
}

/// Prints verify's verdict and returns its exit code. `forged` is a
/// reason to call an otherwise sound artifact invalid.
fn report<R: smolvm_format::ReadAt + ?Sized>(
    file: &std::path::Path,
    outcome: &Result<(Artifact<'_, R>, smolvm_runtime::SignatureState), VerifyError>,
    refused: Option<(&'static str, String)>,
    checked: &str,
    min_version: Option<String>,
    json: bool,
) -> u8 {
    let (code, verdict, detail) = match outcome {
        Ok(_) if refused.is_some() => {
            let (verdict, detail) = refused.unwrap_or_default();
            (1, verdict, detail)
        }
        Ok((art, state)) => {
            let too_old = min_version
                .as_deref()
                .filter(|min| !version_at_least(&art.manifest.version, min));
            match (state, too_old) {
                (_, Some(min)) => (1, "rollback", format!("version {} is older than the required minimum {min}", art.manifest.version)),
                (smolvm_runtime::SignatureState::Trusted { key_id }, None) => (
                    0,
                    "valid",
                    format!(
                        "{} {}: signed by trusted key {key_id}; {checked}",
                        art.manifest.name,
                        art.manifest.version,
                    ),
                ),
                (smolvm_runtime::SignatureState::SelfConsistent { key_id }, None) => (
                    1,
                    "untrusted",
                    format!("intact and signed by key {key_id}, but no trusted key was given; pass --key PUB to decide trust"),
                ),
                (smolvm_runtime::SignatureState::Unsigned, None) => (1, "unsigned", VerifyError::Unsigned.to_string()),
            }
        }
        Err(e) => (
            e.exit_code(),
            match e {
                VerifyError::Unsigned => "unsigned",
                VerifyError::Untrusted(_) => "untrusted",
                VerifyError::Format(FormatError::Io { .. }) => "error",
                _ => "invalid",
            },
            exit::chain(e).to_string(),
        ),
    };
    // A verified rotation record (the signature check includes it).
    let rotation = outcome
        .as_ref()
        .ok()
        .and_then(|(art, _)| {
            smolvm_runtime::rotation::lineage(&art.manifest)
                .ok()
                .flatten()
        })
        .filter(smolvm_runtime::rotation::Lineage::rotated);
    let detail = match &rotation {
        Some(l) if code == 0 => format!(
            "{detail}; key rotation record verified: {} (each key endorsed the next)",
            l.describe()
        ),
        _ => detail,
    };
    if json {
        let rotation = rotation.map(|l| {
            l.key_ids()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        });
        println!(
            "{}",
            serde_json::json!({ "file": file, "verdict": verdict, "valid": code == 0, "detail": detail, "rotation": rotation, "exit_code": code })
        );
    } else if code == 0 {
        println!(
            "{}: {verdict}: {}",
            file.display(),
            inspect::escape_untrusted(&detail)
        );
    } else {
        eprintln!(
            "{}: {verdict}: {}",
            file.display(),
            inspect::escape_untrusted(&detail)
        );
    }
    code
}

/// A connection to `r`'s registry with the options image pulls use.
fn connect(
    r: &RegistryRef,
    insecure: bool,
    push: bool,
) -> Result<smolvm_packer::image::registry::Connection, Failure> {
    Ok(smolvm_packer::image::registry::Connection::open(
        r,
        RegistryOptions::default(),
        insecure,
        None,
        push,
    )
    .map_err(anyhow::Error::from)?)
}

fn registry_reference(reference: &str) -> Result<RegistryRef, Failure> {
    smolvm_packer::image::reference::parse_registry(reference).map_err(|fault| {
        anyhow::Error::new(exit::UsageError(format!(
            "{reference:?} is not a registry reference ({fault}); write REGISTRY/REPOSITORY[:TAG], e.g. ghcr.io/me/app:1.0"
        )))
        .into()
    })
}

fn push(file: &std::path::Path, reference: &str, insecure: bool) -> Result<u8, Failure> {
    let r = registry_reference(reference)?;
    let opts = RemoteOptions {
        insecure,
        ..RemoteOptions::default()
    };
    let report = smolvm_packer::remote::push(file, &r, &opts)
        .map_err(|e| anyhow::Error::new(e).context(format!("pushing {}", file.display())))?;
    eprintln!(
        "pushed {} ({}, {} bytes{}) to {r}",
        file.display(),
        report.form.describe(),
        report.size,
        if report.uploaded {
            ""
        } else {
            ", already in the registry"
        }
    );
    println!("{}/{}@{}", r.registry, r.repository, report.manifest_digest);
    Ok(0)
}

fn pull(
    reference: &str,
    output: &std::path::Path,
    keys: &[PathBuf],
    insecure: bool,
) -> Result<u8, Failure> {
    let r = registry_reference(reference)?;
    let trusted = read_keys(keys)?;
    let opts = RemoteOptions {
        insecure,
        registry: RegistryOptions {
            progress: true,
            ..RegistryOptions::default()
        },
        ..RemoteOptions::default()
    };
    let report = smolvm_packer::remote::pull(&r, output, &trusted, &opts)
        .map_err(|e| anyhow::Error::new(e).context(format!("pulling {r}")))?;
    eprintln!(
        "wrote {} ({}, {} bytes, {}, {}/{}@{})",
        output.display(),
        report.form.describe(),
        report.size,
        match (&report.key_id, trusted.is_empty()) {
            (Some(k), false) => format!("signed by trusted key {k}, verified"),
            (Some(k), true) => {
                format!("signed by key {k} (no --key given: intact, trust not decided)")
            }
            (None, _) => "UNSIGNED".into(),
        },
        r.registry,
        r.repository,
        report.manifest_digest
    );
    Ok(0)
}

fn inspect_remote(r: &RegistryRef, json: bool, insecure: bool) -> Result<u8, Failure> {
    let conn = connect(r, insecure, false)?;
    let remote = RemoteArtifact::open(&conn, r).map_err(anyhow::Error::from)?;
    let art = Artifact::parse(&remote).map_err(|e| anyhow::Error::new(e).context(r.to_string()))?;
    let sig = check_signature(&art, &[]).map_err(|e| exit::chain(&e).to_string());
    let pinned = pinned_signer(&art.manifest.name)?;
    if json {
        let mut v = inspect::render_json(&art, &sig);
        add_pin_json(&mut v, pinned);
        if let Some(o) = v.as_object_mut() {
            o.insert(
                "registry".into(),
                serde_json::json!({
                    "reference": r.to_string(),
                    "manifest_digest": remote.manifest_digest.to_string(),
                    "blob_digest": remote.digest.to_string(),
                    "form": remote.form.describe(),
                    "bytes_read": remote.fetched(),
                }),
            );
        }
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
    } else {
        print!(
            "{}",
            inspect::render_human_with(&art, &sig, &art.manifest.config, &[], pinned)
        );
        println!(
            "registry:  {r} ({}), manifest {}, blob {}; {} bytes of it read",
            remote.form.describe(),
            remote.manifest_digest,
            remote.digest,
            remote.fetched()
        );
    }
    Ok(0)
}

fn open_cache() -> Result<smolvm_runtime::cache::Cache, Failure> {
    let dir = smolvm_runtime::cache::default_cache_dir().map_err(anyhow::Error::from)?;
    Ok(smolvm_runtime::cache::Cache::open(dir).map_err(anyhow::Error::from)?)
}

/// The first signer remembered on this machine for `name` (trust on first
/// use; smolvm_runtime::known_signers).
fn pinned_signer(name: &str) -> Result<Option<known_signers::Pin>, Failure> {
    let Some(path) = known_signers::default_known_signers_file() else {
        return Ok(None);
    };
    Ok(known_signers::KnownSigners::load(&path)
        .map_err(anyhow::Error::from)?
        .pinned(name))
}

/// `first_signer` in `pack inspect --json`, when a pin exists.
fn add_pin_json(v: &mut serde_json::Value, pinned: Option<known_signers::Pin>) {
    if let (Some(pin), Some(o)) = (pinned, v.as_object_mut()) {
        // public_key: null for a pin an older smolvm wrote (a key id only).
        let public_key = match pin {
            known_signers::Pin::Key(k) => Some(hex::encode(k)),
            known_signers::Pin::KeyId(_) => None,
        };
        o.insert(
            "first_signer".into(),
            serde_json::json!({ "key_id": pin.key_id().to_string(), "public_key": public_key }),
        );
    }
}

/// `pack trust list` / `pack trust forget NAME`.
fn trust(cmd: TrustCmd) -> Result<u8, Failure> {
    let path = known_signers::default_known_signers_file().ok_or_else(|| {
        anyhow::Error::new(exit::UsageError(
            "no state directory: set XDG_STATE_HOME or HOME".into(),
        ))
    })?;
    let mut known = known_signers::KnownSigners::load(&path).map_err(anyhow::Error::from)?;
    match cmd {
        TrustCmd::List => {
            for (name, pin) in known.list() {
                println!("{name}  {}", pin.key_id());
            }
            Ok(0)
        }
        TrustCmd::Forget { name } => match known.forget(&name).map_err(anyhow::Error::from)? {
            Some(old) => {
                eprintln!(
                    "forgot key {} as the signer of {name}; its next start (without trusted keys) remembers the signer it carries",
                    old.key_id()
                );
                Ok(0)
            }
            None => Err(anyhow::Error::new(exit::UsageError(format!(
                "no signer is remembered for {name:?} in {} (`smolvm pack trust list` shows them)",
                path.display()
            )))
            .into()),
        },
    }
}

fn cache_ls() -> Result<u8, Failure> {
    use smolvm_runtime::units::human_size;
    let cache = open_cache()?;
    let mut entries = cache.entries().map_err(anyhow::Error::from)?;
    entries.sort_by(|a, b| (a.kind, b.last_used).cmp(&(b.kind, a.last_used)));
    println!(
        "{:<7} {:>10}  {:<20}  {:<6}  sha256",
        "kind", "size", "last used", "in use"
    );
    let mut total = 0;
    for e in &entries {
        let busy = smolvm_runtime::cache::in_use(e).map_err(anyhow::Error::from)?;
        total += e.size;
        println!(
            "{:<7} {:>10}  {:<20}  {:<6}  {}",
            e.kind.name(),
            human_size(e.size),
            humantime::format_rfc3339_seconds(e.last_used).to_string(),
            if busy { "yes" } else { "no" },
            e.hash
        );
    }
    println!(
        "{} entries, {} in {}",
        entries.len(),
        human_size(total),
        cache.root().display()
    );
    Ok(0)
}

fn prune(policy: &smolvm_packer::prune::Policy, dry_run: bool) -> Result<u8, Failure> {
    use smolvm_packer::prune::{execute, plan, Outcome};
    use smolvm_runtime::units::human_size;
    let cache = open_cache()?;
    let entries = cache.entries().map_err(anyhow::Error::from)?;
    let before: u64 = entries.iter().map(|e| e.size).sum();
    let p = plan(&entries, policy, std::time::SystemTime::now());
    let done = execute(
        &entries,
        &p,
        policy.max_size,
        dry_run,
        smolvm_runtime::cache::remove_unless_busy,
        smolvm_runtime::cache::in_use,
    )
    .map_err(anyhow::Error::from)?;
    let (mut freed, mut busy) = (0u64, 0usize);
    for (i, outcome) in &done {
        let e = &entries[*i];
        let what = match outcome {
            Outcome::Removed => "removed",
            Outcome::WouldRemove => "would remove",
            Outcome::Busy => "in use, kept",
        };
        if *outcome == Outcome::Busy {
            busy += 1;
        } else {
            freed += e.size;
        }
        println!(
            "{what}: {} {} ({}, last used {})",
            e.kind.name(),
            e.hash,
            human_size(e.size),
            humantime::format_rfc3339_seconds(e.last_used)
        );
    }
    println!(
        "{} {} of {} in {}{}",
        if dry_run { "would free" } else { "freed" },
        human_size(freed),
        human_size(before),
        cache.root().display(),
        if busy > 0 {
            format!("; {busy} in use by running machines, kept")
        } else {
            String::new()
        }
    );
    Ok(0)
}
