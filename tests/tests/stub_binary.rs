//! The stub every packed executable starts with: small, and needing nothing
//! at run time but glibc (issue 3's aims), checked on the binary that
//! scripts/test.sh builds with the size-tuned `stub` profile.

use std::path::PathBuf;

/// The size aim for the stub.
const MAX_STUB_BYTES: usize = 3 << 20;

fn stub() -> Option<PathBuf> {
    let path = smolvm_tests::stub_bin();
    if path.exists() {
        return Some(path);
    }
    let why = format!(
        "{} missing (cargo build --profile stub -p smolvm-stub)",
        path.display()
    );
    assert!(std::env::var_os("SMOLVM_REQUIRE_BOOT").is_none(), "{why}");
    eprintln!("SKIPPING: {why}");
    None
}

#[test]
fn stub_is_small_and_needs_only_glibc() {
    let Some(path) = stub() else { return };
    let bytes = std::fs::read(&path).unwrap();
    let elf = goblin::elf::Elf::parse(&bytes).unwrap();
    eprintln!(
        "{}: {} bytes, needs {:?}",
        path.display(),
        bytes.len(),
        elf.libraries
    );
    assert!(
        bytes.len() <= MAX_STUB_BYTES,
        "the stub is {} bytes, over the {MAX_STUB_BYTES}-byte aim",
        bytes.len()
    );
    let beyond_glibc: Vec<&str> = elf
        .libraries
        .iter()
        .copied()
        .filter(|l| *l != "libc.so.6")
        .collect();
    assert!(
        beyond_glibc.is_empty(),
        "the stub needs {beyond_glibc:?} beyond glibc (stub/build.rs links libgcc_eh statically so that libgcc_s.so.1 is not needed)"
    );
}
