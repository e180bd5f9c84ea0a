// smolmachine: tests of the patches in vendor/patches/, driven the way a hostile
// guest kernel drives this server: hand-built FUSE request bytes in guest memory,
// a descriptor chain over them, `Server::handle_message`, and the reply read back
// from guest memory. The file systems are the stacks worker.rs builds for a shared
// directory: `AugmentFs<PassthroughFs>` (read-write) and `AugmentFs<PassthroughFsRo>`
// (read-only). After each attack the host directory around the share is checked.
//
// Run with `cargo test -p krun-devices --lib smolvm_` (scripts/test.sh does). Each
// test fails without the patch it names (checked by reverting that patch alone).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs;
use std::mem::size_of;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicI32;
use std::sync::Arc;

use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};

use super::augment_fs::AugmentFs;
use super::descriptor_utils::{create_descriptor_chain, DescriptorType, Reader, Writer};
use super::filesystem::FileSystem;
use super::fuse::*;
use super::inode_alloc::InodeAllocator;
use super::passthrough::{self, PassthroughFs};
use super::read_only::PassthroughFsRo;
use super::server::Server;
use super::virtual_entry::{VirtualDirEntry, VirtualEntry, VirtualEntryContent};

// Largest single allocation made on this thread while the server handled the
// last request: how the size tests see what a guest made the VMM allocate.
struct LargestAllocation;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation(size: usize) {
    let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// bookkeeping only writes a thread-local integer and never allocates.
unsafe impl GlobalAlloc for LargestAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

const GUEST_MEMORY: usize = 4 << 20;
const REQUEST_AT: u64 = 0x1000;

/// A reply as the guest reads it: the errno (0 on success) and the body; and the
/// largest single allocation the server made while handling the request.
/// `dropped`: the server refused to parse the request and wrote no reply.
struct Reply {
    error: i32,
    body: Vec<u8>,
    largest_allocation: usize,
    dropped: bool,
}

impl Reply {
    fn obj<T: ByteValued>(&self) -> T {
        T::from_slice(&self.body[..size_of::<T>()])
            .copied()
            .expect("reply body holds the object")
    }
}

/// The hostile guest: one request at a time, built byte by byte.
struct Guest {
    mem: GuestMemoryMmap,
    unique: Cell<u64>,
}

impl Guest {
    fn new() -> Self {
        Guest {
            mem: GuestMemoryMmap::from_ranges(&[(GuestAddress(0), GUEST_MEMORY)]).unwrap(),
            unique: Cell::new(1),
        }
    }

    fn call<F: FileSystem + Sync>(
        &self,
        server: &Server<F>,
        opcode: Opcode,
        nodeid: u64,
        body: &[u8],
        reply_room: u32,
    ) -> Reply {
        let unique = self.unique.get();
        self.unique.set(unique + 1);
        let header = InHeader {
            len: (size_of::<InHeader>() + body.len()) as u32,
            opcode: opcode as u32,
            unique,
            nodeid,
            ..Default::default()
        };
        let mut request = header.as_slice().to_vec();
        request.extend_from_slice(body);
        self.call_raw(server, &request, reply_room)
    }

