//! `pack create --rotate-from OLD`: the signer's rotation record
//! (smolvm_runtime::rotation; SPEC.md "Key rotation").
//!
//! Each `--rotate-from` key signs, for the artifact's name, the key after
//! it: `--rotate-from A --rotate-from B --key C` records A endorsing B and B
//! endorsing C, so a person whose runtime remembered A or B as the name's
//! signer accepts C. Every key source `--key` takes works here too.

use std::path::PathBuf;

use anyhow::{Context, Result};
use smolvm_format::RotationLink;
use smolvm_runtime::exit::UsageError;
use smolvm_signing::PublicKey;

use crate::signer::{KeySpec, Signer};

/// Opens the `--rotate-from` keys, oldest first. `signing`: what `--key`
/// names, to refuse reading standard input twice.
pub fn open_keys(values: &[PathBuf], signing: Option<&KeySpec>) -> Result<Vec<Signer>> {
    let specs = values
        .iter()
        .map(|v| KeySpec::parse(v.as_os_str()))
        .collect::<Result<Vec<_>, _>>()?;
    let stdin = specs
        .iter()
        .chain(signing)
        .filter(|s| **s == KeySpec::Stdin)
        .count();
    if stdin > 1 {
        return Err(UsageError(
            "standard input (-) can hold one key: give the other --key or --rotate-from as a file, env:NAME, ssh-agent or pkcs11:".into(),
        )
        .into());
    }
    if !specs.is_empty() && signing.is_none() {
        return Err(UsageError(
            "--rotate-from endorses the signing key, but the artifact is not signed: give --key (or drop --no-sign)".into(),
        )
        .into());
    }
    specs
        .iter()
        .zip(values)
        .map(|(spec, value)| {
            spec.open()
                .with_context(|| format!("--rotate-from {}", value.display()))
        })
        .collect()
}

/// The rotation record: each old key signs `name` and the next key; the
/// last endorses `signer`. A key given twice, or the signing key itself,
/// is a usage error (the reader would refuse the loop).
pub fn links(name: &str, old: &[Signer], signer: &PublicKey) -> Result<Vec<RotationLink>> {
    let keys: Vec<PublicKey> = old.iter().map(Signer::public_key).collect();
    for (i, k) in keys.iter().enumerate() {
        if k.to_bytes() == signer.to_bytes() {
            return Err(UsageError(format!(
                "--rotate-from key {} is the signing key (--key) itself; name the key(s) that signed {name} before",
                k.key_id()
            ))
            .into());
        }
        if keys[..i].iter().any(|o| o.to_bytes() == k.to_bytes()) {
            return Err(UsageError(format!(
                "--rotate-from key {} is given twice; give each older key once, oldest first",
                k.key_id()
            ))
            .into());
        }
    }
    let mut out = Vec::with_capacity(old.len());
    for (i, key) in old.iter().enumerate() {
        let next = keys.get(i + 1).unwrap_or(signer);
        let signature = key
            .sign(&smolvm_runtime::seal::rotation_statement(name, next))
            .with_context(|| {
                format!("signing the rotation record with key {}", keys[i].key_id())
            })?;
        out.push(smolvm_runtime::seal::rotation_link_record(
            &keys[i], signature,
        ));
    }
    Ok(out)
}
