//! Pulls against a minimal in-process registry (HTTP/1.1 on 127.0.0.1,
//! one thread per connection) that serves the distribution API's GET
//! routes from a table and logs every request.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::super::reference::parse_registry;
use super::super::testutil::*;
use super::super::{load as load_ref, ImageOptions, Platform};
use super::*;

#[derive(Clone)]
struct Response {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

#[derive(Clone, Default)]
struct Registry {
    routes: Arc<Mutex<HashMap<String, Response>>>,
    log: Arc<Mutex<Vec<String>>>,
    /// `Authorization` header value required on everything but `/v2/`'s challenge.
    basic: Option<String>,
    /// Paths whose body never ends (a hostile registry).
    endless: Arc<Mutex<Vec<String>>>,
    /// Paths answered 500 with a body that never ends.
    endless_error: Arc<Mutex<Vec<String>>>,
    /// Ask for a bearer token from this realm (on this server) on every
    /// request without one; the token route answers `{"token": "t"}`.
    bearer_realm: Option<String>,
}

impl Registry {
    fn route(&self, path: &str, content_type: &str, body: Vec<u8>) {
        self.routes.lock().unwrap().insert(
            path.to_string(),
            Response {
                status: 200,
                content_type: content_type.into(),
                body,
            },
        );
    }

    /// Serves `img` as `<repo>:<tag>` (and by digest).
    fn push(&self, repo: &str, tag: &str, img: &BuiltImage) {
        self.route(
            &format!("/v2/{repo}/manifests/{tag}"),
            OCI_MANIFEST,
            img.manifest.clone(),
        );
        self.push_blobs(repo, img);
    }

    fn push_blobs(&self, repo: &str, img: &BuiltImage) {
        self.route(
            &format!("/v2/{repo}/manifests/{}", img.digest()),
            OCI_MANIFEST,
            img.manifest.clone(),
        );
        for b in [&img.config].into_iter().chain(&img.layers) {
            self.route(
                &format!("/v2/{repo}/blobs/{}", digest(b)),
                "application/octet-stream",
                b.clone(),
            );
        }
    }

    fn blob_requests(&self) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("/blobs/"))
            .count()
    }

    fn requests(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    fn start(self) -> String {
        self.start_on(TcpListener::bind("127.0.0.1:0").unwrap())
    }

    /// Serves on a listener bound already (to name its address in routes).
    fn start_on(self, listener: TcpListener) -> String {
        let addr = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let me = self.clone();
                std::thread::spawn(move || me.handle(conn));
            }
        });
        addr
    }

    fn handle(&self, mut conn: TcpStream) {
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).is_err() {
            return;
        }
        let mut auth = None;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("authorization") {
                    auth = Some(v.trim().to_string());
                }
            }
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default();
        let path = target.split('?').next().unwrap_or_default().to_string();
        self.log.lock().unwrap().push(format!("{method} {path}"));
        let endless_error = self.endless_error.lock().unwrap().contains(&path);
        if endless_error || self.endless.lock().unwrap().contains(&path) {
            // Headers, then a body that never ends: 1 MiB writes until the
            // client hangs up.
            let status = if endless_error { "500 X" } else { "200 OK" };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
            );
            let chunk = vec![b' '; 1 << 20];
            while conn.write_all(&chunk).is_ok() {}
            return;
        }
        if let Some(realm) = &self.bearer_realm {
            if path == "/token" {
                let body = br#"{"token": "t"}"#;
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(body);
                return;
            }
            if auth.as_deref() != Some("Bearer t") {
                let _ = write!(
                    conn,
                    "HTTP/1.1 401 X\r\nWWW-Authenticate: Bearer realm=\"{realm}\",service=\"test\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                return;
            }
        }
        let authorised = self.basic.is_none() || auth == self.basic;
        let (resp, extra) = if !authorised {
            (
                Response {
                    status: 401,
                    content_type: "application/json".into(),
                    body: br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#.to_vec(),
                },
                "WWW-Authenticate: Basic realm=\"test\"\r\n".to_string(),
            )
        } else if path == "/v2/" {
            (
                Response {
                    status: 200,
                    content_type: "application/json".into(),
                    body: b"{}".to_vec(),
                },
                String::new(),
            )
        } else if let Some(r) = self.routes.lock().unwrap().get(&path).cloned() {
            let extra = if path.contains("/manifests/") {
                format!("Docker-Content-Digest: {}\r\n", digest(&r.body))
            } else {
                String::new()
            };
            (r, extra)
        } else {
            (
                Response {
                    status: 404,
                    content_type: "application/json".into(),
                    body:
                        br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#
                            .to_vec(),
                },
                String::new(),
            )
        };
        let head = format!(
            "HTTP/1.1 {} X\r\nContent-Type: {}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
            resp.status,
            resp.content_type,
            resp.body.len()
        );
        let _ = conn.write_all(head.as_bytes());
        if method != "HEAD" {
            let _ = conn.write_all(&resp.body);
        }
        let _ = conn.flush();
    }
}