    fn call_raw<F: FileSystem + Sync>(
        &self,
        server: &Server<F>,
        request: &[u8],
        reply_room: u32,
    ) -> Reply {
        let reply_at = REQUEST_AT + request.len() as u64;
        self.mem
            .write_slice(request, GuestAddress(REQUEST_AT))
            .unwrap();
        self.mem
            .write_slice(
                &vec![0u8; size_of::<OutHeader>() + reply_room as usize],
                GuestAddress(reply_at),
            )
            .unwrap();
        let chain = create_descriptor_chain(
            &self.mem,
            GuestAddress(0),
            GuestAddress(REQUEST_AT),
            // As Linux's virtio-fs driver queues a request: the reply's header in a
            // descriptor of its own, then room for the reply's arguments.
            vec![
                (DescriptorType::Readable, request.len() as u32),
                (DescriptorType::Writable, size_of::<OutHeader>() as u32),
                (DescriptorType::Writable, reply_room),
            ],
            0,
        )
        .unwrap();
        let reader = Reader::new(&self.mem, chain.clone()).unwrap();
        let writer = Writer::new(&self.mem, chain).unwrap();
        let exit_code = Arc::new(AtomicI32::new(0));
        LARGEST.with(|largest| largest.set(0));
        let handled = server.handle_message(reader, writer, false, &None, &exit_code);
        let largest_allocation = LARGEST.with(|largest| largest.get());
        let Ok(written) = handled else {
            return Reply {
                error: 0,
                body: Vec::new(),
                largest_allocation,
                dropped: true,
            };
        };
        let out: OutHeader = self.mem.read_obj(GuestAddress(reply_at)).unwrap();
        assert_eq!(out.len as usize, written, "reply length");
        let mut body = vec![0u8; out.len as usize - size_of::<OutHeader>()];
        self.mem
            .read_slice(
                &mut body,
                GuestAddress(reply_at + size_of::<OutHeader>() as u64),
            )
            .unwrap();
        Reply {
            error: -out.error,
            body,
            largest_allocation,
            dropped: false,
        }
    }

    fn init<F: FileSystem + Sync>(&self, server: &Server<F>) {
        let init = InitInCompat {
            major: KERNEL_VERSION,
            minor: KERNEL_MINOR_VERSION,
            ..Default::default()
        };
        let reply = self.call(server, Opcode::Init, 0, init.as_slice(), 4096);
        assert_eq!(reply.error, 0, "INIT");
    }

    fn lookup<F: FileSystem + Sync>(&self, server: &Server<F>, parent: u64, name: &str) -> Reply {
        self.call(server, Opcode::Lookup, parent, &cstr(name), 4096)
    }

    fn nodeid<F: FileSystem + Sync>(&self, server: &Server<F>, parent: u64, name: &str) -> u64 {
        let reply = self.lookup(server, parent, name);
        assert!(
            !reply.dropped && reply.error == 0,
            "LOOKUP {name}: errno {}",
            reply.error
        );
        reply.obj::<EntryOut>().nodeid
    }
}

fn cstr(name: &str) -> Vec<u8> {
    CString::new(name).unwrap().into_bytes_with_nul()
}

fn with_name<T: ByteValued>(arg: T, names: &[&str]) -> Vec<u8> {
    let mut body = arg.as_slice().to_vec();
    for name in names {
        body.extend_from_slice(&cstr(name));
    }
    body
}

/// A scratch directory:
///   base/secret, base/victim, base/victimdir/   (the host outside the share)
///   base/share/inside, base/share/sub/          (the shared directory)
struct Scratch {
    base: PathBuf,
}

impl Scratch {
    fn new(test: &str) -> Self {
        let base =
            std::env::temp_dir().join(format!("smolvm-krunfs-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(base.join("share/sub")).unwrap();
        fs::create_dir(base.join("victimdir")).unwrap();
        fs::write(base.join("secret"), b"host secret").unwrap();
        fs::write(base.join("victim"), b"victim").unwrap();
        fs::write(base.join("share/inside"), b"inside").unwrap();
        Scratch { base }
    }

    fn share(&self) -> PathBuf {
        self.base.join("share")
    }

    fn config(&self) -> passthrough::Config {
        passthrough::Config {
            root_dir: self.share().to_str().unwrap().to_owned(),
            ..Default::default()
        }
    }

    fn rw(&self) -> Server<AugmentFs<PassthroughFs>> {
        let inodes = Arc::new(InodeAllocator::new());
        let fs = PassthroughFs::new(self.config(), inodes.clone()).unwrap();
        Server::new(AugmentFs::new(fs, &inodes, virtual_entries()))
    }

    fn ro(&self) -> Server<AugmentFs<PassthroughFsRo>> {
        let inodes = Arc::new(InodeAllocator::new());
        let fs = PassthroughFsRo::new(self.config(), inodes.clone()).unwrap();
        Server::new(AugmentFs::new(fs, &inodes, virtual_entries()))
    }

    fn names(dir: &Path) -> BTreeSet<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| String::from_utf8_lossy(e.unwrap().file_name().as_bytes()).into_owned())
            .collect()
    }

