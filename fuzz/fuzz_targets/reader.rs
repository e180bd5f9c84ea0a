//! Feeds arbitrary bytes to every reader entry point a hostile file reaches:
//! `Artifact::parse`, the signature check, `verify_integrity`, and streaming
//! each section's content. Nothing may panic, loop without bound or allocate
//! without bound. Kept in step with `smolvm_tests::exercise_reader`, which
//! the stable property tests and the regression replay run.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use smolvm_format::Artifact;

/// A hostile manifest may declare a 64 GiB rootfs that really expands that
/// far; a bounded prefix still covers the decoder and `finish`.
const READ_CAP: u64 = 16 << 20;

fuzz_target!(|data: &[u8]| {
    let Ok(art) = Artifact::parse(data) else {
        return;
    };
    let _ = smolvm_runtime::check_signature(&art, &[]);
    let _ = art.verify_integrity();
    for s in &art.manifest.sections {
        if let Ok(mut stream) = art.open_section(s) {
            let mut bounded = (&mut stream).take(READ_CAP);
            if std::io::copy(&mut bounded, &mut std::io::sink()).is_ok() {
                let _ = stream.finish();
            }
        }
    }
});
