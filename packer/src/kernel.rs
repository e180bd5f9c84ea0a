//! Guest kernel input: an ELF vmlinux as is, or the kernel inside a
//! `libkrunfw.so`, extracted and wrapped as a minimal ELF executable.
//!
//! libkrunfw keeps the kernel as the data symbol `KERNEL_BUNDLE` (a flat image)
//! and its load and entry addresses only as immediates in the code of
//! `krunfw_get_kernel`. We read both without running the library: the
//! function stores three constants (load address, entry address, size)
//! through its out-pointers; the size must match the symbol's size, which
//! cross-checks the decoding.

use std::path::{Path, PathBuf};

use object::elf::{self, FileHeader32, FileHeader64};
use object::read::elf::{FileHeader as _, ProgramHeader as _, Sym as _};
use object::{Endianness, FileKind};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum KernelError {
    #[error("kernel {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("kernel {path}: not an ELF file ({fault}); give an ELF vmlinux or a libkrunfw.so")]
    NotElf { path: PathBuf, fault: String },
    #[error("kernel {path}: {fault}")]
    Unsupported { path: PathBuf, fault: String },
    #[error("no kernel given and none found; searched: {searched}. Run `smolvm pack kernel fetch` (Debian's libkrunfw, verified, into the per-user cache), or pass --kernel PATH (an ELF vmlinux or libkrunfw.so.5)")]
    NotFound { searched: String },
}

/// Where a kernel came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelOrigin {
    /// An ELF vmlinux, packed as given.
    Elf,
    /// The flat kernel inside a libkrunfw, wrapped as an ELF executable.
    Libkrunfw,
}

/// A guest kernel as an ELF executable, plus where it came from.
pub struct Kernel {
    pub elf: Vec<u8>,
    pub source: PathBuf,
    pub origin: KernelOrigin,
}

/// A 64-bit ELF header over the file bytes (all `object` reads are bounds-checked).
type Elf64 = FileHeader64<Endianness>;

/// Loads a kernel from `path` (ELF vmlinux or libkrunfw shared object).
pub fn load_kernel(path: &Path) -> Result<Kernel, KernelError> {
    let bytes = std::fs::read(path).map_err(|source| KernelError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let not_elf = |fault: String| KernelError::NotElf {
        path: path.to_path_buf(),
        fault,
    };
    let unsupported = |fault: String| KernelError::Unsupported {
        path: path.to_path_buf(),
        fault,
    };
    let data = bytes.as_slice();
    let header = match FileKind::parse(data).map_err(|e| not_elf(e.to_string()))? {
        FileKind::Elf64 => Elf64::parse(data).map_err(|e| not_elf(e.to_string()))?,
        FileKind::Elf32 => {
            let h = FileHeader32::<Endianness>::parse(data).map_err(|e| not_elf(e.to_string()))?;
            let endian = h.endian().map_err(|e| not_elf(e.to_string()))?;
            return Err(unsupported(format!(
                "ELF machine {} (32-bit) is not x86_64; this build packs x86_64 guests",
                h.e_machine(endian)
            )));
        }
        other => return Err(not_elf(format!("{other:?} file"))),
    };
    let endian = header.endian().map_err(|e| not_elf(e.to_string()))?;
    if header.e_machine(endian) != elf::EM_X86_64 {
        return Err(unsupported(format!(
            "ELF machine {} (64-bit) is not x86_64; this build packs x86_64 guests",
            header.e_machine(endian)
        )));
    }
    match header.e_type(endian) {
        elf::ET_EXEC => {
            let segments = header
                .program_headers(endian, data)
                .map_err(|e| unsupported(e.to_string()))?;
            if !segments.iter().any(|p| p.p_type(endian) == elf::PT_LOAD) {
                return Err(unsupported("ELF executable has no PT_LOAD segment".into()));
            }
            Ok(Kernel {
                elf: bytes,
                source: path.to_path_buf(),
                origin: KernelOrigin::Elf,
            })
        }
        elf::ET_DYN => {
            let flat = extract_libkrunfw(header, endian, data).map_err(unsupported)?;
            Ok(Kernel {
                elf: wrap_flat_kernel(flat.image, flat.load_addr, flat.entry_addr),
                source: path.to_path_buf(),
                origin: KernelOrigin::Libkrunfw,
            })
        }
        other => Err(unsupported(format!(
            "ELF type {other} is neither an executable vmlinux nor a shared libkrunfw"
        ))),
    }
}

struct FlatKernel<'a> {
    image: &'a [u8],
    load_addr: u64,
    entry_addr: u64,
}