fn image(marker: &str, arch: &str) -> BuiltImage {
    build_image(
        &[
            tar(&[
                dir("etc"),
                file("etc/id", marker.as_bytes()),
                symlink("bin", "usr/bin"),
            ]),
            tar(&[
                file("usr/bin/app", b"#!/bin/sh\n"),
                hardlink("usr/bin/app2", "usr/bin/app"),
            ]),
        ],
        json!({"Entrypoint": ["/usr/bin/app"], "Cmd": ["serve"], "Env": ["PATH=/usr/bin"], "WorkingDir": "/srv", "User": "1000:1000"}),
        arch,
        true,
    )
}

fn opts(cache: &Path) -> ImageOptions {
    ImageOptions {
        cache_dir: Some(cache.to_path_buf()),
        registry: RegistryOptions {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(5),
            docker_config: Some(cache.join("no-docker-config.json")),
            progress: false,
        },
        ..ImageOptions::default()
    }
}

#[test]
fn pull_caches_blobs_so_a_second_pack_downloads_nothing() {
    let reg = Registry::default();
    let img = image("one", "amd64");
    reg.push("smoke", "v1", &img);
    let addr = reg.clone().start();
    let cache = tempfile::tempdir().unwrap();
    let reference = format!("{addr}/smoke:v1");
    let loaded = load_ref(&reference, &opts(cache.path())).unwrap();
    assert_eq!(loaded.digest.as_ref().unwrap().to_string(), img.digest());
    assert_eq!(
        loaded.tree.nodes["usr/bin/app2"].kind,
        smolvm_rootfs::tree::NodeKind::HardLink("usr/bin/app".into())
    );
    let cfg = loaded.config.unwrap();
    assert_eq!(cfg.entrypoint, Some(vec!["/usr/bin/app".to_string()]));
    assert_eq!(cfg.user.as_deref(), Some("1000:1000"));
    assert_eq!(reg.blob_requests(), 3, "config and two layers");
    for b in img.blobs() {
        let d = Digest::parse(&digest(b)).unwrap();
        assert!(cache.path().join("blobs/sha256").join(d.hex()).is_file());
    }
    // Again: the tag is resolved, but no blob is fetched.
    load_ref(&reference, &opts(cache.path())).unwrap();
    assert_eq!(reg.blob_requests(), 3);
    // By digest, everything cached: no request at all.
    let before = reg.requests();
    let by_digest = load_ref(
        &format!("{addr}/smoke@{}", img.digest()),
        &opts(cache.path()),
    )
    .unwrap();
    assert_eq!(reg.requests(), before);
    assert_eq!(by_digest.digest.unwrap().to_string(), img.digest());
    // A corrupted cache entry is noticed and fetched again.
    let layer = Digest::parse(&digest(&img.layers[0])).unwrap();
    std::fs::write(cache.path().join("blobs/sha256").join(layer.hex()), b"junk").unwrap();
    load_ref(&reference, &opts(cache.path())).unwrap();
    assert_eq!(reg.blob_requests(), 4);
}

