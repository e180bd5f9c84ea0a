/*
 * smolvm-init: the guest-side half of the smolmachine runtime.
 *
 * libkrun's own init (init.krun) mounts a tiny read-only virtio-fs root (the
 * host's fixed directory holding only /dev, /proc, /sys mount points plus
 * this init and the run spec), sets up /dev, /proc, /sys and the console,
 * then runs us as the workload. We:
 *   1. read the run spec the host put at /.smolvm/spec (argv, env, workdir,
 *      uid/gid) -- a file, not the kernel command line, so any bytes in
 *      arguments survive and length is not limited by COMMAND_LINE_SIZE;
 *   2. mount the image's EROFS root from the read-only disk /dev/vda, a
 *      tmpfs, and an overlay (lower: the EROFS root, upper: the tmpfs), so
 *      the workload can write anywhere, every write is discarded when the VM
 *      ends, and owners, modes, xattrs and device nodes are the image's own
 *      whoever runs the machine on the host;
 *   3. with the network on, put the host's /.smolvm/resolv.conf (our
 *      resolver) at /etc/resolv.conf in the per-run layer;
 *   4. with SSH agent forwarding allowed, run a small forwarder (as the
 *      workload's user) from a socket in the guest to the host's agent over
 *      vsock (libkrun connects that vsock port to the host's socket);
 *   5. bind /dev, /proc and /sys into the overlay, chroot into it, mount
 *      the spec's volumes (virtio-fs shares of host directories) at their
 *      guest paths, chdir, run the spec's `init` commands as root;
 *   6. fork the workload, which leads a session of its own (with the
 *      console as its controlling terminal when that is a terminal),
 *      switches user and execs; we stay, pass the signals the host sends
 *      over vsock to its process group, and end with its exit status,
 *      which init.krun reports to the host.
 *
 * Freestanding (no libc): a few KiB instead of the ~800 KiB of a static glibc
 * binary, and the stub carries this file inside itself.
 */

/* The names and numbers shared with the host: runtime/src/guest_abi.rs,
 * written out by runtime/build.rs. */
#include "guest_abi.h"

typedef unsigned long size_t;

