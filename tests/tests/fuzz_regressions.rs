//! Replays every input in `fuzz/regressions/reader/` through the reader
//! entry points of the `reader` fuzz target (`exercise_reader`), on stable
//! Rust, so a fixed fuzz crash stays fixed. Also keeps the fuzzer's seed
//! artifacts in step with the fixtures: `SMOLVM_BLESS=1` rewrites them.

use smolvm_tests::{build, exercise_reader, full_check, repo, trusted, ArtifactSpec};

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let small = || ArtifactSpec {
        compress: false,
        kernel: vec![0x7f; 10],
        rootfs: vec![0; 1024],
        ..ArtifactSpec::default()
    };
    vec![
        ("seed-bare-signed-stored", build(&small()).bytes),
        (
            "seed-packed-signed-zstd",
            build(&ArtifactSpec {
                stub: Some(b"\x7fELF".to_vec()),
                kernel: vec![0x90; 3000],
                rootfs: smolvm_tests::tiny_rootfs_tar()[..2048].to_vec(),
                ..ArtifactSpec::default()
            })
            .bytes,
        ),
        (
            "seed-bare-unsigned-stored",
            build(&ArtifactSpec {
                signer: None,
                ..small()
            })
            .bytes,
        ),
    ]
}

#[test]
fn seed_artifacts_are_current() {
    let dir = repo().join("fuzz/regressions/reader");
    let bless = std::env::var_os("SMOLVM_BLESS").is_some_and(|v| v == "1");
    for (name, bytes) in seeds() {
        let path = dir.join(name);
        if bless {
            std::fs::write(&path, &bytes).unwrap();
            continue;
        }
        let on_disk = std::fs::read(&path).unwrap_or_default();
        assert!(
            on_disk == bytes,
            "{} is stale or missing; SMOLVM_BLESS=1 cargo test -p smolvm-tests --test fuzz_regressions",
            path.display()
        );
        // Signed seeds are valid, so the fuzzer starts from deep inside the reader.
        if !name.contains("unsigned") {
            full_check(&bytes, &trusted()).unwrap();
        }
    }
}

#[test]
fn every_regression_input_is_handled_without_panicking() {
    let dir = repo().join("fuzz/regressions/reader");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        if std::panic::catch_unwind(|| exercise_reader(&bytes)).is_err() {
            panic!("the reader panicked on {}", path.display());
        }
        replayed += 1;
    }
    // While blessing, the seeds are being rewritten by the other test.
    let blessing = std::env::var_os("SMOLVM_BLESS").is_some_and(|v| v == "1");
    assert!(
        blessing || replayed >= 3,
        "only {replayed} inputs in {}",
        dir.display()
    );
}