    /// Nothing outside the share was read into, created, removed or renamed.
    fn assert_host_untouched(&self) {
        let expected: BTreeSet<String> = ["secret", "share", "victim", "victimdir"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            Self::names(&self.base),
            expected,
            "entries around the share"
        );
        assert_eq!(fs::read(self.base.join("secret")).unwrap(), b"host secret");
        assert_eq!(fs::read(self.base.join("victim")).unwrap(), b"victim");
        assert!(Self::names(&self.base.join("victimdir")).is_empty());
    }

    fn mode(&self, name: &str) -> u32 {
        fs::symlink_metadata(self.share().join(name))
            .unwrap()
            .permissions()
            .mode()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.base);
    }
}

// What the runtime puts beside every root share: a virtual directory with a file
// (libkrun's krun_fs_add_overlay_dir / _file).
fn virtual_entries() -> Vec<VirtualDirEntry> {
    vec![VirtualDirEntry {
        name: CString::new(".smolvm").unwrap(),
        entry: VirtualEntry {
            mode: 0o755,
            one_shot: false,
            content: VirtualEntryContent::Dir {
                children: vec![VirtualDirEntry {
                    name: CString::new("spec").unwrap(),
                    entry: VirtualEntry {
                        mode: 0o400,
                        one_shot: false,
                        content: VirtualEntryContent::File { data: b"spec" },
                    },
                }],
            },
        },
    }]
}

/// Names that are not one path component. The absolute ones point into the
/// scratch directory, never at a real host file such as /etc/passwd: without
/// patch 0001 these requests really unlink, rename and link what they name
/// (as root, a first version of this test replaced the machine's /etc/passwd).
fn not_a_component(scratch: &Scratch) -> Vec<String> {
    let absolute = |name: &str| scratch.base.join(name).to_str().unwrap().to_owned();
    let mut names: Vec<String> = ["", ".", "..", "a/b", "sub/../../secret", "../secret"]
        .iter()
        .chain(&["../victim", "../victimdir", "../created"])
        .map(|s| s.to_string())
        .collect();
    names.extend([absolute("secret"), absolute("victim"), absolute("created")]);
    names
}

