//! What each fuzz target does with its input, in one place: the targets in
//! fuzz_targets/ call these under libFuzzer, and
//! tests/tests/fuzz_regressions.rs calls them on stable for every file in
//! fuzz/regressions/<target>/ (`#[path]`-included by both). Nothing here
//! may panic, loop without bound or allocate without bound.

use std::io::Write as _;
use std::path::Path;

/// A Smolfile's text: parsing and its checks (paths, names, limits).
pub fn smolfile(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = smolvm_packer::smolfile::Smolfile::parse(text, Path::new("Smolfile"));
    }
}

/// An `--image` argument, and the registry reference grammar under it.
/// Local paths resolve under a directory that does not exist, so the
/// parser's file checks find nothing.
pub fn image_reference(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = smolvm_packer::image::reference::parse(
            text,
            Some(Path::new("/nonexistent/smolvm-fuzz")),
        );
        let _ = smolvm_packer::image::reference::parse_registry(text);
    }
}

/// A key file, read as a public and as a secret key (smolvm and OpenSSH
/// formats). Key files are read by path, so the bytes go through a file.
pub fn key_file(data: &[u8]) {
    let mut file = tempfile::NamedTempFile::new().expect("temporary key file");
    file.write_all(data).expect("write temporary key file");
    let _ = smolvm_signing::PublicKey::read_file(file.path());
    let _ = smolvm_signing::SecretKey::read_file(file.path());
}

/// Image layers as tars (whiteouts, opaque markers, hard and symbolic
/// links), applied in order to one tree, then the same bytes as one plain
/// root tarball. The input is split into layers at each `LAYER_BREAK`.
pub fn flatten_layers(data: &[u8]) {
    let mut image = smolvm_rootfs::flatten::Flattener::new("fuzz");
    for (i, layer) in split_layers(data).into_iter().enumerate() {
        if image.apply_layer(layer, &format!("{i}")).is_err() {
            break;
        }
    }
    let mut tree = image.finish();
    tree.ensure_mount_points();
    let _ = tree.content_len();
    let mut plain = smolvm_rootfs::flatten::Flattener::plain("fuzz");
    let _ = plain.apply_layer(data, "plain");
    let _ = plain.finish();
}

/// Separates layers in a flatten input (8 bytes no tar header begins with).
pub const LAYER_BREAK: &[u8] = b"\0LAYER\0\xff";

/// The layers of a flatten input.
pub fn split_layers(data: &[u8]) -> Vec<&[u8]> {
    let mut layers = Vec::new();
    let mut rest = data;
    while let Some(at) = rest
        .windows(LAYER_BREAK.len())
        .position(|w| w == LAYER_BREAK)
    {
        layers.push(&rest[..at]);
        rest = &rest[at + LAYER_BREAK.len()..];
    }
    layers.push(rest);
    layers
}
