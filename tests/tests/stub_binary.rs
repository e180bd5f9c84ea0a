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
    let libraries = needed_libraries(&bytes);
    eprintln!(
        "{}: {} bytes, needs {libraries:?}",
        path.display(),
        bytes.len(),
    );
    assert!(
        bytes.len() <= MAX_STUB_BYTES,
        "the stub is {} bytes, over the {MAX_STUB_BYTES}-byte aim",
        bytes.len()
    );
    let beyond_glibc: Vec<&str> = libraries
        .iter()
        .map(String::as_str)
        .filter(|l| *l != "libc.so.6")
        .collect();
    assert!(
        beyond_glibc.is_empty(),
        "the stub needs {beyond_glibc:?} beyond glibc (stub/build.rs links libgcc_eh statically so that libgcc_s.so.1 is not needed)"
    );
}

/// The DT_NEEDED entries of a 64-bit ELF's dynamic section.
fn needed_libraries(bytes: &[u8]) -> Vec<String> {
    use object::read::elf::{Dyn as _, FileHeader as _};
    let header = object::elf::FileHeader64::<object::Endianness>::parse(bytes).unwrap();
    let endian = header.endian().unwrap();
    let sections = header.sections(endian, bytes).unwrap();
    let (dynamic, link) = sections
        .dynamic(endian, bytes)
        .unwrap()
        .expect("a dynamically linked stub has a .dynamic section");
    let strings = sections.strings(endian, bytes, link).unwrap();
    dynamic
        .iter()
        .filter(|d| d.tag32(endian) == Some(object::elf::DT_NEEDED))
        .map(|d| String::from_utf8_lossy(d.string(endian, strings).unwrap()).into_owned())
        .collect()
}