#if defined(__x86_64__)
#define SYS_read 0
#define SYS_write 1
#define SYS_close 3
#define SYS_execve 59
#define SYS_exit 60
#define SYS_chdir 80
#define SYS_setuid 105
#define SYS_setgid 106
#define SYS_setgroups 116
#define SYS_chroot 161
#define SYS_mount 165
#define SYS_openat 257
#define SYS_mkdirat 258
#define SYS_unlinkat 263
#define SYS_socket 41
#define SYS_connect 42
#define SYS_bind 49
#define SYS_listen 50
#define SYS_clone 56
#define SYS_wait4 61
#define SYS_rt_sigaction 13
#define SYS_fchownat 260
#define SYS_accept4 288
#define SYS_ppoll 271
static long syscall6(long n, long a, long b, long c, long d, long e, long f)
{
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
__asm__(".global _start\n"
        "_start:\n"
        "  xor %ebp, %ebp\n"
        "  call init_main\n"
        "  ud2\n");
#elif defined(__aarch64__)
#define SYS_read 63
#define SYS_write 64
#define SYS_close 57
#define SYS_execve 221
#define SYS_exit 93
#define SYS_chdir 49
#define SYS_setuid 146
#define SYS_setgid 144
#define SYS_setgroups 159
#define SYS_chroot 51
#define SYS_mount 40
#define SYS_openat 56
#define SYS_mkdirat 34
#define SYS_unlinkat 35
#define SYS_socket 198
#define SYS_connect 203
#define SYS_bind 200
#define SYS_listen 201
#define SYS_clone 220
#define SYS_wait4 260
#define SYS_rt_sigaction 134
#define SYS_fchownat 54
#define SYS_accept4 242
#define SYS_ppoll 73
static long syscall6(long n, long a, long b, long c, long d, long e, long f)
{
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    register long x5 __asm__("x5") = f;
    __asm__ volatile("svc 0"
                     : "+r"(x0)
                     : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
                     : "memory");
    return x0;
}
__asm__(".global _start\n"
        "_start:\n"
        "  mov x29, #0\n"
        "  bl init_main\n"
        "  brk #0\n");
#else
#error "smolvm-init: unsupported architecture"
#endif

#define AT_FDCWD (-100)
#define O_RDONLY 0
#define O_CLOEXEC 02000000
#define O_WRONLY 1
#define O_RDWR 2
#define O_NOCTTY 0400
#define O_CREAT 0100
#define O_TRUNC 01000
#define O_NOFOLLOW 0400000
#define MS_RDONLY 1
#define MS_NOSUID 2
#define MS_NODEV 4
#define MS_BIND 4096
#define MS_REC 16384
#define ENOENT 2
#define EACCES 13
#define EEXIST 17

/* Signals from the host and the workload's terminal (see start_workload). */
#if defined(__x86_64__)
#define SYS_ioctl 16
#define SYS_rt_sigprocmask 14
#define SYS_setsid 112
#define SYS_kill 62
#define SYS_signalfd4 289
#define SYS_dup3 292
#elif defined(__aarch64__)
#define SYS_ioctl 29
#define SYS_rt_sigprocmask 135
#define SYS_setsid 157
#define SYS_kill 129
#define SYS_signalfd4 74
#define SYS_dup3 24
#endif
#define TCGETS 0x5401
#define TIOCSCTTY 0x540E
#define SIG_BLOCK 0
#define SIG_UNBLOCK 1
#define WNOHANG 1

/* The compiler may emit calls to these for struct copies and zeroing. */
void *memset(void *d, int c, size_t n)
{
    unsigned char *p = d;
    while (n--)
        *p++ = (unsigned char)c;
    return d;
}
void *memcpy(void *d, const void *s, size_t n)
{
    unsigned char *p = d;
    const unsigned char *q = s;
    while (n--)
        *p++ = *q++;
    return d;
}

static size_t str_len(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

static int str_eq(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return *a == *b;
}

static void put(const char *s)
{
    syscall6(SYS_write, 2, (long)s, (long)str_len(s), 0, 0, 0);
}

static void put_num(long v)
{
    char buf[24];
    int i = sizeof(buf) - 1;
    int neg = v < 0;
    buf[i] = 0;
    if (neg)
        v = -v;
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v && i > 1);
    if (neg)
        buf[--i] = '-';
    put(&buf[i]);
}

/* 125: the runtime failed before the workload started (as init.krun does). */
static __attribute__((noreturn)) void die(const char *what, long err)
{
    put("smolvm-init: ");
    put(what);
    if (err) {
        put(" (errno ");
        put_num(-err);
        put(")");
    }
    put("\n");
    syscall6(SYS_exit, 125, 0, 0, 0, 0, 0);
    __builtin_unreachable();
}

#define SPEC_MAX SMOLVM_SPEC_BUFFER
#define MAX_STRINGS SMOLVM_SPEC_STRINGS
static char spec[SPEC_MAX];
static char *argv_buf[MAX_STRINGS + 1];
static char *envp_buf[MAX_STRINGS + 1];
static char path_buf[4096];

/* Volumes (virtio-fs shares) and init commands: the spec's records. */
#define MAX_VOLUMES SMOLVM_VOLUMES
#define MAX_INIT SMOLVM_INIT_COMMANDS
static char *vol_tag[MAX_VOLUMES], *vol_path[MAX_VOLUMES];
static int vol_ro[MAX_VOLUMES];
static long vol_count;
static char *init_cmd[MAX_INIT];
static long init_count;
/* The workload's groups (smolvm_format::manifest::MAX_GROUPS); gid_t is
 * 32-bit on every Linux ABI. */
#define MAX_GROUPS SMOLVM_GROUPS
static unsigned int group_ids[MAX_GROUPS];
static long group_count;

static size_t spec_len, spec_pos;

/* Next NUL-terminated string of the spec, or die. */
static char *next(void)
{
    char *s = &spec[spec_pos];
    while (spec_pos < spec_len && spec[spec_pos])
        spec_pos++;
    if (spec_pos >= spec_len)
        die("run spec is truncated", 0);
    spec_pos++;
    return s;
}

static long parse_num(const char *s)
{
    long v = 0;
    if (!*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > 429496729)
            die("run spec has a bad number", 0);
        v = v * 10 + (*s - '0');
    }
    /* The host's limit for ids (smolvm_format::manifest::MAX_ID): -1 is
     * setuid's "no change" and never an id. */
    if (v > 4294967294L)
        die("run spec has a bad number", 0);
    return v;
}

static void mkdir_p(char *path)
{
    for (char *p = path + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char saved = *p;
            *p = 0;
            long r = syscall6(SYS_mkdirat, AT_FDCWD, (long)path, 0755, 0, 0, 0);
            *p = saved;
            if (r < 0 && r != -EEXIST)
                return;
            if (!saved)
                return;
        }
    }
}

/* The host's resolv.conf when the network is on (read before the per-run
 * tmpfs hides /.smolvm). */
static char resolv[4096];
static long resolv_len;

static void read_resolv_conf(void)
{
    long fd = syscall6(SYS_openat, AT_FDCWD, (long)SMOLVM_RESOLV_CONF, O_RDONLY | O_CLOEXEC, 0, 0, 0);
    if (fd < 0)
        return;
    long n = syscall6(SYS_read, fd, (long)resolv, (long)sizeof(resolv), 0, 0, 0);
    syscall6(SYS_close, fd, 0, 0, 0, 0, 0);
    if (n < 0)
        die("cannot read /.smolvm/resolv.conf", n);
    resolv_len = n;
}

/* Replaces the image's /etc/resolv.conf (often a symlink to a resolver the
 * image's build host had) in the writable layer. */
