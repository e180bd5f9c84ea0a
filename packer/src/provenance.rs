//! The provenance section: how an artifact was built, as an in-toto
//! Statement v1 with a SLSA provenance v1 predicate.
//!
//! ```text
//! subject                the artifact's kernel, rootfs, config and sbom sections (stored sha256):
//!                        the provenance names the bytes it describes, not the file it sits in
//! buildDefinition
//!   buildType            https://smolmachine.invalid/pack-create/v1
//!   externalParameters   name, version, root (image reference or path), ci: the workflow
//!   internalParameters   zstd level, rootfs compression
//!   resolvedDependencies source (git+URL@ref, gitCommit), image manifest, kernel, Smolfile,
//!                        rootfs archive, stub: each with its sha256
//! runDetails
//!   builder.id           the CI's runner, else smolvm itself; builder.version: smolvm's
//!   metadata             invocationId (the CI job's URL), startedOn (the artifact's created)
//! ```
//!
//! The CI is read from the environment GitHub Actions (`GITHUB_ACTIONS`)
//! and GitLab CI (`GITLAB_CI`) set for every job; elsewhere there is no
//! source unless `SMOLVM_SOURCE_REPO` (and `SMOLVM_SOURCE_COMMIT`) name one.
//! A signed statement is only as true as the machine that signed it: it
//! binds what that builder claims to the artifact, under the signer's key.

use serde_json::{json, Map, Value};

/// Where the artifact's sources came from, as the CI says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInfo {
    /// `https://github.com/owner/repo`, without `.git`.
    pub repo: String,
    pub commit: Option<String>,
    /// `refs/heads/main`, `refs/tags/v1.0`.
    pub git_ref: Option<String>,
}

/// The CI job that ran `pack create`, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// `github-actions`, `gitlab-ci` or `local`.
    pub platform: &'static str,
    pub builder_id: String,
    pub invocation_id: Option<String>,
    /// The workflow file or pipeline, as the CI names it.
    pub workflow: Option<String>,
    pub source: Option<SourceInfo>,
}

/// Reads the CI from `env` (the process environment, or a test's).
pub fn invocation(env: &dyn Fn(&str) -> Option<String>) -> Invocation {
    let var = |k: &str| env(k).filter(|v| !v.is_empty());
    if var("GITHUB_ACTIONS").as_deref() == Some("true") {
        let server = var("GITHUB_SERVER_URL").unwrap_or_else(|| "https://github.com".into());
        let repo = var("GITHUB_REPOSITORY").map(|r| format!("{server}/{r}"));
        let run = match (&repo, var("GITHUB_RUN_ID")) {
            (Some(r), Some(id)) => Some(format!(
                "{r}/actions/runs/{id}/attempts/{}",
                var("GITHUB_RUN_ATTEMPT").unwrap_or_else(|| "1".into())
            )),
            _ => None,
        };
        let hosted = var("RUNNER_ENVIRONMENT").as_deref() == Some("github-hosted");
        return Invocation {
            platform: "github-actions",
            builder_id: if hosted {
                "https://github.com/actions/runner/github-hosted".into()
            } else {
                "https://github.com/actions/runner/self-hosted".into()
            },
            invocation_id: run,
            workflow: var("GITHUB_WORKFLOW_REF"),
            source: repo.map(|repo| SourceInfo {
                repo,
                commit: var("GITHUB_SHA"),
                git_ref: var("GITHUB_REF"),
            }),
        };
    }
    if var("GITLAB_CI").as_deref() == Some("true") {
        let server = var("CI_SERVER_URL").unwrap_or_else(|| "https://gitlab.com".into());
        return Invocation {
            platform: "gitlab-ci",
            builder_id: match var("CI_RUNNER_ID") {
                Some(id) => format!("{server}/-/runners/{id}"),
                None => format!("{server}/-/runners"),
            },
            invocation_id: var("CI_JOB_URL"),
            workflow: var("CI_CONFIG_PATH")
                .map(|p| format!("{}/{p}", var("CI_PROJECT_PATH").unwrap_or_default())),
            source: var("CI_PROJECT_URL").map(|repo| SourceInfo {
                repo,
                commit: var("CI_COMMIT_SHA"),
                git_ref: var("CI_COMMIT_TAG")
                    .map(|t| format!("refs/tags/{t}"))
                    .or_else(|| var("CI_COMMIT_BRANCH").map(|b| format!("refs/heads/{b}"))),
            }),
        };
    }
    Invocation {
        platform: "local",
        builder_id: format!(
            "https://smolmachine.invalid/smolvm@{}",
            env!("CARGO_PKG_VERSION")
        ),
        invocation_id: None,
        workflow: None,
        source: var("SMOLVM_SOURCE_REPO").map(|repo| SourceInfo {
            repo,
            commit: var("SMOLVM_SOURCE_COMMIT"),
            git_ref: None,
        }),
    }
}