/// A defined symbol's value and size.
#[derive(Clone, Copy)]
struct Symbol {
    value: u64,
    size: u64,
}

/// `name` in the dynamic symbol table, else in the static one.
fn symbol(
    header: &Elf64,
    endian: Endianness,
    data: &[u8],
    name: &str,
) -> Result<Option<Symbol>, String> {
    let sections = header
        .sections(endian, data)
        .map_err(|e| format!("section table: {e}"))?;
    for table in [elf::SHT_DYNSYM, elf::SHT_SYMTAB] {
        let symbols = sections
            .symbols(endian, data, table)
            .map_err(|e| format!("symbol table: {e}"))?;
        let found = symbols.iter().find(|s| {
            s.name(endian, symbols.strings())
                .is_ok_and(|n| n == name.as_bytes())
        });
        if let Some(s) = found {
            return Ok(Some(Symbol {
                value: s.st_value(endian),
                size: s.st_size(endian),
            }));
        }
    }
    Ok(None)
}

/// File bytes backing the virtual range `[vaddr, vaddr+len)`, bounds-checked.
fn bytes_at_vaddr<'a>(
    header: &Elf64,
    endian: Endianness,
    data: &'a [u8],
    vaddr: u64,
    len: u64,
) -> Option<&'a [u8]> {
    let segments = header.program_headers(endian, data).ok()?;
    let ph = segments.iter().find(|p| {
        let start = p.p_vaddr(endian);
        p.p_type(endian) == elf::PT_LOAD
            && vaddr >= start
            && vaddr
                .checked_add(len)
                .is_some_and(|end| end <= start.saturating_add(p.p_filesz(endian)))
    })?;
    let off = ph
        .p_offset(endian)
        .checked_add(vaddr - ph.p_vaddr(endian))?;
    let end = off.checked_add(len)?;
    data.get(usize::try_from(off).ok()?..usize::try_from(end).ok()?)
}

fn extract_libkrunfw<'a>(
    header: &Elf64,
    endian: Endianness,
    data: &'a [u8],
) -> Result<FlatKernel<'a>, String> {
    let bundle = symbol(header, endian, data, "KERNEL_BUNDLE")?
        .ok_or("shared object has no KERNEL_BUNDLE symbol; is it libkrunfw?")?;
    let func = symbol(header, endian, data, "krunfw_get_kernel")?
        .ok_or("shared object has no krunfw_get_kernel symbol; is it libkrunfw?")?;
    let image = bytes_at_vaddr(header, endian, data, bundle.value, bundle.size)
        .ok_or("KERNEL_BUNDLE lies outside the file's loaded segments")?;
    let code_len = func.size.clamp(16, 256);
    let code = bytes_at_vaddr(header, endian, data, func.value, code_len)
        .ok_or("krunfw_get_kernel lies outside the file's loaded segments")?;
    let consts = stored_immediates(code);
    match consts.as_slice() {
        // The symbol may carry a trailing NUL (it is emitted as a C string).
        [load, entry, size, ..] if *size <= bundle.size && bundle.size - *size <= 16 => {
            if !(*load..load.saturating_add(*size)).contains(entry) {
                return Err(format!(
                    "decoded entry {entry:#x} lies outside the kernel image at {load:#x}+{size:#x}"
                ));
            }
            Ok(FlatKernel {
                image: &image[..usize::try_from(*size).map_err(|_| "kernel size overflows")?],
                load_addr: *load,
                entry_addr: *entry,
            })
        }
        _ => Err(format!(
            "could not read the load/entry addresses from krunfw_get_kernel (found constants {}, KERNEL_BUNDLE is {:#x} bytes); pass an ELF vmlinux instead",
            consts.iter().map(|c| format!("{c:#x}")).collect::<Vec<_>>().join(", "),
            bundle.size
        )),
    }
}

