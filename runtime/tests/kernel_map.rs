//! The zero-copy kernel hand-off, checked the way libkrun uses it: after
//! `kernel_map::prepare`, `krunfw_get_kernel` (which the patched libkrun
//! calls, linked, instead of dlopening `libkrunfw.so.5`) returns a mapping
//! of exactly the kernel file's segment at the ELF's load address and
//! entry, and no library answering to that soname was loaded. One process,
//! no harness: the mapping is per process.

mod one_test;

use std::io::Write;

use smolvm_runtime::kernel_map::HandOff;

fn main() {
    if one_test::answered_list() {
        return;
    }
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

    assert!(
        smolvm_runtime::kernel_map::prepare(&file, false).unwrap() == HandOff::Mapped,
        "the hand-off is available on this host"
    );
    let get = smolvm_runtime::kernel_map::krunfw_get_kernel;
    let (mut load, mut entry, mut len) = (0u64, 0u64, 0usize);
    // SAFETY: libkrun's entry point, with valid out-pointers.
    let host = unsafe { get(&mut load, &mut entry, &mut len) }.cast::<u8>();
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

    // Nothing loaded a library by libkrun's soname (the hand-off is linked).
    // SAFETY: RTLD_NOLOAD only looks at what is loaded; a null handle is
    // the answer "none".
    let loaded = unsafe {
        libc::dlopen(
            c"libkrunfw.so.5".as_ptr(),
            libc::RTLD_NOW | libc::RTLD_NOLOAD,
        )
    };
    assert!(loaded.is_null(), "no libkrunfw.so.5 is loaded");
    // The copying path maps nothing.
    assert!(smolvm_runtime::kernel_map::prepare(&file, true).unwrap() == HandOff::Copy);
    println!(
        "kernel_map: 6 checks passed (placement, bytes, privacy, no library loaded, copy path)"
    );
}