/// Every operation that takes a directory-entry name, with `bad` in each name
/// slot, must be refused with EINVAL before it reaches the file system.
fn assert_names_refused<F: FileSystem + Sync>(
    guest: &Guest,
    server: &Server<F>,
    parent: u64,
    scratch: &Scratch,
) {
    let inside = guest.nodeid(server, ROOT_ID, "inside");
    let file = (libc::S_IFREG | 0o644) as u32;
    let mut accepted = Vec::new();
    for bad in not_a_component(scratch) {
        let bad = bad.as_str();
        let requests: Vec<(&str, Opcode, u64, Vec<u8>)> = vec![
            ("LOOKUP", Opcode::Lookup, parent, cstr(bad)),
            (
                "MKNOD",
                Opcode::Mknod,
                parent,
                with_name(
                    MknodIn {
                        mode: file,
                        ..Default::default()
                    },
                    &[bad],
                ),
            ),
            (
                "MKDIR",
                Opcode::Mkdir,
                parent,
                with_name(
                    MkdirIn {
                        mode: 0o755,
                        umask: 0,
                    },
                    &[bad],
                ),
            ),
            ("UNLINK", Opcode::Unlink, parent, cstr(bad)),
            ("RMDIR", Opcode::Rmdir, parent, cstr(bad)),
            (
                "SYMLINK",
                Opcode::Symlink,
                parent,
                [cstr(bad), cstr("target")].concat(),
            ),
            (
                "RENAME old",
                Opcode::Rename,
                parent,
                with_name(RenameIn { newdir: parent }, &[bad, "stolen"]),
            ),
            (
                "RENAME new",
                Opcode::Rename,
                ROOT_ID,
                with_name(RenameIn { newdir: parent }, &["inside", bad]),
            ),
            (
                "RENAME2 old",
                Opcode::Rename2,
                parent,
                with_name(
                    Rename2In {
                        newdir: parent,
                        ..Default::default()
                    },
                    &[bad, "stolen"],
                ),
            ),
            (
                "RENAME2 new",
                Opcode::Rename2,
                ROOT_ID,
                with_name(
                    Rename2In {
                        newdir: parent,
                        ..Default::default()
                    },
                    &["inside", bad],
                ),
            ),
            (
                "LINK",
                Opcode::Link,
                parent,
                with_name(LinkIn { oldnodeid: inside }, &[bad]),
            ),
            (
                "CREATE",
                Opcode::Create,
                parent,
                with_name(
                    CreateIn {
                        flags: libc::O_RDWR as u32,
                        mode: file,
                        ..Default::default()
                    },
                    &[bad],
                ),
            ),
        ];
        for (what, opcode, nodeid, body) in requests {
            let reply = guest.call(server, opcode, nodeid, &body, 4096);
            if reply.dropped || reply.error != libc::EINVAL {
                accepted.push(format!(
                    "{what} {bad:?} under node {nodeid}: errno {}",
                    reply.error
                ));
            }
        }
    }
    assert!(
        accepted.is_empty(),
        "names that are not one component were not refused with EINVAL:\n{}",
        accepted.join("\n")
    );
}

#[test]
fn smolvm_names_refused_read_write() {
    let scratch = Scratch::new("names-rw");
    let guest = Guest::new();
    let server = scratch.rw();
    guest.init(&server);
    let sub = guest.nodeid(&server, ROOT_ID, "sub");
    let virtual_dir = guest.nodeid(&server, ROOT_ID, ".smolvm");
    for parent in [ROOT_ID, sub, virtual_dir] {
        assert_names_refused(&guest, &server, parent, &scratch);
    }
    scratch.assert_host_untouched();
    let expected: BTreeSet<String> = ["inside", "sub"].iter().map(|s| s.to_string()).collect();
    assert_eq!(Scratch::names(&scratch.share()), expected, "share");
    assert!(Scratch::names(&scratch.share().join("sub")).is_empty());
}

#[test]
fn smolvm_names_refused_read_only() {
    let scratch = Scratch::new("names-ro");
    let guest = Guest::new();
    let server = scratch.ro();
    guest.init(&server);
    let sub = guest.nodeid(&server, ROOT_ID, "sub");
    for parent in [ROOT_ID, sub] {
        assert_names_refused(&guest, &server, parent, &scratch);
    }
    scratch.assert_host_untouched();
}