static void write_resolv_conf(void)
{
    if (resolv_len <= 0)
        return;
    syscall6(SYS_mkdirat, AT_FDCWD, (long)"/.smolvm/root/etc", 0755, 0, 0, 0);
    syscall6(SYS_unlinkat, AT_FDCWD, (long)"/.smolvm/root/etc/resolv.conf", 0, 0, 0, 0);
    long fd = syscall6(SYS_openat, AT_FDCWD, (long)"/.smolvm/root/etc/resolv.conf",
                       O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644, 0, 0);
    if (fd < 0)
        die("cannot write /etc/resolv.conf", fd);
    long n = syscall6(SYS_write, fd, (long)resolv, resolv_len, 0, 0, 0);
    syscall6(SYS_close, fd, 0, 0, 0, 0, 0);
    if (n != resolv_len)
        die("cannot write /etc/resolv.conf", n < 0 ? n : 0);
}

/* SSH agent forwarding: the vsock port the host's agent is behind, from
 * /.smolvm/ssh-agent (absent: no forwarding). The socket the workload sees
 * (SSH_AUTH_SOCK in its environment, set by the host). */
#define AGENT_DIR "/run/smolvm"
#define AGENT_SOCK AGENT_DIR "/ssh-agent.sock"
#define AF_UNIX 1
#define AF_VSOCK 40
#define SOCK_STREAM 1
#define SOCK_CLOEXEC 02000000
#define VMADDR_CID_HOST 2
#define SIGCHLD 17
#define POLLIN 1
static long agent_port = -1;

struct sockaddr_un_min {
    unsigned short family;
    char path[108];
};
struct sockaddr_vm_min {
    unsigned short family;
    unsigned short reserved;
    unsigned int port;
    unsigned int cid;
    unsigned char flags;
    unsigned char zero[3];
};
struct pollfd_min {
    int fd;
    short events;
    short revents;
};
struct kernel_sigaction_min {
    long handler;
    unsigned long flags;
    long restorer;
    unsigned long mask;
};

static void read_agent_port(void)
{
    char buf[16];
    long fd = syscall6(SYS_openat, AT_FDCWD, (long)SMOLVM_SSH_AGENT, O_RDONLY | O_CLOEXEC, 0, 0, 0);
    if (fd < 0)
        return;
    long n = syscall6(SYS_read, fd, (long)buf, sizeof(buf) - 1, 0, 0, 0);
    syscall6(SYS_close, fd, 0, 0, 0, 0, 0);
    if (n <= 0)
        die("cannot read /.smolvm/ssh-agent", n);
    buf[n] = 0;
    agent_port = parse_num(buf);
}

/* Copies between the two sockets until either side ends. */
static void pump(long a, long b)
{
    static char buf[16384];
    struct pollfd_min fds[2] = {{(int)a, POLLIN, 0}, {(int)b, POLLIN, 0}};
    for (;;) {
        if (syscall6(SYS_ppoll, (long)fds, 2, 0, 0, 8, 0) < 0)
            return;
        for (int i = 0; i < 2; i++) {
            if (!fds[i].revents)
                continue;
            long n = syscall6(SYS_read, fds[i].fd, (long)buf, sizeof(buf), 0, 0, 0);
            if (n <= 0)
                return;
            for (long off = 0; off < n;) {
                long w = syscall6(SYS_write, fds[1 - i].fd, (long)buf + off, n - off, 0, 0, 0);
                if (w <= 0)
                    return;
                off += w;
            }
        }
    }
}

/* The forwarder process: accepts on AGENT_SOCK, one child per client. */
static __attribute__((noreturn)) void agent_forwarder(long listener)
{
    struct kernel_sigaction_min ign = {1 /* SIG_IGN: children reap themselves */, 0, 0, 0};
    syscall6(SYS_rt_sigaction, SIGCHLD, (long)&ign, 0, 8, 0, 0);
    for (;;) {
        long c = syscall6(SYS_accept4, listener, 0, 0, SOCK_CLOEXEC, 0, 0);
        if (c < 0)
            continue;
        if (syscall6(SYS_clone, SIGCHLD, 0, 0, 0, 0, 0) == 0) {
            struct sockaddr_vm_min vm = {AF_VSOCK, 0, (unsigned int)agent_port, VMADDR_CID_HOST, 0, {0, 0, 0}};
            long v = syscall6(SYS_socket, AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0, 0, 0, 0);
            if (v >= 0 && syscall6(SYS_connect, v, (long)&vm, sizeof(vm), 0, 0, 0) == 0)
                pump(c, v);
            syscall6(SYS_exit, 0, 0, 0, 0, 0, 0);
        }
        syscall6(SYS_close, c, 0, 0, 0, 0, 0);
    }
}

/* Before dropping privileges: the socket's directory, the workload's own. */
static void agent_prepare(long uid, long gid)
{
    if (agent_port < 0)
        return;
    syscall6(SYS_mkdirat, AT_FDCWD, (long)"/run", 0755, 0, 0, 0);
    long r = syscall6(SYS_mkdirat, AT_FDCWD, (long)AGENT_DIR, 0700, 0, 0, 0);
    if (r < 0 && r != -EEXIST)
        die("cannot create " AGENT_DIR, r);
    r = syscall6(SYS_fchownat, AT_FDCWD, (long)AGENT_DIR, uid, gid, 0x100 /* AT_SYMLINK_NOFOLLOW */, 0);
    if (r < 0)
        die("cannot hand " AGENT_DIR " to the workload's user", r);
}

