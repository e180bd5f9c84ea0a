//! Links gcc's unwinder statically (libgcc_eh.a) so that the stub needs
//! nothing at run time beyond glibc: std refers to `_Unwind_*` (panic=abort
//! still keeps backtraces), and with those symbols resolved here the linker
//! drops `libgcc_s.so.1` (std asks for it `--as-needed`). This is what
//! `gcc -static-libgcc` does for C programs.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    let static_crt = std::env::var("CARGO_CFG_TARGET_FEATURE")
        .unwrap_or_default()
        .split(',')
        .any(|f| f == "crt-static");
    if !target.ends_with("-linux-gnu") || static_crt {
        return; // fully static builds link gcc_eh already
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .unwrap_or_else(|e| panic!("running {cc} -print-file-name=libgcc_eh.a: {e}"));
    let path = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let Some(dir) = path
        .parent()
        .filter(|_| path.is_absolute() && path.exists())
    else {
        println!("cargo:warning=libgcc_eh.a not found by {cc}; the stub will need libgcc_s.so.1");
        return;
    };
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-lib=static=gcc_eh");
}
