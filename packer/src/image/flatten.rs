//! An image's layer blobs, each checked against its digest and diff_id while
//! it is applied onto one tree by [`Flattener`] (the overlay rules live in
//! `smolvm_rootfs::flatten`).

use std::io::BufReader;

use super::digest::{Digest, HashingReader};
use super::store::{check_blob, Store, MAX_BLOB};
use super::{decompress, io_err, ImageError};
use smolvm_rootfs::flatten::{Flattener, MAX_CONTENT};
use smolvm_rootfs::tree::Tree;

/// One layer blob to apply, as the image describes it.
#[derive(Debug, Clone)]
pub struct LayerBlob {
    /// Member path in the store (`blobs/sha256/<hex>`, `<id>/layer.tar`).
    pub name: String,
    /// Digest of the stored (possibly compressed) bytes, when known.
    pub digest: Option<Digest>,
    pub size: Option<u64>,
    /// Digest of the uncompressed tar (the config's `rootfs.diff_ids`).
    pub diff_id: Option<Digest>,
}

/// Verifies each layer blob and applies them in order.
pub fn flatten_layers(
    store: &dyn Store,
    layers: &[LayerBlob],
    what: &str,
) -> Result<Tree, ImageError> {
    let mut flat = Flattener::new(what);
    for (i, layer) in layers.iter().enumerate() {
        let label = format!("{} ({})", i + 1, layer.name);
        let blob_what = format!("{what}: layer {label}");
        let reader = store
            .open(&layer.name)?
            .ok_or_else(|| ImageError::Invalid {
                what: what.to_string(),
                fault: format!("layer {} is missing", layer.name),
            })?;
        // One pass: the layer is parsed while its stored bytes are hashed.
        // The blob's digest and size are checked (the rest read if parsing
        // stopped early) before the parse result counts, so a damaged blob
        // is reported as such, not as the tar error it caused.
        let mut stored = HashingReader::new(reader, layer.size.unwrap_or(MAX_BLOB));
        let applied = (|| -> Result<Digest, ImageError> {
            let unpacked = decompress(BufReader::with_capacity(1 << 20, &mut stored))
                .map_err(io_err(blob_what.clone()))?;
            let mut tar_stream = HashingReader::new(unpacked, MAX_CONTENT);
            flat.apply_layer(&mut tar_stream, &label)?;
            Ok(tar_stream.finish().map_err(io_err(blob_what.clone()))?.0)
        })();
        check_blob(
            store,
            &layer.name,
            layer.digest.as_ref(),
            layer.size,
            &blob_what,
            stored,
        )?;
        let diff = applied?;
        if let Some(d) = layer.diff_id.as_ref().filter(|d| **d != diff) {
            return Err(ImageError::DigestMismatch {
                what: format!("{blob_what}: uncompressed content"),
                expected: d.to_string(),
                actual: diff.to_string(),
                hint: "it does not match the image config's rootfs.diff_ids; the image is corrupt"
                    .into(),
            });
        }
    }
    Ok(flat.finish())
}
