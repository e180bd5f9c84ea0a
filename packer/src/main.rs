//! `smolvm`: pack a Linux workload into one signed executable that boots it
//! in its own microVM.
//!
//! Exit codes: 0 ok; 1 verification or validation failed; 2 usage or I/O
//! error; when a machine runs, the guest's own exit code. Every error is
//! mapped by `smolvm_runtime::exit` (with the packer's own types from
//! `smolvm_packer::exit`), the same mapping the stub uses.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use smolvm_format::{Artifact, FileSource, FormatError};
use smolvm_packer::create::{create, CreateOptions};
use smolvm_packer::exit::packer_exit_code;
use smolvm_runtime::exit::{self, ExitStatus};
use smolvm_runtime::inspect;
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
    #[command(verbatim_doc_comment)]
    Inspect {
        /// A packed executable or a bare .smolmachine payload.
        file: PathBuf,
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
    #[command(verbatim_doc_comment)]
    Verify {
        /// A packed executable or a bare .smolmachine payload.
        file: PathBuf,
        /// Trusted public key file (smolvm .pub or OpenSSH id_ed25519.pub); repeatable.
        #[arg(long = "key", value_name = "PUB")]
        keys: Vec<PathBuf>,
        /// Refuse artifacts older than this version (rollback protection).
        #[arg(long, value_name = "VERSION")]
        min_version: Option<String>,
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
    Run {
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
    },
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
    /// Secret key to sign with (smolvm .key or unencrypted OpenSSH id_ed25519).
    #[arg(long, value_name = "SECRET", conflicts_with = "no_sign")]
    key: Option<PathBuf>,
    /// Produce an unsigned artifact (reported as unsigned, never as valid).
    #[arg(long)]
    no_sign: bool,
    /// Executable to append the payload to (default: the smolvm stub runtime).
    #[arg(long, value_name = "PATH")]
    stub: Option<PathBuf>,
    /// zstd compression level, 1-22.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..=22))]
    level: Option<i32>,
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
        let code = exit::exit_code_with(error.as_ref(), &packer_exit_code);
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
        Top::Pack(Pack::Create(a)) => {
            let report = create(&CreateOptions {
                output: a.output,
                smolfile: a.smolfile,
                rootfs: a.rootfs,
                image: a.image,
                insecure: a.insecure,
                kernel: a.kernel,
                key: a.key,
                no_sign: a.no_sign,
                stub: a.stub,
                level: a.level,
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
        Top::Pack(Pack::Inspect { file, json }) => {
            let src = open(&file)?;
            let art = Artifact::parse(&src).map_err(|e| format_failure(&file, e))?;
            let sig = check_signature(&art, &[]).map_err(|e| exit::chain(&e).to_string());
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&inspect::render_json(&art, &sig)).expect("json")
                );
            } else {
                print!("{}", inspect::render_human(&art, &sig));
            }
            Ok(0)
        }
        Top::Pack(Pack::Verify {
            file,
            keys,
            min_version,
            json,
        }) => verify(file, keys, min_version, json),
        Top::Pack(Pack::Run {
            file,
            keys,
            min_version,
            dry_run,
            publish,
            ssh_agent,
            volumes,
            env,
            cpus,
            memory,
            workdir,
            args,
        }) => {
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
                    publish,
                    ssh_agent,
                    min_version,
                    version_state: default_state_file(),
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
        Top::Pack(Pack::Keygen { dir, name, force }) => {
            let (secret, public, pk) =
                smolvm_signing::write_keypair(&dir, &name, force).map_err(anyhow::Error::from)?;
            println!("secret key {} (keep it private)", secret.display());
            println!("public key {} (key id {})", public.display(), pk.key_id());
            Ok(0)
        }
    }
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

fn open(file: &PathBuf) -> Result<FileSource, Failure> {
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
    json: bool,
) -> Result<u8, Failure> {
    let trusted = read_keys(&keys)?;
    let src = open(&file)?;
    let outcome = verify_artifact(
        &src,
        &VerifyOptions {
            trusted: &trusted,
            require_signature: true,
            integrity: true,
        },
    );
    let (code, verdict, detail) = match &outcome {
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
                        "{} {}: signed by trusted key {key_id}; structure, stub and {} section hashes verified",
                        art.manifest.name,
                        art.manifest.version,
                        art.manifest.sections.len()
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
    if json {
        println!(
            "{}",
            serde_json::json!({ "file": file, "verdict": verdict, "valid": code == 0, "detail": detail, "exit_code": code })
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
    Ok(code)
}
