//! The zero-copy kernel hand-off, checked the way libkrun uses it: after
//! `kernel_map::prepare`, `dlopen("libkrunfw.so.5")` (libkrun's lookup, by soname) must
//! give the shim, whose `krunfw_get_kernel` returns a mapping of exactly
//! the kernel file's segment at the ELF's load address and entry. One
//! process, no harness: the shim loads once per process.

use std::io::Write;

use smolvm_runtime::kernel_map::HandOff;

fn main() {
    // A kernel file as the packer writes it: one PT_LOAD at file offset
    // 0x1000, guest address 0x1000000, entry 0x1000123.
    let image: Vec<u8> = (0..3 * 4096 + 100u32)
        .map(|i| (i * 7 + 3).to_le_bytes()[0])
        .collect();
    let size = image.len() as u64;
    let mut elf = vec![0u8; 0x1000];
    elf[..4].copy_from_slice(b"\x7fELF");
    elf[4] = 2;
    elf[5] = 1;
    elf[6] = 1;
    elf[16..18].copy_from_slice(&2u16.to_le_bytes());
    elf[18..20].copy_from_slice(&62u16.to_le_bytes());
    elf[20..24].copy_from_slice(&1u32.to_le_bytes());
    elf[24..32].copy_from_slice(&0x1000123u64.to_le_bytes());
    elf[32..40].copy_from_slice(&64u64.to_le_bytes());
    elf[52..54].copy_from_slice(&64u16.to_le_bytes());
    elf[54..56].copy_from_slice(&56u16.to_le_bytes());
    elf[56..58].copy_from_slice(&1u16.to_le_bytes());
    let p = &mut elf[64..120];
    p[..4].copy_from_slice(&1u32.to_le_bytes());
    p[4..8].copy_from_slice(&7u32.to_le_bytes());
    p[8..16].copy_from_slice(&0x1000u64.to_le_bytes());
    p[16..24].copy_from_slice(&0x1000000u64.to_le_bytes());
    p[24..32].copy_from_slice(&0x1000000u64.to_le_bytes());
    p[32..40].copy_from_slice(&size.to_le_bytes());
    p[40..48].copy_from_slice(&size.to_le_bytes());
    elf.extend_from_slice(&image);
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&elf).unwrap();

    // Before the hand-off nothing answers to the soname (unless the host
    // has a real libkrunfw installed, which the check below tells apart).
    assert!(
        smolvm_runtime::kernel_map::prepare(&file, false).unwrap() == HandOff::Mapped,
        "the hand-off is available on this host"
    );
    // SAFETY: dlopen/dlsym by name, as libkrun's libloading does.
    let get: unsafe extern "C" fn(*mut u64, *mut u64, *mut usize) -> *mut u8 = unsafe {
        let h = libc::dlopen(c"libkrunfw.so.5".as_ptr(), libc::RTLD_NOW);
        assert!(!h.is_null(), "dlopen(libkrunfw.so.5) finds the shim");
        let f = libc::dlsym(h, c"krunfw_get_kernel".as_ptr());
        assert!(!f.is_null());
        std::mem::transmute::<*mut libc::c_void, _>(f)
    };
    let (mut load, mut entry, mut len) = (0u64, 0u64, 0usize);
    // SAFETY: the shim's function, with valid out-pointers.
    let host = unsafe { get(&mut load, &mut entry, &mut len) };
    assert_eq!((load, entry), (0x1000000, 0x1000123));
    assert_eq!(len, 4 * 4096, "the segment rounded up to a page");
    assert_eq!(host as usize % 4096, 0, "page-aligned, as libkrun requires");
    // SAFETY: the mapping is `len` bytes long and lives for the process.
    let mapped = unsafe { std::slice::from_raw_parts(host, len) };
    assert_eq!(
        &mapped[..image.len()],
        &image[..],
        "the file's segment bytes"
    );
    assert!(mapped[image.len()..].iter().all(|&b| b == 0), "zero tail");
    // Guest writes are private: the file keeps its bytes.
    // SAFETY: the mapping is writable (MAP_PRIVATE) and `len` bytes long.
    unsafe { *host = !image[0] };
    let mut first = [0u8; 1];
    std::os::unix::fs::FileExt::read_at(&file, &mut first, 0x1000).unwrap();
    assert_eq!(first[0], image[0]);

    // After libkrun has created a context, its lookup is done: the copying
    // path must be used from then on.
    smolvm_runtime::kernel_map::context_created();
    assert!(smolvm_runtime::kernel_map::prepare(&file, false).unwrap() != HandOff::Mapped);
    println!("kernel_map: 6 checks passed (soname lookup, placement, bytes, privacy, fallback)");
}