/// An input `pack create` read, with its digest.
#[derive(Debug, Clone)]
pub struct Input {
    /// `kernel`, `smolfile`, `image`, `rootfs`, `stub`.
    pub name: &'static str,
    /// A path or reference, as given.
    pub uri: String,
    /// `algorithm` → hex digest.
    pub digest: (String, String),
}

/// What the statement says about this build.
pub struct Build<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub created: u64,
    pub root: String,
    pub level: i32,
    pub rootfs_compression: String,
    pub inputs: Vec<Input>,
    /// Section kind → stored sha256 (hex).
    pub subjects: Vec<(String, String)>,
    pub invocation: Invocation,
}

/// The in-toto Statement.
pub fn statement(b: &Build<'_>) -> Value {
    let started = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(b.created),
    )
    .to_string();
    let mut deps = Vec::new();
    if let Some(s) = &b.invocation.source {
        let mut digest = Map::new();
        if let Some(c) = &s.commit {
            digest.insert("gitCommit".into(), json!(c));
        }
        let uri = match &s.git_ref {
            Some(r) => format!("git+{}@{r}", s.repo),
            None => format!("git+{}", s.repo),
        };
        deps.push(json!({"name": "source", "uri": uri, "digest": digest}));
    }
    for i in &b.inputs {
        deps.push(json!({
            "name": i.name,
            "uri": i.uri,
            "digest": {i.digest.0.clone(): i.digest.1},
        }));
    }
    let mut external = json!({
        "name": b.name,
        "version": b.version,
        "root": b.root,
    });
    if let Some(w) = &b.invocation.workflow {
        external["workflow"] = json!({
            "platform": b.invocation.platform,
            "ref": w,
        });
    }
    let mut metadata = json!({"startedOn": started});
    if let Some(id) = &b.invocation.invocation_id {
        metadata["invocationId"] = json!(id);
    }
    json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": b.subjects.iter().map(|(kind, sha)| json!({
            "name": format!("{}/{kind}", b.name),
            "digest": {"sha256": sha},
        })).collect::<Vec<_>>(),
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": "https://smolmachine.invalid/pack-create/v1",
                "externalParameters": external,
                "internalParameters": {
                    "level": b.level,
                    "rootfs_compression": b.rootfs_compression,
                },
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": {
                    "id": b.invocation.builder_id,
                    "version": {"smolvm": env!("CARGO_PKG_VERSION")},
                },
                "metadata": metadata,
            },
        },
    })
}

/// `REPO[@COMMIT]` as `pack verify --source` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRequirement {
    pub repo: String,
    pub commit: Option<String>,
}