/// A name without its terminator or with a NUL inside never reaches a file
/// system: the server drops the request (bytes_to_cstr), which is what lets
/// 0001 check a `CStr`. Upstream behaviour, kept as a regression test.
#[test]
fn smolvm_names_with_nul_or_no_terminator_are_dropped() {
    let scratch = Scratch::new("nul");
    let guest = Guest::new();
    let server = scratch.rw();
    guest.init(&server);
    let create = CreateIn {
        flags: libc::O_RDWR as u32,
        mode: (libc::S_IFREG | 0o644) as u32,
        ..Default::default()
    };
    let mut unterminated_create = create.as_slice().to_vec();
    unterminated_create.extend_from_slice(b"../created");
    let mut unterminated_rename = RenameIn { newdir: ROOT_ID }.as_slice().to_vec();
    unterminated_rename.extend_from_slice(b"inside\0../stolen");
    let requests: [(&str, Opcode, Vec<u8>); 5] = [
        ("LOOKUP unterminated", Opcode::Lookup, b"../secret".to_vec()),
        (
            "LOOKUP NUL inside",
            Opcode::Lookup,
            b"inside\0../secret\0".to_vec(),
        ),
        (
            "UNLINK NUL inside",
            Opcode::Unlink,
            b"inside\0../victim\0".to_vec(),
        ),
        ("CREATE unterminated", Opcode::Create, unterminated_create),
        (
            "RENAME new name unterminated",
            Opcode::Rename,
            unterminated_rename,
        ),
    ];
    for (what, opcode, body) in requests {
        let reply = guest.call(&server, opcode, ROOT_ID, &body, 4096);
        assert!(reply.dropped, "{what}: answered, errno {}", reply.error);
    }
    scratch.assert_host_untouched();
    guest.nodeid(&server, ROOT_ID, "inside");
}

#[test]
fn smolvm_virtual_entries_still_resolve() {
    let scratch = Scratch::new("virtual");
    let guest = Guest::new();
    let server = scratch.ro();
    guest.init(&server);
    let dir = guest.nodeid(&server, ROOT_ID, ".smolvm");
    guest.nodeid(&server, dir, "spec");
    guest.nodeid(&server, ROOT_ID, "inside");
}

/// Reads a READDIR(PLUS) reply into (name, nodeid) pairs (nodeid 0 for READDIR).
fn dirents(body: &[u8], plus: bool) -> Vec<(Vec<u8>, u64)> {
    let mut entries = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let nodeid = if plus {
            let entry = EntryOut::from_slice(&rest[..size_of::<EntryOut>()]).unwrap();
            let nodeid = entry.nodeid;
            rest = &rest[size_of::<EntryOut>()..];
            nodeid
        } else {
            0
        };
        let dirent = *Dirent::from_slice(&rest[..size_of::<Dirent>()]).unwrap();
        let name_at = size_of::<Dirent>();
        let name = rest[name_at..name_at + dirent.namelen as usize].to_vec();
        let padded = (name_at + dirent.namelen as usize + 7) & !7;
        rest = &rest[padded..];
        entries.push((name, nodeid));
    }
    entries
}

fn list<F: FileSystem + Sync>(
    guest: &Guest,
    server: &Server<F>,
    plus: bool,
) -> Vec<(Vec<u8>, u64)> {
    let open = OpenIn {
        flags: libc::O_RDONLY as u32,
        ..Default::default()
    };
    let reply = guest.call(server, Opcode::Opendir, ROOT_ID, open.as_slice(), 4096);
    assert_eq!(reply.error, 0, "OPENDIR");
    let fh = reply.obj::<OpenOut>().fh;
    let read = ReadIn {
        fh,
        offset: 0,
        size: 8192,
        ..Default::default()
    };
    let opcode = if plus {
        Opcode::Readdirplus
    } else {
        Opcode::Readdir
    };
    let reply = guest.call(server, opcode, ROOT_ID, read.as_slice(), 8192 + 64);
    assert_eq!(reply.error, 0, "READDIR");
    dirents(&reply.body, plus)
}

/// READDIR and READDIRPLUS of the share's root list only its entries, and no
/// node handed out reaches the host directory around the share.
fn assert_listing_confined<F: FileSystem + Sync>(guest: &Guest, server: &Server<F>) {
    let plain = list(guest, server, false);
    let plus = list(guest, server, true);
    for entries in [&plain, &plus] {
        let names: BTreeSet<String> = entries
            .iter()
            .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
            .collect();
        let expected: BTreeSet<String> = ["inside", "sub"].iter().map(|s| s.to_string()).collect();
        assert_eq!(names, expected, "listing of the share's root");
    }
    for (name, node) in plus {
        let reply = guest.lookup(server, node, "secret");
        assert_ne!(
            reply.error,
            0,
            "READDIRPLUS entry {:?} is a node from which the host's secret is found",
            String::from_utf8_lossy(&name)
        );
    }
}