/* After dropping privileges: listen, then leave the forwarder running as a
 * grandchild (so it is not a child the workload could wait for). */
static void agent_start(void)
{
    if (agent_port < 0)
        return;
    struct sockaddr_un_min addr = {AF_UNIX, {0}};
    memcpy(addr.path, AGENT_SOCK, sizeof(AGENT_SOCK));
    long l = syscall6(SYS_socket, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, 0, 0, 0);
    if (l < 0)
        die("cannot create the SSH agent socket", l);
    long r = syscall6(SYS_bind, l, (long)&addr, sizeof(addr), 0, 0, 0);
    if (r < 0 || (r = syscall6(SYS_listen, l, 16, 0, 0, 0, 0)) < 0)
        die("cannot listen on " AGENT_SOCK, r);
    long child = syscall6(SYS_clone, SIGCHLD, 0, 0, 0, 0, 0);
    if (child == 0) {
        if (syscall6(SYS_clone, SIGCHLD, 0, 0, 0, 0, 0) == 0) {
            /* Out of the workload's session: signals for it are not ours. */
            syscall6(SYS_setsid, 0, 0, 0, 0, 0, 0);
            agent_forwarder(l);
        }
        syscall6(SYS_exit, 0, 0, 0, 0, 0, 0);
    }
    if (child < 0)
        die("cannot start the SSH agent forwarder", child);
    syscall6(SYS_wait4, child, 0, 0, 0, 0, 0);
    syscall6(SYS_close, l, 0, 0, 0, 0, 0);
}

/* The records after the environment (see runtime/src/spec.rs). */
static void read_records(void)
{
    while (spec_pos < spec_len) {
        char *name = next();
        if (str_eq(name, "volume")) {
            if (vol_count >= MAX_VOLUMES)
                die("run spec has too many volumes", 0);
            vol_tag[vol_count] = next();
            vol_path[vol_count] = next();
            char *mode = next();
            if (vol_path[vol_count][0] != '/' || (!str_eq(mode, "ro") && !str_eq(mode, "rw")))
                die("run spec has a bad volume record", 0);
            vol_ro[vol_count++] = str_eq(mode, "ro");
        } else if (str_eq(name, "init")) {
            if (init_count >= MAX_INIT)
                die("run spec has too many init commands", 0);
            init_cmd[init_count++] = next();
        } else if (str_eq(name, "group")) {
            if (group_count >= MAX_GROUPS)
                die("run spec has too many groups", 0);
            long g = parse_num(next());
            if (g < 0)
                die("run spec has a bad group record", 0);
            group_ids[group_count++] = (unsigned int)g;
        } else {
            die("run spec has an unknown record", 0);
        }
    }
}

/* Inside the chroot, as root: each share at its guest path (created in the
 * per-run layer when missing; symlinks resolve inside the guest's root).
 * nosuid/nodev: a host file cannot become a setuid program or a device in
 * the guest. A read-only volume is a read-only mount (and the host serves
 * it read-only as well). */
static void mount_volumes(void)
{
    for (long i = 0; i < vol_count; i++) {
        mkdir_p(vol_path[i]);
        long flags = MS_NOSUID | MS_NODEV | (vol_ro[i] ? MS_RDONLY : 0);
        long r = syscall6(SYS_mount, (long)vol_tag[i], (long)vol_path[i], (long)"virtiofs", flags, 0, 0);
        if (r < 0) {
            put("smolvm-init: cannot mount the shared directory at ");
            put(vol_path[i]);
            put(" (errno ");
            put_num(-r);
            put(")\n");
            syscall6(SYS_exit, 125, 0, 0, 0, 0, 0);
        }
    }
}

/* The `init` commands: each `/bin/sh -c CMD`, in order, as root, with the
 * workload's environment, in its working directory. The first that fails
 * stops the start with its exit code (128+signal if killed). */
static void run_init_commands(void)
{
    for (long i = 0; i < init_count; i++) {
        char *argv[4] = {"/bin/sh", "-c", init_cmd[i], 0};
        long child = syscall6(SYS_clone, SIGCHLD, 0, 0, 0, 0, 0);
        if (child == 0) {
            long e = syscall6(SYS_execve, (long)argv[0], (long)argv, (long)envp_buf, 0, 0, 0);
            put("smolvm: cannot run init commands: /bin/sh ");
            put(e == -ENOENT ? "is not in the image\n" : "exec failed\n");
            syscall6(SYS_exit, e == -ENOENT ? 127 : 126, 0, 0, 0, 0, 0);
        }
        if (child < 0)
            die("cannot start an init command", child);
        int status = 0;
        long r;
        do
            r = syscall6(SYS_wait4, child, (long)&status, 0, 0, 0, 0);
        while (r == -4 /* EINTR */);
        if (r < 0)
            die("cannot wait for an init command", r);
        long code = (status & 0x7f) ? 128 + (status & 0x7f) : (status >> 8) & 0xff;
        if (code != 0) {
            put("smolvm: init command ");
            put_num(i + 1);
            put(" of ");
            put_num(init_count);
            put(" failed with exit code ");
            put_num(code);
            put(": ");
            put(init_cmd[i]);
            put("\n");
            syscall6(SYS_exit, code, 0, 0, 0, 0, 0);
        }
    }
}

