//! The SBOM section: the packages installed in the root, found in the
//! package managers' own databases, as an SPDX 2.3 JSON document.
//!
//! ```text
//! var/lib/dpkg/status                     Debian, Ubuntu: paragraphs; Package, Version,
//!                                         Architecture, Status (not "not-installed")
//! lib/apk/db/installed                    Alpine: paragraphs; P: name, V: version, A: arch
//! …/{site,dist}-packages/*.dist-info/METADATA   Python: Name:, Version: (RFC 822 headers)
//! ```
//!
//! The document is deterministic: packages sorted, the creation time is the
//! artifact's `created` (SOURCE_DATE_EPOCH), the namespace is derived from
//! the content. Licences are `NOASSERTION`: dpkg records none, and the
//! strings apk and Python record are not always SPDX expressions.

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use smolvm_rootfs::tree::{NodeKind, Tree};

/// dpkg's status file of a large Debian root is a few MiB.
const MAX_DB_LEN: u64 = 64 << 20;
/// A METADATA file with a long description.
const MAX_METADATA_LEN: u64 = 4 << 20;

/// One package found in the root.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Package {
    /// `deb`, `apk` or `pypi` (the purl type).
    pub ecosystem: &'static str,
    pub name: String,
    pub version: String,
    pub arch: Option<String>,
    /// Where it was recorded, for the SPDX `sourceInfo`.
    pub source: String,
}

/// Every package the root's package databases list.
pub fn packages(tree: &Tree) -> Result<Vec<Package>> {
    let mut out = BTreeSet::new();
    if let Some(status) = tree.read_file("var/lib/dpkg/status", MAX_DB_LEN)? {
        out.extend(dpkg_status(&String::from_utf8_lossy(&status)));
    }
    if let Some(db) = tree.read_file("lib/apk/db/installed", MAX_DB_LEN)? {
        out.extend(apk_installed(&String::from_utf8_lossy(&db)));
    }
    for (path, node) in &tree.nodes {
        let is_metadata = path.ends_with(".dist-info/METADATA")
            && (path.contains("/site-packages/") || path.contains("/dist-packages/"));
        if !is_metadata || !matches!(node.kind, NodeKind::File(_) | NodeKind::HardLink(_)) {
            continue;
        }
        let Some(text) = tree
            .read_file(path, MAX_METADATA_LEN)
            .with_context(|| format!("reading /{path}"))?
        else {
            continue;
        };
        if let Some(p) = python_metadata(&String::from_utf8_lossy(&text), path) {
            out.insert(p);
        }
    }
    Ok(out.into_iter().collect())
}

/// Paragraphs of `Field: value` lines, continuation lines skipped.
fn paragraphs(text: &str) -> impl Iterator<Item = Vec<(&str, &str)>> {
    text.split("\n\n").map(|para| {
        para.lines()
            .filter(|l| !l.starts_with(' ') && !l.starts_with('\t'))
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k, v.trim()))
            .collect()
    })
}

fn field<'a>(para: &[(&'a str, &'a str)], name: &str) -> Option<&'a str> {
    para.iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| *v)
        .filter(|v| !v.is_empty())
}

/// What `dpkg-query -W` lists: every package whose state is not
/// `not-installed` (config-files and half-installed ones included).
pub fn dpkg_status(text: &str) -> Vec<Package> {
    paragraphs(text)
        .filter_map(|p| {
            let name = field(&p, "Package")?;
            let status = field(&p, "Status").unwrap_or("");
            if status.split_whitespace().nth(2) == Some("not-installed") {
                return None;
            }
            Some(Package {
                ecosystem: "deb",
                name: name.to_owned(),
                version: field(&p, "Version").unwrap_or("").to_owned(),
                arch: field(&p, "Architecture").map(str::to_owned),
                source: "/var/lib/dpkg/status".into(),
            })
        })
        .collect()
}

pub fn apk_installed(text: &str) -> Vec<Package> {
    paragraphs(text)
        .filter_map(|p| {
            Some(Package {
                ecosystem: "apk",
                name: field(&p, "P")?.to_owned(),
                version: field(&p, "V").unwrap_or("").to_owned(),
                arch: field(&p, "A").map(str::to_owned),
                source: "/lib/apk/db/installed".into(),
            })
        })
        .collect()
}

fn python_metadata(text: &str, path: &str) -> Option<Package> {
    // The headers end at the first empty line; the body is the description.
    let head = text.split("\n\n").next()?;
    let p: Vec<(&str, &str)> = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k, v.trim()))
        .collect();
    Some(Package {
        ecosystem: "pypi",
        name: field(&p, "Name")?.to_owned(),
        version: field(&p, "Version").unwrap_or("").to_owned(),
        arch: None,
        source: format!("/{path}"),
    })
}

