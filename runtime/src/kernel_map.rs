//! Zero-copy kernel hand-off: the verified kernel file is mapped, not read.
//!
//! libkrun boots a kernel two ways. Given a file (`krun_set_kernel`), it
//! reads the whole ELF into fresh guest memory (21 MB for the libkrunfw
//! kernel: the largest single cost of a warm start). Given a kernel
//! *bundle* (`krunfw_get_kernel`, normally from a `libkrunfw.so.5` it
//! dlopens), it maps that host memory straight into the guest as the
//! kernel's RAM on x86_64 (`Payload::KernelMmap`), with no copy.
//!
//! So the runtime maps the one loadable segment of the verified cache file
//! `MAP_PRIVATE` (guest writes stay private; the file never changes) and
//! answers libkrun's `krunfw_get_kernel` itself: the function below is
//! linked into the program, and our libkrun (vendor/patches/libkrun) calls
//! it instead of dlopening a library. libkrun therefore never searches the
//! library path (where an `LD_LIBRARY_PATH` with an empty entry would load
//! a library from the current directory into the host process), and no
//! executable memfd is needed (`vm.memfd_noexec = 2` hosts refuse them).
//! What boots is the verified file's bytes: the mapping is of the file the
//! cache published after checking its hash, opened by descriptor.
//!
//! Anything unusual falls back to the copying path (`krun_set_kernel`),
//! which always works: another architecture, a kernel ELF whose segment is
//! not page-aligned or has more memory than file bytes, or
//! `SMOLVM_KERNEL_COPY=1` (for comparing the two paths).

use std::ffi::{c_char, c_void};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use object::elf;
use object::read::elf::{FileHeader, ProgramHeader};
use object::LittleEndian;

/// The ELF header and program headers must lie in the file's first page.
const HEAD_LEN: usize = 4096;

const PAGE: u64 = 4096;

/// The mapped kernel [`krunfw_get_kernel`] hands libkrun: set by
/// [`prepare`] before `krun_start_enter`, which reads them; null and zero
/// while nothing is mapped.
static KERNEL_HOST: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
static KERNEL_GUEST: AtomicU64 = AtomicU64::new(0);
static KERNEL_ENTRY: AtomicU64 = AtomicU64::new(0);
static KERNEL_SIZE: AtomicUsize = AtomicUsize::new(0);

/// libkrun's kernel bundle entry point, which the patched libkrun calls
/// where upstream dlopens `libkrunfw.so.5` (vendor/patches/libkrun): the
/// mapping [`prepare`] made (host address, guest load address, entry,
/// length), or a null pointer and zeros when it made none.
///
/// # Safety
/// `guest`, `entry` and `size` must be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn krunfw_get_kernel(
    guest: *mut u64,
    entry: *mut u64,
    size: *mut usize,
) -> *mut c_char {
    // SAFETY: the caller passes three writable out-pointers (libkrun's
    // load_krunfw_payload passes its locals).
    unsafe {
        *guest = KERNEL_GUEST.load(Ordering::Acquire);
        *entry = KERNEL_ENTRY.load(Ordering::Acquire);
        *size = KERNEL_SIZE.load(Ordering::Acquire);
    }
    KERNEL_HOST.load(Ordering::Acquire).cast()
}

/// The kernel file's one loadable segment, as libkrun would place it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// File offset of the segment (page-aligned).
    pub offset: u64,
    /// Bytes to map: the segment's file size rounded up to a page.
    pub len: u64,
    /// Guest-physical load address (page-aligned).
    pub load: u64,
    pub entry: u64,
}

/// The segment of a 64-bit little-endian x86-64 executable that can be
/// mapped as is: exactly one `PT_LOAD`, with page-aligned offset and
/// physical address, whose memory size does not exceed its page-rounded
/// file size, lying inside a file of `file_len` bytes. `None` for anything
/// else (the copying path boots it).
pub fn mappable_segment(head: &[u8], file_len: u64) -> Option<Segment> {
    let header = elf::FileHeader64::<LittleEndian>::parse(head).ok()?;
    let e = header.endian().ok()?;
    if header.e_machine(e) != elf::EM_X86_64 || header.e_type(e) != elf::ET_EXEC {
        return None;
    }
    let phdrs = header.program_headers(e, head).ok()?;
    let mut loads = phdrs.iter().filter(|p| p.p_type(e) == elf::PT_LOAD);
    let (p, None) = (loads.next()?, loads.next()) else {
        return None; // more than one loadable segment
    };
    let (offset, filesz, memsz, load) = (p.p_offset(e), p.p_filesz(e), p.p_memsz(e), p.p_paddr(e));
    let len = filesz.checked_add(PAGE - 1)? / PAGE * PAGE;
    let aligned = offset % PAGE == 0 && load % PAGE == 0;
    let inside = offset
        .checked_add(filesz)
        .is_some_and(|end| end <= file_len);
    let fits_page = filesz > 0 && memsz <= len;
    (aligned && inside && fits_page).then_some(Segment {
        offset,
        len,
        load,
        entry: header.e_entry(e),
    })
}

/// How the kernel reaches libkrun.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandOff {
    /// Mapped: do not call `krun_set_kernel`.
    Mapped,
    /// libkrun copies it from the file (`krun_set_kernel`).
    Copy,
}