static void bind_into_root(const char *src, const char *dst)
{
    syscall6(SYS_mkdirat, AT_FDCWD, (long)dst, 0755, 0, 0, 0);
    long r = syscall6(SYS_mount, (long)src, (long)dst, 0, MS_BIND | MS_REC, 0, 0);
    if (r < 0)
        die("cannot bind the system mounts into the overlay root", r);
}

/* The host's end of the control channel (vsock port SMOLVM_CONTROL_PORT):
 * runtime/src/control.rs sends each signal it gets (SIGINT, SIGTERM, SIGHUP,
 * SIGQUIT, SIGUSR1, SIGUSR2) as one byte holding its number. */

/* Connected to the host, or -1 (a host that did not set the channel up). */
static long control_connect(void)
{
    struct sockaddr_vm_min vm = {AF_VSOCK, 0, SMOLVM_CONTROL_PORT, VMADDR_CID_HOST, 0, {0, 0, 0}};
    long s = syscall6(SYS_socket, AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0, 0, 0, 0);
    if (s < 0)
        return -1;
    if (syscall6(SYS_connect, s, (long)&vm, sizeof(vm), 0, 0, 0) < 0) {
        syscall6(SYS_close, s, 0, 0, 0, 0, 0);
        return -1;
    }
    return s;
}

/* The parent's life after start_workload: pass the host's signals to the
 * workload's process group until the workload ends, then end with its
 * status (128+signal if it was killed), which init.krun reports. */
static __attribute__((noreturn)) void supervise(long child, long ctl)
{
    /* We are not the workload: what a terminal or the host sends is its. */
    static const int ignored[] = {1 /* HUP */, 2 /* INT */, 3 /* QUIT */, 10 /* USR1 */, 12 /* USR2 */,
                                  13 /* PIPE */, 15 /* TERM */, 21 /* TTIN */, 22 /* TTOU */};
    struct kernel_sigaction_min ign = {1 /* SIG_IGN */, 0, 0, 0};
    for (unsigned long i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++)
        syscall6(SYS_rt_sigaction, ignored[i], (long)&ign, 0, 8, 0, 0);
    unsigned long chld = 1UL << (SIGCHLD - 1);
    long sfd = syscall6(SYS_signalfd4, -1, (long)&chld, 8, O_CLOEXEC, 0, 0);
    if (sfd < 0)
        die("cannot watch the workload (signalfd)", sfd);
    for (;;) {
        struct pollfd_min fds[2] = {{(int)sfd, POLLIN, 0}, {(int)ctl, POLLIN, 0}};
        if (syscall6(SYS_ppoll, (long)fds, ctl >= 0 ? 2 : 1, 0, 0, 8, 0) < 0)
            continue;
        if (fds[0].revents) {
            char info[128];
            syscall6(SYS_read, sfd, (long)info, sizeof(info), 0, 0, 0);
            int status = 0;
            long r;
            while ((r = syscall6(SYS_wait4, -1, (long)&status, WNOHANG, 0, 0, 0)) > 0)
                if (r == child)
                    syscall6(SYS_exit, (status & 0x7f) ? 128 + (status & 0x7f) : (status >> 8) & 0xff, 0, 0, 0, 0, 0);
        }
        if (ctl >= 0 && fds[1].revents) {
            unsigned char buf[64];
            long n = syscall6(SYS_read, ctl, (long)buf, sizeof(buf), 0, 0, 0);
            if (n <= 0) {
                syscall6(SYS_close, ctl, 0, 0, 0, 0, 0);
                ctl = -1;
                continue;
            }
            for (long i = 0; i < n; i++) {
                if (buf[i] < 1 || buf[i] > 64)
                    continue;
                /* Its process group; the workload itself if it has not made
                 * one yet (a signal in its first instants). */
                if (syscall6(SYS_kill, -child, buf[i], 0, 0, 0, 0) < 0)
                    syscall6(SYS_kill, child, buf[i], 0, 0, 0, 0);
            }
        }
    }
}

/* Forks the workload. Returns in the child, which goes on to drop
 * privileges and exec; the parent (us) supervises it and never returns.
 * The workload leads a session of its own; when one of its stdio is a
 * terminal (the host's stdin or stdout was: libkrun's console), that is its
 * controlling terminal, so a shell has job control and ^C reaches its
 * foreground job only. (Taking the console from init.krun's session needs
 * root: done before dropping privileges.) */