/// Immediates of `movq $imm32, (%reg)` stores (REX.W C7 /0 with a register
/// base and no displacement), in code order: how both the unoptimised and
/// the optimised builds of `krunfw_get_kernel` write their out-parameters.
fn stored_immediates(code: &[u8]) -> Vec<u64> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 7 <= code.len() {
        let modrm = code[i + 2];
        // REX.W (0x48/0x49), opcode C7, ModRM mod=00 reg=000 rm!=100/101 (no SIB, no RIP).
        if (code[i] == 0x48 || code[i] == 0x49)
            && code[i + 1] == 0xc7
            && modrm & 0xf8 == 0
            && modrm & 7 != 4
            && modrm & 7 != 5
        {
            let imm = i32::from_le_bytes([code[i + 3], code[i + 4], code[i + 5], code[i + 6]]);
            // Sign-extended as the CPU does; kernel addresses here are positive.
            out.push(i64::from(imm).cast_unsigned());
            i += 7;
        } else {
            i += 1;
        }
    }
    out
}

/// Wraps a flat kernel image as an ELF64 executable with one PT_LOAD at
/// `load_addr` and `e_entry = entry_addr`, which libkrun boots as format 1.
pub fn wrap_flat_kernel(image: &[u8], load_addr: u64, entry_addr: u64) -> Vec<u8> {
    use object::write::elf::{FileHeader, ProgramHeader, Writer};
    const SEGMENT_OFFSET: usize = 0x1000;
    let mut out = Vec::with_capacity(SEGMENT_OFFSET + image.len());
    let mut w = Writer::new(object::Endianness::Little, true, &mut out);
    w.reserve_file_header();
    w.reserve_program_headers(1);
    w.reserve_until(SEGMENT_OFFSET);
    w.reserve(image.len(), 1);
    w.write_file_header(&FileHeader {
        os_abi: object::elf::ELFOSABI_SYSV,
        abi_version: 0,
        e_type: object::elf::ET_EXEC,
        e_machine: object::elf::EM_X86_64,
        e_entry: entry_addr,
        e_flags: 0,
    })
    .expect("ELF header for a 64-bit little-endian file");
    w.write_align_program_headers();
    w.write_program_header(&ProgramHeader {
        p_type: object::elf::PT_LOAD,
        p_flags: object::elf::PF_R | object::elf::PF_W | object::elf::PF_X,
        p_offset: SEGMENT_OFFSET as u64,
        p_vaddr: load_addr,
        p_paddr: load_addr,
        p_filesz: image.len() as u64,
        p_memsz: image.len() as u64,
        p_align: 0x1000,
    });
    w.pad_until(SEGMENT_OFFSET);
    w.write(image);
    out
}

/// Where to look for a kernel when none is given, in order.
pub fn default_kernel_candidates() -> Vec<PathBuf> {
    let mut c = Vec::new();
    if let Some(p) = std::env::var_os("SMOLVM_KERNEL") {
        c.push(PathBuf::from(p));
    }
    // The same cache the runtime uses (SMOLVM_CACHE_DIR included).
    if let Some(cache) = smolvm_runtime::dirs::cache() {
        c.push(cache.join("kernel/libkrunfw.so.5"));
    }
    // The repository's fetch script puts it here; found from the working
    // directory and from a binary under target/<profile>/.
    c.push(PathBuf::from(".cache/kernel/libkrunfw.so.5"));
    if let Ok(exe) = std::env::current_exe() {
        for up in exe.ancestors().skip(1).take(4) {
            c.push(up.join(".cache/kernel/libkrunfw.so.5"));
        }
    }
    for dir in [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib64",
        "/usr/local/lib64",
        "/usr/local/lib",
        "/usr/lib",
    ] {
        c.push(Path::new(dir).join("libkrunfw.so.5"));
    }
    c
}