#[test]
fn smolvm_readdir_hides_dot_entries() {
    let scratch = Scratch::new("readdir");
    let guest = Guest::new();
    let server = scratch.rw();
    guest.init(&server);
    assert_listing_confined(&guest, &server);
    let guest = Guest::new();
    let server = scratch.ro();
    guest.init(&server);
    assert_listing_confined(&guest, &server);
}

#[test]
fn smolvm_created_files_are_never_setuid_or_setgid() {
    let scratch = Scratch::new("setuid");
    let guest = Guest::new();
    let server = scratch.rw();
    guest.init(&server);
    let create = CreateIn {
        flags: libc::O_RDWR as u32,
        mode: (libc::S_IFREG | 0o4755) as u32,
        ..Default::default()
    };
    let reply = guest.call(
        &server,
        Opcode::Create,
        ROOT_ID,
        &with_name(create, &["suid"]),
        4096,
    );
    assert_eq!(reply.error, 0, "CREATE");
    let mknod = MknodIn {
        mode: (libc::S_IFREG | 0o2755) as u32,
        ..Default::default()
    };
    let reply = guest.call(
        &server,
        Opcode::Mknod,
        ROOT_ID,
        &with_name(mknod, &["sgid"]),
        4096,
    );
    assert_eq!(reply.error, 0, "MKNOD");
    let mkdir = MkdirIn {
        mode: 0o6755,
        umask: 0,
    };
    let reply = guest.call(
        &server,
        Opcode::Mkdir,
        ROOT_ID,
        &with_name(mkdir, &["dir"]),
        4096,
    );
    assert_eq!(reply.error, 0, "MKDIR");
    for name in ["suid", "sgid", "dir"] {
        let mode = scratch.mode(name);
        assert_eq!(mode & 0o6000, 0, "{name} created with mode {mode:o}");
    }

    // chmod from the guest: the permission bits apply, setuid/setgid do not.
    let inside = guest.nodeid(&server, ROOT_ID, "inside");
    let setattr = SetattrIn {
        valid: SetattrValid::MODE.bits(),
        mode: (libc::S_IFREG | 0o6750) as u32,
        ..Default::default()
    };
    let reply = guest.call(&server, Opcode::Setattr, inside, setattr.as_slice(), 4096);
    assert_eq!(reply.error, 0, "SETATTR");
    assert_eq!(
        scratch.mode("inside") & 0o7777,
        0o750,
        "chmod 6750 from the guest"
    );

    // File capabilities are setuid by another name.
    let mut capability = Vec::new();
    // VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE; permitted CAP_NET_RAW; rest zero.
    for word in [0x0200_0001u32, 1 << 13, 0, 0, 0] {
        capability.extend_from_slice(&word.to_le_bytes());
    }
    let setxattr = SetxattrIn {
        size: capability.len() as u32,
        flags: 0,
    };
    let mut body = with_name(setxattr, &["security.capability"]);
    body.extend_from_slice(&capability);
    let reply = guest.call(&server, Opcode::Setxattr, inside, &body, 4096);
    assert_eq!(reply.error, libc::EPERM, "SETXATTR security.capability");
}

fn host_setuid_file(scratch: &Scratch, name: &str) {
    let path = scratch.share().join(name);
    fs::write(&path, b"setuid program").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o6755)).unwrap();
    assert_eq!(scratch.mode(name) & 0o6000, 0o6000);
}