#[test]
fn index_picks_linux_amd64_and_lists_platforms_when_absent() {
    let reg = Registry::default();
    let amd = image("amd", "amd64");
    let arm = image("arm", "arm64");
    reg.push_blobs("multi", &amd);
    reg.push_blobs("multi", &arm);
    let list = index(&[
        (
            arm.digest(),
            arm.manifest.len(),
            OCI_MANIFEST,
            None,
            Some("arm64"),
        ),
        (
            amd.digest(),
            amd.manifest.len(),
            OCI_MANIFEST,
            None,
            Some("amd64"),
        ),
    ]);
    reg.route("/v2/multi/manifests/latest", OCI_INDEX, list);
    let only_arm = index(&[(
        arm.digest(),
        arm.manifest.len(),
        OCI_MANIFEST,
        None,
        Some("arm64"),
    )]);
    reg.route("/v2/multi/manifests/arm-only", OCI_INDEX, only_arm);
    let addr = reg.clone().start();
    let cache = tempfile::tempdir().unwrap();
    let loaded = load_ref(&format!("{addr}/multi"), &opts(cache.path())).unwrap();
    assert_eq!(loaded.digest.unwrap().to_string(), amd.digest());
    match &loaded.tree.nodes["etc/id"].kind {
        smolvm_rootfs::tree::NodeKind::File(smolvm_rootfs::tree::FileData::Inline(d)) => {
            assert_eq!(d, b"amd")
        }
        other => panic!("{other:?}"),
    }
    let e = load_ref(&format!("{addr}/multi:arm-only"), &opts(cache.path()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("linux/amd64") && e.contains("linux/arm64"),
        "{e}"
    );
    // An arm64 target takes the other one.
    let mut arm_opts = opts(cache.path());
    arm_opts.platform = Platform::for_target("linux", "aarch64");
    let loaded = load_ref(&format!("{addr}/multi:latest"), &arm_opts).unwrap();
    assert_eq!(loaded.digest.unwrap().to_string(), arm.digest());
}

#[test]
fn changed_blob_on_the_registry_is_a_digest_mismatch_and_is_not_cached() {
    let reg = Registry::default();
    let img = image("x", "amd64");
    reg.push("bad", "v1", &img);
    // The registry now serves different bytes for the second layer.
    let layer = digest(&img.layers[1]);
    let mut evil = img.layers[1].clone();
    let last = evil.len() - 1;
    evil[last] ^= 0xff;
    reg.route(
        &format!("/v2/bad/blobs/{layer}"),
        "application/octet-stream",
        evil,
    );
    let addr = reg.clone().start();
    let cache = tempfile::tempdir().unwrap();
    let e = load_ref(&format!("{addr}/bad:v1"), &opts(cache.path()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("digest mismatch"), "{e}");
    assert!(e.contains(&layer), "{e}");
    assert!(e.contains(&addr), "{e}");
    let d = Digest::parse(&layer).unwrap();
    assert!(!cache.path().join("blobs/sha256").join(d.hex()).exists());
    // A manifest that does not match the digest asked for is refused too.
    let other = image("y", "amd64");
    reg.route(
        &format!("/v2/bad/manifests/{}", img.digest()),
        OCI_MANIFEST,
        other.manifest.clone(),
    );
    let e = load_ref(&format!("{addr}/bad@{}", img.digest()), &opts(cache.path()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("digest mismatch") || e.contains("Digest"), "{e}");
}

#[test]
fn missing_tag_names_the_tags_there_are() {
    let reg = Registry::default();
    reg.push("app", "v1", &image("1", "amd64"));
    reg.route(
        "/v2/app/tags/list",
        "application/json",
        serde_json::to_vec(&json!({"name": "app", "tags": ["v1", "v2"]})).unwrap(),
    );
    let addr = reg.clone().start();
    let cache = tempfile::tempdir().unwrap();
    let e = load_ref(&format!("{addr}/app:v9"), &opts(cache.path()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("app:v9") && e.contains("v1, v2"), "{e}");
}

#[test]
fn credentials_from_the_docker_config_are_used() {
    let token = base64::engine::general_purpose::STANDARD.encode("user:secret");
    let reg = Registry {
        basic: Some(format!("Basic {token}")),
        ..Registry::default()
    };
    reg.push("private", "v1", &image("p", "amd64"));
    let addr = reg.clone().start();
    let cache = tempfile::tempdir().unwrap();
    // Without credentials: denied, with the fix.
    let e = load_ref(&format!("{addr}/private:v1"), &opts(cache.path()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("denied") && e.contains("docker login"), "{e}");
    let mut o = opts(cache.path());
    let config = cache.path().join("config.json");
    std::fs::write(
        &config,
        serde_json::to_vec(&json!({"auths": {format!("http://{addr}"): {"auth": token}}})).unwrap(),
    )
    .unwrap();
    o.registry.docker_config = Some(config);
    load_ref(&format!("{addr}/private:v1"), &o).unwrap();
}

#[test]
fn docker_config_keys_and_entries() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("config.json");
    let b64 = base64::engine::general_purpose::STANDARD.encode("hub:pw");
    std::fs::write(
        &p,
        serde_json::to_vec(&json!({"auths": {
            "https://index.docker.io/v1/": {"auth": b64},
            "ghcr.io": {"username": "u", "password": "p"},
        }}))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        credentials("docker.io", Some(&p)).unwrap(),
        RegistryAuth::Basic("hub".into(), "pw".into())
    );
    assert_eq!(
        credentials("ghcr.io", Some(&p)).unwrap(),
        RegistryAuth::Basic("u".into(), "p".into())
    );
    assert_eq!(
        credentials("quay.io", Some(&p)).unwrap(),
        RegistryAuth::Anonymous
    );
    std::fs::write(&p, "{not json").unwrap();
    let e = credentials("quay.io", Some(&p)).unwrap_err().to_string();
    assert!(e.contains("config.json") && e.contains("JSON"), "{e}");
}

#[test]
fn unreachable_registry_fails_fast_and_names_itself() {
    // A port nobody listens on: refused at once.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cache = tempfile::tempdir().unwrap();
    let e = load_ref(&format!("127.0.0.1:{port}/x:v1"), &opts(cache.path()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("127.0.0.1:{port}")) && e.contains("connect"),
        "{e}"
    );
    // A registry that accepts and never answers: a timeout, not a hang.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for c in silent.incoming().flatten() {
            keep.lock().unwrap().push(c);
        }
    });
    let mut o = opts(cache.path());
    o.registry.connect_timeout = Duration::from_secs(1);
    o.registry.read_timeout = Duration::from_secs(1);
    let started = std::time::Instant::now();
    let e = load_ref(&format!("{addr}/x:v1"), &o)
        .unwrap_err()
        .to_string();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        e.contains(&addr) && (e.contains("no answer") || e.contains("time")),
        "{e}"
    );
}