static void start_workload(void)
{
    long ctl = control_connect();
    unsigned long chld = 1UL << (SIGCHLD - 1);
    /* Blocked before the fork: an early exit is still seen by signalfd. */
    syscall6(SYS_rt_sigprocmask, SIG_BLOCK, (long)&chld, 0, 8, 0, 0);
    long child = syscall6(SYS_clone, SIGCHLD, 0, 0, 0, 0, 0);
    if (child < 0)
        die("cannot start the workload", child);
    if (child > 0)
        supervise(child, ctl);
    syscall6(SYS_rt_sigprocmask, SIG_UNBLOCK, (long)&chld, 0, 8, 0, 0);
    if (ctl >= 0)
        syscall6(SYS_close, ctl, 0, 0, 0, 0, 0);
    syscall6(SYS_setsid, 0, 0, 0, 0, 0, 0);
    char termios[64];
    long con = -1;
    for (long fd = 0; fd < 3; fd++) {
        if (syscall6(SYS_ioctl, fd, TCGETS, (long)termios, 0, 0, 0) < 0)
            continue;
        if (con < 0) {
            syscall6(SYS_ioctl, fd, TIOCSCTTY, 1, 0, 0, 0);
            /* Opened again inside the root, so that ttyname() finds it. */
            con = syscall6(SYS_openat, AT_FDCWD, (long)"/dev/console", O_RDWR | O_NOCTTY | O_CLOEXEC, 0, 0, 0);
            if (con < 0)
                break;
        }
        syscall6(SYS_dup3, con, fd, 0, 0, 0, 0);
    }
    if (con >= 0)
        syscall6(SYS_close, con, 0, 0, 0, 0, 0);
}

/* Writable disks (the host's crate::disk): /.smolvm/disks lists them as
 * NUL-terminated strings: "smolvm-disks-1", overlay "0"/"1", storage
 * "0"/"1", the number of persistent volumes, their guest paths. Disks are
 * found by their virtio-blk serial, not by probe order. */
#if defined(__x86_64__)
#define SYS_statx 332
#define SYS_fchmodat 268
#elif defined(__aarch64__)
#define SYS_statx 291
#define SYS_fchmodat 53
#endif
#define O_DIRECTORY_ 0200000
#define O_PATH_ 010000000
#define MAX_DISK_VOLUMES 64
static char disks[16384];
static int overlay_disk, storage_disk;
static char *pvol[MAX_DISK_VOLUMES];
static long pvol_count;
static long storage_fd = -1;

static void read_disks(void)
{
    long fd = syscall6(SYS_openat, AT_FDCWD, (long)SMOLVM_DISKS, O_RDONLY | O_CLOEXEC, 0, 0, 0);
    if (fd < 0)
        return;
    long n = syscall6(SYS_read, fd, (long)disks, sizeof(disks) - 1, 0, 0, 0);
    syscall6(SYS_close, fd, 0, 0, 0, 0, 0);
    if (n <= 0 || n >= (long)sizeof(disks) - 1 || disks[n - 1])
        die("cannot read /.smolvm/disks", n < 0 ? n : 0);
    char *fields[4 + MAX_DISK_VOLUMES];
    long count = 0;
    for (long at = 0; at < n && count < 4 + MAX_DISK_VOLUMES; count++) {
        fields[count] = &disks[at];
        at += (long)str_len(&disks[at]) + 1;
    }
    if (count < 4 || !str_eq(fields[0], SMOLVM_DISKS_VERSION))
        die(SMOLVM_DISKS " has an unknown version", 0);
    overlay_disk = str_eq(fields[1], "1");
    storage_disk = str_eq(fields[2], "1");
    pvol_count = parse_num(fields[3]);
    if (pvol_count < 0 || pvol_count > MAX_DISK_VOLUMES || pvol_count != count - 4)
        die(SMOLVM_DISKS " has a bad volume count", 0);
    for (long i = 0; i < pvol_count; i++)
        pvol[i] = fields[4 + i];
}

/* Mounts the ext4 disk whose serial is `serial` at `dir`. */
static long mount_disk(const char *serial, const char *dir)
{
    char sys[] = "/sys/block/vdX/serial";
    char dev[] = "/dev/vdX";
    for (char c = 'b'; c <= 'z'; c++) {
        char buf[32];
        sys[13] = c;
        long fd = syscall6(SYS_openat, AT_FDCWD, (long)sys, O_RDONLY | O_CLOEXEC, 0, 0, 0);
        if (fd < 0)
            continue;
        long n = syscall6(SYS_read, fd, (long)buf, sizeof(buf) - 1, 0, 0, 0);
        syscall6(SYS_close, fd, 0, 0, 0, 0, 0);
        if (n <= 0)
            continue;
        buf[n] = 0;
        if (buf[n - 1] == '\n')
            buf[n - 1] = 0;
        if (!str_eq(buf, serial))
            continue;
        dev[7] = c;
        return syscall6(SYS_mount, (long)dev, (long)dir, (long)"ext4", MS_NOSUID | MS_NODEV, 0, 0);
    }
    return -ENOENT;
}

/* Before the chroot: the storage disk at /.smolvm/storage, held by a
 * descriptor that still reaches it from inside the new root. */