#[test]
fn smolvm_guest_write_clears_setuid() {
    let scratch = Scratch::new("killpriv");
    host_setuid_file(&scratch, "written");
    host_setuid_file(&scratch, "truncated");
    let guest = Guest::new();
    let server = scratch.rw();
    guest.init(&server);

    // The guest does not ask for killpriv (no WRITE_KILL_PRIV, no OPEN_KILL_SUIDGID).
    let written = guest.nodeid(&server, ROOT_ID, "written");
    let open = OpenIn {
        flags: libc::O_RDWR as u32,
        ..Default::default()
    };
    let reply = guest.call(&server, Opcode::Open, written, open.as_slice(), 4096);
    assert_eq!(reply.error, 0, "OPEN");
    let fh = reply.obj::<OpenOut>().fh;
    let write = WriteIn {
        fh,
        offset: 0,
        size: 4,
        ..Default::default()
    };
    let mut body = write.as_slice().to_vec();
    body.extend_from_slice(b"evil");
    let reply = guest.call(&server, Opcode::Write, written, &body, 4096);
    assert_eq!(reply.error, 0, "WRITE");
    assert_eq!(
        scratch.mode("written") & 0o6000,
        0,
        "setuid file written by the guest"
    );

    let truncated = guest.nodeid(&server, ROOT_ID, "truncated");
    let open = OpenIn {
        flags: (libc::O_WRONLY | libc::O_TRUNC) as u32,
        ..Default::default()
    };
    let reply = guest.call(&server, Opcode::Open, truncated, open.as_slice(), 4096);
    assert_eq!(reply.error, 0, "OPEN O_TRUNC");
    assert_eq!(
        scratch.mode("truncated") & 0o6000,
        0,
        "setuid file truncated by the guest"
    );
}

#[test]
fn smolvm_person_umask_applies() {
    let scratch = Scratch::new("umask");
    // SAFETY: umask only changes the process's file-creation mask. Other tests
    // running meanwhile create their scratch files under 077 too, which none
    // of their checks depends on (they look at setuid/setgid bits or chmod).
    let before = unsafe { libc::umask(0o077) };
    let result = std::panic::catch_unwind(|| {
        let guest = Guest::new();
        let server = scratch.rw();
        guest.init(&server);
        let create = CreateIn {
            flags: libc::O_RDWR as u32,
            mode: (libc::S_IFREG | 0o666) as u32,
            ..Default::default()
        };
        let reply = guest.call(
            &server,
            Opcode::Create,
            ROOT_ID,
            &with_name(create, &["private"]),
            4096,
        );
        assert_eq!(reply.error, 0, "CREATE");
        let mkdir = MkdirIn {
            mode: 0o777,
            umask: 0,
        };
        let reply = guest.call(
            &server,
            Opcode::Mkdir,
            ROOT_ID,
            &with_name(mkdir, &["privdir"]),
            4096,
        );
        assert_eq!(reply.error, 0, "MKDIR");
        let mknod = MknodIn {
            mode: (libc::S_IFREG | 0o666) as u32,
            ..Default::default()
        };
        let reply = guest.call(
            &server,
            Opcode::Mknod,
            ROOT_ID,
            &with_name(mknod, &["privnode"]),
            4096,
        );
        assert_eq!(reply.error, 0, "MKNOD");
        // SAFETY: as above; reads the mask back by setting it to the same value.
        let now = unsafe { libc::umask(0o077) };
        (
            now,
            scratch.mode("private"),
            scratch.mode("privdir"),
            scratch.mode("privnode"),
        )
    });
    // SAFETY: as above.
    unsafe { libc::umask(before) };
    let (now, file, dir, node) = result.unwrap();
    assert_eq!(now, 0o077, "the server left the process umask alone");
    assert_eq!(file & 0o7777, 0o600, "CREATE 0666 under umask 077");
    assert_eq!(dir & 0o7777, 0o700, "MKDIR 0777 under umask 077");
    assert_eq!(node & 0o7777, 0o600, "MKNOD 0666 under umask 077");
}