#[test]
fn plain_http_only_for_this_machine_or_insecure() {
    let local = parse_registry("localhost:5000/x").unwrap();
    let remote = parse_registry("registry.example.com/x").unwrap();
    assert_eq!(scheme(&local, false), "http");
    assert_eq!(scheme(&remote, false), "https");
    assert_eq!(scheme(&remote, true), "http");
}

#[test]
fn challenges_parse_quoted_and_bare_values() {
    let (kind, p) = parse_challenge(
        r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
    );
    assert_eq!(kind, "Bearer");
    assert_eq!(p["realm"], "https://auth.docker.io/token");
    assert_eq!(p["service"], "registry.docker.io");
    assert_eq!(p["scope"], "repository:library/alpine:pull");
    let (kind, p) = parse_challenge("Basic realm=test, charset=UTF-8");
    assert_eq!(kind, "Basic");
    assert_eq!(p["realm"], "test");
    assert_eq!(p["charset"], "UTF-8");
}

/// Pulls `reference` with short timeouts and returns the error and how long
/// it took; the registry streams forever, so only a cap ends it early.
fn pull_endless(reference: &str) -> (String, Duration) {
    let cache = tempfile::tempdir().unwrap();
    let mut o = opts(cache.path());
    // The stream never stalls, so the read timeout never fires; the whole
    // request timeout (connect + read) would, after 20 s.
    o.registry.connect_timeout = Duration::from_secs(10);
    o.registry.read_timeout = Duration::from_secs(10);
    let started = std::time::Instant::now();
    let e = load_ref(reference, &o).unwrap_err().to_string();
    (e, started.elapsed())
}

#[test]
fn an_endless_manifest_is_refused_at_the_cap_while_reading() {
    let reg = Registry::default();
    reg.endless
        .lock()
        .unwrap()
        .push("/v2/app/manifests/v1".into());
    let addr = reg.clone().start();
    let (e, took) = pull_endless(&format!("{addr}/app:v1"));
    assert!(
        e.contains(&format!("registry {addr}"))
            && e.contains("manifest app:v1")
            && e.contains(&format!("{MAX_JSON_BLOB}-byte limit")),
        "{e}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn endless_token_tag_list_and_error_bodies_are_capped() {
    // A token service (on the same server) that never finishes its answer.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let reg = Registry {
        bearer_realm: Some(format!("http://{addr}/token")),
        ..Registry::default()
    };
    reg.endless.lock().unwrap().push("/token".into());
    reg.clone().start_on(listener);
    let (e, took) = pull_endless(&format!("{addr}/app:v1"));
    assert!(
        e.contains(&format!("registry {addr}"))
            && e.contains("token response")
            && e.contains(&format!("{MAX_TOKEN_RESPONSE}-byte limit")),
        "{e}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");

    // A tag list that never ends, asked for after a missing tag: the
    // message still comes, without the tags.
    let reg = Registry::default();
    reg.endless.lock().unwrap().push("/v2/app/tags/list".into());
    let addr = reg.clone().start();
    let (e, took) = pull_endless(&format!("{addr}/app:v9"));
    assert!(e.contains("has no app:v9"), "{e}");
    assert!(took < Duration::from_secs(10), "took {took:?}");

    // An error whose body never ends: the first 64 KiB are read for the
    // message, the rest never.
    let reg = Registry::default();
    reg.endless_error
        .lock()
        .unwrap()
        .push("/v2/app/manifests/v1".into());
    let addr = reg.clone().start();
    let (e, took) = pull_endless(&format!("{addr}/app:v1"));
    assert!(
        e.contains(&format!("registry {addr}")) && e.contains("HTTP 500"),
        "{e}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn a_bearer_challenge_is_answered_with_a_token_from_the_realm() {
    let mut reg = Registry::default();
    let img = image("b", "amd64");
    reg.push("app", "v1", &img);
    // The realm is on the same server; bind first to learn the address.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    reg.bearer_realm = Some(format!("http://{addr}/token"));
    reg.clone().start_on(listener);
    let cache = tempfile::tempdir().unwrap();
    let loaded = load_ref(&format!("{addr}/app:v1"), &opts(cache.path())).unwrap();
    assert_eq!(loaded.digest.unwrap().to_string(), img.digest());
    assert!(reg.log.lock().unwrap().iter().any(|l| l == "GET /token"));
}