impl SourceRequirement {
    pub fn parse(text: &str) -> Result<Self, String> {
        // An `@` after the last `/` separates the commit (URLs may hold
        // `user@host` before the path).
        let (repo, commit) = match text.rsplit_once('@') {
            Some((r, c)) if !c.contains('/') => (r, Some(c)),
            _ => (text, None),
        };
        if let Some(c) = commit {
            if c.len() < 7 || !c.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "--source {text}: the commit {c:?} is not a hex commit id of 7 or more digits"
                ));
            }
        }
        if normalise_repo(repo).is_empty() {
            return Err(format!("--source {text}: no repository"));
        }
        Ok(SourceRequirement {
            repo: repo.to_owned(),
            commit: commit.map(str::to_ascii_lowercase),
        })
    }

    /// Checks the statement's source against this requirement; the error
    /// says what the statement names instead.
    pub fn check(&self, statement: &Value) -> Result<(), String> {
        let deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let Some(source) = deps.iter().find(|d| d["name"] == "source") else {
            return Err(
                "the provenance names no source repository (packed outside a recognised CI, \
                 without SMOLVM_SOURCE_REPO)"
                    .into(),
            );
        };
        let uri = source["uri"].as_str().unwrap_or_default();
        let repo = uri.strip_prefix("git+").unwrap_or(uri);
        let repo = match repo.rsplit_once('@') {
            Some((r, reference)) if reference.starts_with("refs/") => r,
            _ => repo,
        };
        if normalise_repo(repo) != normalise_repo(&self.repo) {
            return Err(format!(
                "built from {repo}, not {} (provenance source)",
                self.repo
            ));
        }
        if let Some(want) = &self.commit {
            let got = source["digest"]["gitCommit"].as_str().unwrap_or_default();
            if got.is_empty() || !got.to_ascii_lowercase().starts_with(want.as_str()) {
                return Err(format!(
                    "built from commit {}, not {want}",
                    if got.is_empty() {
                        "(not recorded)"
                    } else {
                        got
                    }
                ));
            }
        }
        Ok(())
    }
}

/// `https://github.com/o/r.git`, `github.com/o/r/`, `HTTPS://GitHub.com/o/r`
/// all become `github.com/o/r`; paths keep their case.
fn normalise_repo(repo: &str) -> String {
    let r = repo.trim().trim_end_matches('/');
    let r = r.strip_suffix(".git").unwrap_or(r);
    let r = r.split_once("://").map_or(r, |(_, rest)| rest);
    match r.split_once('/') {
        Some((host, path)) => format!("{}/{path}", host.to_ascii_lowercase()),
        None => r.to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn github_and_gitlab_environments_name_source_and_job() {
        let gh = invocation(&env_of(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_SERVER_URL", "https://github.com"),
            ("GITHUB_REPOSITORY", "me/app"),
            ("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567"),
            ("GITHUB_REF", "refs/tags/v1.0"),
            ("GITHUB_RUN_ID", "42"),
            ("RUNNER_ENVIRONMENT", "github-hosted"),
        ]));
        assert_eq!(gh.platform, "github-actions");
        assert_eq!(
            gh.invocation_id.as_deref(),
            Some("https://github.com/me/app/actions/runs/42/attempts/1")
        );
        assert_eq!(
            gh.source.as_ref().unwrap().repo,
            "https://github.com/me/app"
        );
        let gl = invocation(&env_of(&[
            ("GITLAB_CI", "true"),
            ("CI_PROJECT_URL", "https://gitlab.example/grp/app"),
            ("CI_COMMIT_SHA", "abcdef0"),
            ("CI_COMMIT_BRANCH", "main"),
            ("CI_JOB_URL", "https://gitlab.example/grp/app/-/jobs/7"),
        ]));
        assert_eq!(gl.platform, "gitlab-ci");
        assert_eq!(
            gl.source.unwrap().git_ref.as_deref(),
            Some("refs/heads/main")
        );
        assert_eq!(invocation(&env_of(&[])).source, None);
    }

    #[test]
    fn source_requirements_match_normalised_repos_and_commit_prefixes() {
        let inv = invocation(&env_of(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_REPOSITORY", "me/app"),
            ("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567"),
            ("GITHUB_REF", "refs/heads/main"),
        ]));
        let s = statement(&Build {
            name: "app",
            version: "1",
            created: 0,
            root: "root".into(),
            level: 3,
            rootfs_compression: "none".into(),
            inputs: vec![],
            subjects: vec![],
            invocation: inv,
        });
        for ok in [
            "https://github.com/me/app",
            "github.com/me/app.git",
            "https://GitHub.com/me/app/@0123456",
            "github.com/me/app@0123456789abcdef0123456789abcdef01234567",
        ] {
            SourceRequirement::parse(ok)
                .unwrap()
                .check(&s)
                .unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "github.com/me/other",
            "github.com/Me/app",
            "github.com/me/app@fedcba9",
        ] {
            assert!(
                SourceRequirement::parse(bad).unwrap().check(&s).is_err(),
                "{bad}"
            );
        }
        assert!(SourceRequirement::parse("github.com/me/app@xyz").is_err());
    }
}