/// purl component encoding: what is not unreserved is %-escaped.
fn purl_escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~+".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn purl(p: &Package, distro: &str) -> String {
    let name = if p.ecosystem == "pypi" {
        // PEP 503 normalisation, as the pypi purl type asks.
        p.name.to_ascii_lowercase().replace(['_', '.'], "-")
    } else {
        p.name.clone()
    };
    let mut s = match p.ecosystem {
        "pypi" => format!("pkg:pypi/{}", purl_escape(&name)),
        eco => format!("pkg:{eco}/{}/{}", purl_escape(distro), purl_escape(&name)),
    };
    if !p.version.is_empty() {
        s += &format!("@{}", purl_escape(&p.version));
    }
    if let Some(a) = &p.arch {
        s += &format!("?arch={}", purl_escape(a));
    }
    s
}

/// `ID=` of the root's os-release, for purl namespaces.
fn distro(tree: &Tree) -> String {
    let text = tree
        .read_file("etc/os-release", 64 << 10)
        .ok()
        .flatten()
        .or_else(|| {
            tree.read_file("usr/lib/os-release", 64 << 10)
                .ok()
                .flatten()
        })
        .unwrap_or_default();
    String::from_utf8_lossy(&text)
        .lines()
        .find_map(|l| l.strip_prefix("ID="))
        .map(|v| v.trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// The SPDX 2.3 document for the artifact `name`/`version` created at
/// `created` (Unix seconds).
pub fn spdx(tree: &Tree, name: &str, version: &str, created: u64) -> Result<Value> {
    let pkgs = packages(tree)?;
    let distro = distro(tree);
    let created = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(created),
    )
    .to_string();
    let root_id = "SPDXRef-Root";
    let mut packages = vec![json!({
        "SPDXID": root_id,
        "name": name,
        "versionInfo": version,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "CONTAINER",
        "comment": "The root file system of the smolmachine artifact.",
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": root_id,
    })];
    for (i, p) in pkgs.iter().enumerate() {
        let id = format!("SPDXRef-Package-{}-{}", p.ecosystem, i + 1);
        let mut pkg = json!({
            "SPDXID": id,
            "name": p.name,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "sourceInfo": format!("recorded in {}", p.source),
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": purl(p, &distro),
            }],
        });
        if !p.version.is_empty() {
            pkg["versionInfo"] = json!(p.version);
        }
        packages.push(pkg);
        relationships.push(json!({
            "spdxElementId": root_id,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    let digest = hex::encode(Sha256::digest(serde_json::to_vec(&packages).expect("json")));
    Ok(json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{name}-{version}"),
        "documentNamespace": format!("https://smolmachine.invalid/spdx/{name}/{version}/{digest}"),
        "creationInfo": {
            "created": created,
            "creators": [format!("Tool: smolvm-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": packages,
        "relationships": relationships,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_counts_what_dpkg_query_lists() {
        let status = "Package: a\nStatus: install ok installed\nVersion: 1:2.0-1\nArchitecture: amd64\nDescription: x\n continued: not a field\n\n\
                      Package: b\nStatus: deinstall ok config-files\nVersion: 3\n\n\
                      Package: c\nStatus: purge ok not-installed\n\n";
        let p = dpkg_status(status);
        let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(p[0].version, "1:2.0-1");
        assert_eq!(
            purl(&p[0], "debian"),
            "pkg:deb/debian/a@1%3A2.0-1?arch=amd64"
        );
    }

    #[test]
    fn apk_and_python_records() {
        let apk = apk_installed("C:Q1x\nP:musl\nV:1.2.5-r0\nA:x86_64\n\nP:busybox\nV:1.36\n\n");
        assert_eq!(apk.len(), 2);
        assert_eq!(
            purl(&apk[0], "alpine"),
            "pkg:apk/alpine/musl@1.2.5-r0?arch=x86_64"
        );
        let py = python_metadata(
            "Metadata-Version: 2.1\nName: Requests_Toolbelt\nVersion: 1.0\n\nName: not this\n",
            "usr/lib/python3/dist-packages/requests_toolbelt-1.0.dist-info/METADATA",
        )
        .unwrap();
        assert_eq!(py.name, "Requests_Toolbelt");
        assert_eq!(purl(&py, "debian"), "pkg:pypi/requests-toolbelt@1.0");
    }
}