static void storage_prepare(void)
{
    if (!storage_disk)
        return;
    syscall6(SYS_mkdirat, AT_FDCWD, (long)"/.smolvm/storage", 0700, 0, 0, 0);
    long r = mount_disk(SMOLVM_STORAGE_SERIAL, "/.smolvm/storage");
    if (r < 0)
        die("cannot mount the storage disk (ext4)", r);
    syscall6(SYS_mkdirat, AT_FDCWD, (long)"/.smolvm/storage/volumes", 0755, 0, 0, 0);
    storage_fd = syscall6(SYS_openat, AT_FDCWD, (long)"/.smolvm/storage/volumes",
                          O_PATH_ | O_DIRECTORY_ | O_CLOEXEC, 0, 0, 0);
    if (storage_fd < 0)
        die("cannot open the storage disk's volumes", storage_fd);
}

static void put_num_to(char *out, long v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *out++ = tmp[--n];
    *out = 0;
}

/* After the chroot: each persistent volume is the directory volumes/PATH on
 * the storage disk, bound at PATH. A new one takes the owner and mode of
 * the image's directory at PATH, or else belongs to the workload's user. */
static void storage_bind(long uid, long gid)
{
    static char rel[4200], src[4300];
    for (long i = 0; i < pvol_count; i++) {
        const char *p = pvol[i] + 1; /* absolute, normalised by the host */
        size_t len = str_len(p);
        if (len + 1 >= sizeof(rel))
            die("persistent volume path is too long", 0);
        memcpy(rel, p, len + 1);
        long created = 0;
        for (char *q = rel;; q++) {
            if (*q == '/' || *q == 0) {
                char saved = *q;
                *q = 0;
                long r = syscall6(SYS_mkdirat, storage_fd, (long)rel, 0755, 0, 0, 0);
                *q = saved;
                if (r < 0 && r != -EEXIST)
                    die("cannot create a volume on the storage disk", r);
                if (!saved) {
                    created = r == 0;
                    break;
                }
            }
        }
        if (created) {
            unsigned char stx[256];
            long owner = uid >= 0 ? uid : 0, group = gid >= 0 ? gid : 0, mode = 0755;
            if (syscall6(SYS_statx, AT_FDCWD, (long)pvol[i], 0, 0x7 /* type, mode, nlink */ | 0x18 /* uid, gid */,
                         (long)stx, 0) == 0 &&
                ((stx[28] | stx[29] << 8) & 0170000) == 0040000) {
                owner = stx[20] | stx[21] << 8 | stx[22] << 16 | (long)stx[23] << 24;
                group = stx[24] | stx[25] << 8 | stx[26] << 16 | (long)stx[27] << 24;
                mode = (stx[28] | stx[29] << 8) & 07777;
            }
            long r = syscall6(SYS_fchownat, storage_fd, (long)rel, owner, group, 0x100 /* AT_SYMLINK_NOFOLLOW */, 0);
            if (r < 0 || (r = syscall6(SYS_fchmodat, storage_fd, (long)rel, mode, 0, 0, 0)) < 0)
                die("cannot hand a new volume to the workload's user", r);
        }
        /* The source through the descriptor: resolved outside the root. */
        memcpy(src, "/proc/self/fd/", 14);
        put_num_to(src + 14, storage_fd);
        size_t at = str_len(src);
        src[at] = '/';
        memcpy(src + at + 1, rel, len + 1);
        memcpy(rel, pvol[i], len + 2);
        mkdir_p(rel);
        long r = syscall6(SYS_mount, (long)src, (long)pvol[i], 0, MS_BIND, 0, 0);
        if (r < 0) {
            put("smolvm-init: cannot mount the persistent volume at ");
            put(pvol[i]);
            put(" (errno ");
            put_num(-r);
            put(")\n");
            syscall6(SYS_exit, 125, 0, 0, 0, 0, 0);
        }
    }
    if (storage_fd >= 0)
        syscall6(SYS_close, storage_fd, 0, 0, 0, 0, 0);
}

