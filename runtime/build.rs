//! Builds the freestanding guest init (guest-init/init.c) that the runtime
//! injects into every guest root, and the kernel bundle shim library
//! (krunfw-shim/shim.c) that hands libkrun the mapped kernel; see those
//! files for why they exist.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("smolvm-init");
    let src = "guest-init/init.c";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-env-changed=CC");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args([
            "-Os",
            "-static",
            "-nostdlib",
            "-ffreestanding",
            "-fno-stack-protector",
            "-fno-asynchronous-unwind-tables",
            "-fno-pie",
            "-no-pie",
            "-fno-builtin",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-Wl,--gc-sections",
            "-Wl,--build-id=none",
            "-s",
            "-o",
        ])
        .arg(&out)
        .arg(src)
        .status()
        .unwrap_or_else(|e| panic!("running {cc} to build the guest init: {e} (install gcc: apt-get install gcc libc6-dev)"));
    assert!(status.success(), "{cc} failed to build {src}");

    let shim_out =
        PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("libkrunfw-shim.so");
    let shim_src = "krunfw-shim/shim.c";
    println!("cargo:rerun-if-changed={shim_src}");
    let status = Command::new(&cc)
        .args([
            "-shared",
            "-fPIC",
            "-nostdlib",
            "-O2",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-s",
            "-Wl,-soname,libkrunfw.so.5",
            "-Wl,--build-id=none",
            "-Wl,-z,noexecstack",
            "-Wl,-z,max-page-size=4096",
            "-Wl,-z,noseparate-code",
            "-o",
        ])
        .arg(&shim_out)
        .arg(shim_src)
        .status()
        .unwrap_or_else(|e| panic!("running {cc} to build the kernel shim: {e} (install gcc: apt-get install gcc libc6-dev)"));
    assert!(status.success(), "{cc} failed to build {shim_src}");
}