/// Maps `kernel`'s segment for libkrun's [`krunfw_get_kernel`] when the
/// file allows and `copy` (`SMOLVM_KERNEL_COPY=1`) is off; otherwise the
/// caller hands libkrun the file (`krun_set_kernel`). Must run before
/// `krun_start_enter`, in the process that calls it.
pub fn prepare(kernel: &File, copy: bool) -> std::io::Result<HandOff> {
    if copy {
        return Ok(HandOff::Copy);
    }
    Ok(match map_segment(kernel) {
        Ok(true) => HandOff::Mapped,
        // Anything unusual boots the same bytes through the copying path.
        Ok(false) | Err(_) => HandOff::Copy,
    })
}

/// Maps the kernel's one segment and publishes it for
/// [`krunfw_get_kernel`]. `Ok(false)`: the file is not one that maps as is.
fn map_segment(kernel: &File) -> std::io::Result<bool> {
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        return Ok(false);
    }
    let file_len = kernel.metadata()?.len();
    let mut head = vec![0u8; HEAD_LEN];
    let n = read_full_at(kernel, &mut head)?;
    head.truncate(n);
    let Some(seg) = mappable_segment(&head, file_len) else {
        return Ok(false);
    };
    let Ok(len) = usize::try_from(seg.len) else {
        return Ok(false);
    };
    let Ok(offset) = libc::off_t::try_from(seg.offset) else {
        return Ok(false);
    };
    // SAFETY: a fresh private mapping of `len` bytes of a descriptor we own
    // at a page-aligned offset; `len` pages end at most one partial page
    // past the segment, inside the file (checked above), so no page of it
    // lies wholly beyond the end of the file. It is never unmapped: libkrun
    // uses it as guest memory until the process exits.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE,
            kernel.as_raw_fd(),
            offset,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    KERNEL_GUEST.store(seg.load, Ordering::Release);
    KERNEL_ENTRY.store(seg.entry, Ordering::Release);
    KERNEL_SIZE.store(len, Ordering::Release);
    KERNEL_HOST.store(addr, Ordering::Release);
    Ok(true)
}

fn read_full_at(f: &File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ELF64 x86-64 executable with the given PT_LOAD segments
    /// (offset, paddr, filesz, memsz), headers in the first page.
    fn elf(entry: u64, loads: &[(u64, u64, u64, u64)]) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56 * loads.len()];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2; // 64-bit
        b[5] = 1; // little-endian
        b[6] = 1; // version
        b[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        b[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
        b[20..24].copy_from_slice(&1u32.to_le_bytes());
        b[24..32].copy_from_slice(&entry.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        b[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        b[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        b[56..58].copy_from_slice(&u16::try_from(loads.len()).unwrap().to_le_bytes());
        for (i, &(off, paddr, filesz, memsz)) in loads.iter().enumerate() {
            let p = &mut b[64 + 56 * i..64 + 56 * (i + 1)];
            p[..4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
            p[8..16].copy_from_slice(&off.to_le_bytes());
            p[16..24].copy_from_slice(&paddr.to_le_bytes());
            p[24..32].copy_from_slice(&paddr.to_le_bytes());
            p[32..40].copy_from_slice(&filesz.to_le_bytes());
            p[40..48].copy_from_slice(&memsz.to_le_bytes());
        }
        b
    }

    #[test]
    fn the_packers_wrapped_kernel_maps_as_is() {
        // What packer::kernel::wrap_flat_kernel writes for libkrunfw 5.5.0.
        let size = 0x1450000;
        let head = elf(0x1000123, &[(0x1000, 0x1000000, size, size)]);
        assert_eq!(
            mappable_segment(&head, 0x1000 + size),
            Some(Segment {
                offset: 0x1000,
                len: size,
                load: 0x1000000,
                entry: 0x1000123
            })
        );
        // A partial last page is mapped whole (the rest of it reads zero).
        let head = elf(0x1000123, &[(0x1000, 0x1000000, 5000, 5000)]);
        assert_eq!(mappable_segment(&head, 0x1000 + 5000).unwrap().len, 8192);
    }

    #[test]
    fn anything_unusual_takes_the_copying_path() {
        let ok = (0x1000, 0x1000000, 0x2000, 0x2000);
        let file = 0x3000;
        assert!(mappable_segment(&elf(1, &[ok]), file).is_some());
        let cases: [(&str, Vec<u8>, u64); 7] = [
            (
                "two segments",
                elf(1, &[ok, (0x3000, 0x2000000, 0x1000, 0x1000)]),
                0x4000,
            ),
            (
                "unaligned offset",
                elf(1, &[(0x1001, 0x1000000, 0x1000, 0x1000)]),
                file,
            ),
            (
                "unaligned address",
                elf(1, &[(0x1000, 0x1000010, 0x1000, 0x1000)]),
                file,
            ),
            (
                "bss past the file bytes",
                elf(1, &[(0x1000, 0x1000000, 0x1000, 0x9000)]),
                file,
            ),
            ("segment past the end", elf(1, &[ok]), 0x2fff),
            ("empty segment", elf(1, &[(0x1000, 0x1000000, 0, 0)]), file),
            ("not an ELF", vec![0u8; 200], file),
        ];
        for (what, head, len) in cases {
            assert_eq!(mappable_segment(&head, len), None, "{what}");
        }
        let mut far_headers = elf(1, &[ok]);
        far_headers[32..40].copy_from_slice(&u64::MAX.to_le_bytes()); // e_phoff
        assert_eq!(mappable_segment(&far_headers, file), None);
        let truncated = elf(1, &[ok]);
        assert_eq!(mappable_segment(&truncated[..100], file), None);
        let mut other_arch = elf(1, &[ok]);
        other_arch[18] = 183; // EM_AARCH64
        assert_eq!(mappable_segment(&other_arch, file), None);
    }
}