/// The first existing default kernel.
pub fn find_default_kernel() -> Result<PathBuf, KernelError> {
    let candidates = default_kernel_candidates();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| KernelError::NotFound {
            searched: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The entry point and PT_LOAD segments of a 64-bit ELF, read back with `object`.
    fn entry_and_loads(bytes: &[u8]) -> (u64, Vec<(u64, u64, u64)>) {
        let h = Elf64::parse(bytes).unwrap();
        let e = h.endian().unwrap();
        let loads = h
            .program_headers(e, bytes)
            .unwrap()
            .iter()
            .filter(|p| p.p_type(e) == elf::PT_LOAD)
            .map(|p| (p.p_paddr(e), p.p_offset(e), p.p_filesz(e)))
            .collect();
        assert_eq!(h.e_type(e), elf::ET_EXEC);
        (h.e_entry(e), loads)
    }

    #[test]
    fn wrapped_kernel_is_a_valid_elf_with_one_load_segment() {
        let image = vec![0x90u8; 5000];
        let elf_bytes = wrap_flat_kernel(&image, 0x100_0000, 0x100_0123);
        let (entry, loads) = entry_and_loads(&elf_bytes);
        assert_eq!(entry, 0x100_0123);
        assert_eq!(loads.len(), 1);
        assert_eq!(loads[0].0, 0x100_0000);
        assert_eq!(loads[0].2, image.len() as u64);
        let off = usize::try_from(loads[0].1).unwrap();
        assert_eq!(&elf_bytes[off..off + image.len()], &image[..]);
    }

    #[test]
    fn a_wrapped_kernel_loads_as_an_elf_kernel_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("vmlinux");
        let elf_bytes = wrap_flat_kernel(&[0x90; 100], 0x100_0000, 0x100_0000);
        std::fs::write(&p, &elf_bytes).unwrap();
        let k = load_kernel(&p).unwrap();
        assert_eq!(k.origin, KernelOrigin::Elf);
        assert_eq!(k.elf, elf_bytes);
    }

    #[test]
    fn refuses_an_elf_that_is_not_x86_64_naming_the_machine() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("vmlinux");
        let mut elf_bytes = wrap_flat_kernel(&[0x90; 100], 0x100_0000, 0x100_0000);
        // e_machine at offset 18: EM_AARCH64 (183).
        elf_bytes[18..20].copy_from_slice(&183u16.to_le_bytes());
        std::fs::write(&p, &elf_bytes).unwrap();
        let msg = load_kernel(&p).err().unwrap().to_string();
        assert!(msg.contains("machine 183 (64-bit) is not x86_64"), "{msg}");
    }

    #[test]
    fn decodes_unoptimised_get_kernel_stores() {
        // The bytes of libkrunfw 5.5.0's krunfw_get_kernel (objdump -d).
        let code = [
            0x55, 0x48, 0x89, 0xe5, 0x48, 0x89, 0x7d, 0xf8, 0x48, 0x89, 0x75, 0xf0, 0x48, 0x89,
            0x55, 0xe8, 0x48, 0x8b, 0x45, 0xf8, 0x48, 0xc7, 0x00, 0x00, 0x00, 0x00, 0x01, 0x48,
            0x8b, 0x45, 0xf0, 0x48, 0xc7, 0x00, 0x23, 0x01, 0x00, 0x01, 0x48, 0x8b, 0x45, 0xe8,
            0x48, 0xc7, 0x00, 0x00, 0x00, 0x45, 0x01,
        ];
        assert_eq!(
            stored_immediates(&code),
            vec![0x100_0000, 0x100_0123, 0x145_0000]
        );
    }

    #[test]
    fn rejects_non_elf_with_a_fix() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, b"not a kernel").unwrap();
        let msg = load_kernel(&p).err().unwrap().to_string();
        assert!(
            msg.contains("not an ELF") && msg.contains("vmlinux"),
            "{msg}"
        );
    }

    /// Runs against the real libkrunfw when scripts/fetch-kernel.sh has fetched it.
    #[test]
    fn extracts_the_real_libkrunfw_when_present() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/kernel/libkrunfw.so.5");
        if !p.exists() {
            eprintln!("skipping: {} not fetched", p.display());
            return;
        }
        let k = load_kernel(&p).unwrap();
        assert_eq!(entry_and_loads(&k.elf).0, 0x100_0123);
        assert_eq!(k.origin, KernelOrigin::Libkrunfw);
    }
}