#[test]
fn smolvm_guest_sizes_are_capped_before_allocation() {
    let scratch = Scratch::new("sizes");
    let guest = Guest::new();
    let server = scratch.rw();
    guest.init(&server);
    let inside = guest.nodeid(&server, ROOT_ID, "inside");
    let largest_during = |opcode: Opcode, nodeid: u64, body: &[u8], room: u32| {
        let reply = guest.call(&server, opcode, nodeid, body, room);
        let largest = reply.largest_allocation;
        (reply, largest)
    };
    // Some slack for the request's own bookkeeping, far below the sizes asked for.
    let cap = (1 << 16) + 4096;

    let getxattr = with_name(
        GetxattrIn {
            size: 1 << 20,
            padding: 0,
        },
        &["user.none"],
    );
    let (reply, largest) = largest_during(Opcode::Getxattr, inside, &getxattr, 4096);
    assert_eq!(reply.error, libc::ENODATA, "GETXATTR");
    assert!(
        largest <= cap,
        "GETXATTR of 1 MiB allocated {largest} bytes"
    );

    let listxattr = GetxattrIn {
        size: 1 << 20,
        padding: 0,
    };
    let (reply, largest) = largest_during(Opcode::Listxattr, inside, listxattr.as_slice(), 4096);
    assert_eq!(reply.error, 0, "LISTXATTR");
    assert!(
        largest <= cap,
        "LISTXATTR of 1 MiB allocated {largest} bytes"
    );

    let value = vec![b'x'; (1 << 20) - 4096];
    let mut setxattr = with_name(
        SetxattrIn {
            size: value.len() as u32,
            flags: 0,
        },
        &["user.big"],
    );
    setxattr.extend_from_slice(&value);
    let (reply, largest) = largest_during(Opcode::Setxattr, inside, &setxattr, 4096);
    assert_eq!(reply.error, libc::E2BIG, "SETXATTR of a 1 MiB value");
    assert!(
        largest <= cap,
        "SETXATTR of 1 MiB allocated {largest} bytes"
    );

    // Upstream's own caps (MAX_BUFFER_SIZE, 1 MiB), kept as regressions.
    let open = OpenIn {
        flags: libc::O_RDONLY as u32,
        ..Default::default()
    };
    let fh = guest
        .call(&server, Opcode::Open, inside, open.as_slice(), 4096)
        .obj::<OpenOut>()
        .fh;
    let read = ReadIn {
        fh,
        size: 2 << 20,
        ..Default::default()
    };
    let (reply, largest) = largest_during(Opcode::Read, inside, read.as_slice(), 4096);
    assert_eq!(reply.error, libc::ENOMEM, "READ of 2 MiB");
    assert!(largest <= cap, "READ of 2 MiB allocated {largest} bytes");
    let dir = OpenIn {
        flags: libc::O_RDONLY as u32,
        ..Default::default()
    };
    let dirfh = guest
        .call(&server, Opcode::Opendir, ROOT_ID, dir.as_slice(), 4096)
        .obj::<OpenOut>()
        .fh;
    let readdir = ReadIn {
        fh: dirfh,
        size: 2 << 20,
        ..Default::default()
    };
    let (reply, largest) = largest_during(Opcode::Readdirplus, ROOT_ID, readdir.as_slice(), 4096);
    assert_eq!(reply.error, libc::ENOMEM, "READDIRPLUS of 2 MiB");
    assert!(
        largest <= cap,
        "READDIRPLUS of 2 MiB allocated {largest} bytes"
    );
    // A readdir larger than the reply buffer the guest gave is refused before allocating.
    let readdir = ReadIn {
        fh: dirfh,
        size: 1 << 20,
        ..Default::default()
    };
    let (reply, largest) = largest_during(Opcode::Readdir, ROOT_ID, readdir.as_slice(), 4096);
    assert_eq!(reply.error, libc::ENOMEM, "READDIR of 1 MiB into 4 KiB");
    assert!(largest <= cap, "READDIR of 1 MiB allocated {largest} bytes");
}