void init_main(void)
{
    long fd = syscall6(SYS_openat, AT_FDCWD, (long)SMOLVM_SPEC, O_RDONLY | O_CLOEXEC, 0, 0, 0);
    if (fd < 0)
        die("cannot open /.smolvm/spec", fd);
    for (;;) {
        long n = syscall6(SYS_read, fd, (long)&spec[spec_len], (long)(SPEC_MAX - 1 - spec_len), 0, 0, 0);
        if (n < 0)
            die("cannot read /.smolvm/spec", n);
        if (n == 0)
            break;
        spec_len += (size_t)n;
        if (spec_len >= SPEC_MAX - 1)
            die("run spec is larger than 1 MiB", 0);
    }
    syscall6(SYS_close, fd, 0, 0, 0, 0, 0);

    if (!str_eq(next(), SMOLVM_SPEC_VERSION))
        die("run spec has an unknown version", 0);
    char *workdir = next();
    long uid = parse_num(next());
    long gid = parse_num(next());
    long argc = parse_num(next());
    if (argc < 1 || argc > MAX_STRINGS)
        die("run spec has no command", 0);
    for (long i = 0; i < argc; i++)
        argv_buf[i] = next();
    argv_buf[argc] = 0;
    long envc = parse_num(next());
    if (envc < 0 || envc > MAX_STRINGS)
        die("run spec has a bad environment count", 0);
    for (long i = 0; i < envc; i++)
        envp_buf[i] = next();
    envp_buf[envc] = 0;
    read_records();

    read_disks();
    read_resolv_conf();
    read_agent_port();

    /* The per-run writable layer: the overlay disk when the machine has
     * one, else a tmpfs in guest RAM. */
    long r = overlay_disk ? mount_disk(SMOLVM_OVERLAY_SERIAL, "/.smolvm")
                          : syscall6(SYS_mount, (long)"tmpfs", (long)"/.smolvm", (long)"tmpfs", MS_NOSUID | MS_NODEV,
                                     (long)"mode=0755", 0);
    if (r < 0)
        die(overlay_disk ? "cannot mount the overlay disk (ext4) on /.smolvm" : "cannot mount the per-run tmpfs on /.smolvm", r);
    syscall6(SYS_mkdirat, AT_FDCWD, (long)"/.smolvm/upper", 0755, 0, 0, 0);
    syscall6(SYS_mkdirat, AT_FDCWD, (long)"/.smolvm/work", 0755, 0, 0, 0);
    syscall6(SYS_mkdirat, AT_FDCWD, (long)"/.smolvm/root", 0755, 0, 0, 0);
    syscall6(SYS_mkdirat, AT_FDCWD, (long)"/.smolvm/lower", 0755, 0, 0, 0);
    r = syscall6(SYS_mount, (long)"/dev/vda", (long)"/.smolvm/lower", (long)"erofs", MS_RDONLY, 0, 0);
    if (r < 0)
        die("cannot mount the root filesystem image /dev/vda (erofs)", r);
    r = syscall6(SYS_mount, (long)"overlay", (long)"/.smolvm/root", (long)"overlay", 0,
                 (long)"lowerdir=/.smolvm/lower,upperdir=/.smolvm/upper,workdir=/.smolvm/work", 0);
    if (r < 0)
        die("cannot mount the overlay root (does the guest kernel have overlayfs?)", r);
    write_resolv_conf();
    bind_into_root("/dev", "/.smolvm/root/dev");
    bind_into_root("/proc", "/.smolvm/root/proc");
    bind_into_root("/sys", "/.smolvm/root/sys");
    storage_prepare();

    r = syscall6(SYS_chdir, (long)"/.smolvm/root", 0, 0, 0, 0, 0);
    if (r < 0 || (r = syscall6(SYS_chroot, (long)".", 0, 0, 0, 0, 0)) < 0)
        die("cannot enter the overlay root", r);
    storage_bind(uid, gid);
    mount_volumes();
    if (syscall6(SYS_chdir, (long)workdir, 0, 0, 0, 0, 0) < 0) {
        /* Like container runtimes: a missing working directory is created. */
        mkdir_p(workdir);
        r = syscall6(SYS_chdir, (long)workdir, 0, 0, 0, 0, 0);
        if (r < 0)
            die("cannot change to the working directory", r);
    }
    run_init_commands();
    agent_prepare(uid, gid);
    start_workload();
    if (gid >= 0) {
        /* The spec's groups (gid first), or just gid. */
        if (group_count == 0)
            group_ids[group_count++] = (unsigned int)gid;
        if ((r = syscall6(SYS_setgroups, group_count, (long)group_ids, 0, 0, 0, 0)) < 0 ||
            (r = syscall6(SYS_setgid, gid, 0, 0, 0, 0, 0)) < 0)
            die("cannot switch group", r);
    }
    if (uid >= 0 && (r = syscall6(SYS_setuid, uid, 0, 0, 0, 0, 0)) < 0)
        die("cannot switch user", r);
    agent_start();

    char *cmd = argv_buf[0];
    long err = -ENOENT;
    int has_slash = 0;
    for (char *p = cmd; *p; p++)
        has_slash |= *p == '/';
    if (has_slash) {
        err = syscall6(SYS_execve, (long)cmd, (long)argv_buf, (long)envp_buf, 0, 0, 0);
    } else {
        const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
        for (long i = 0; envp_buf[i]; i++)
            if (envp_buf[i][0] == 'P' && envp_buf[i][1] == 'A' && envp_buf[i][2] == 'T' &&
                envp_buf[i][3] == 'H' && envp_buf[i][4] == '=')
                path = envp_buf[i] + 5;
        size_t clen = str_len(cmd);
        while (*path) {
            size_t n = 0;
            while (path[n] && path[n] != ':')
                n++;
            if (n + clen + 2 < sizeof(path_buf)) {
                memcpy(path_buf, path, n);
                path_buf[n] = '/';
                memcpy(path_buf + n + 1, cmd, clen + 1);
                long e = syscall6(SYS_execve, (long)path_buf, (long)argv_buf, (long)envp_buf, 0, 0, 0);
                if (e != -ENOENT)
                    err = e;
            }
            path += n;
            if (*path == ':')
                path++;
        }
    }
    put("smolvm: cannot run ");
    put(cmd);
    if (err == -ENOENT) {
        put(": not found in the image\n");
    } else {
        put(": exec failed (errno ");
        put_num(-err);
        put(")\n");
    }
    syscall6(SYS_exit, err == -ENOENT ? 127 : 126, 0, 0, 0, 0, 0);
}
