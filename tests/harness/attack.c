/*
 * attack.so: what a hostile guest kernel can do once it owns the VMM.
 *
 * A .smolmachine carries its own guest kernel, so once the guest runs, the
 * VMM process (libkrun inside the stub) must be treated as the attacker's
 * (security checklist item 17). This library stands where that attacker
 * stands without any hook in the stub: loaded with LD_PRELOAD, it wraps
 * ioctl(2) and, on the first KVM_RUN of any thread (the guest is about to
 * run; a sandbox applied before krun_start_enter is in force), runs each
 * attack below once in that vCPU thread and reports on fd 2, one line each,
 * written with a single write(2) so that nothing interleaves with it:
 *
 *   @@ATTACK-BEGIN pid=P ppid=Q uid=U@@
 *   @@ATTACK-TRY name=N@@                         before each attack
 *   @@ATTACK name=N result=allowed@@
 *   @@ATTACK name=N result=refused stage=S errno=E@@   E as a name (EACCES)
 *   @@ATTACK name=N result=refused stage=S signal=G@@  a child killed by G
 *   @@ATTACK name=N result=skipped reason=R@@      its env var is unset
 *   @@ATTACK-STATUS source=S NoNewPrivs=A Seccomp=B CapEff=C@@
 *   @@ATTACK-END@@
 *
 * A TRY with no result after it means the process died during that attack
 * (a seccomp filter that kills rather than fails the call).
 *
 * Environment (set by tests/tests/integration/vmm_attack.rs and boot_attack.rs):
 *   SMOL_ATTACK_SECRET       a file to read (the person's ~/.ssh/id_ed25519)
 *   SMOL_ATTACK_OUTSIDE_DIR  a directory outside every share to create a file in ($HOME)
 *   SMOL_ATTACK_TMP          a second such directory (default /tmp)
 *   SMOL_ATTACK_EXEC         the program to execute (default /bin/true)
 *   SMOL_ATTACK_TCP          a host loopback TCP port with a listener
 *   SMOL_ATTACK_UNIX         a host Unix socket path with a listener, not handed to the VM
 *   SMOL_ATTACK_SHARE        a directory shared with the guest (the positive control),
 *                            used as the VMM uses it: through the descriptor it
 *                            holds (/proc/self/fd/N, found by device and inode),
 *                            since in the VMM's own mount namespace the host
 *                            path does not exist
 *   SMOL_ATTACK_SKIP         comma-separated attack names not to run
 *   SMOL_ATTACK_EXIT=1       _exit(0) right after reporting (natively the
 *                            guest cannot run anyway); else the real ioctl
 *                            goes on and the guest boots
 *
 * Only plain system calls and snprintf run after the VMM has started its
 * threads; nothing here allocates.
 *
 * Build: cc -shared -fPIC -O2 -o attack.so attack.c -ldl
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define KVM_RUN 0xae80UL

typedef int (*ioctl_fn)(int, unsigned long, ...);
static ioctl_fn real_ioctl;
static int attacked;
/* /proc/self/status of this process, opened after each fork, before any
 * sandbox: read later, it shows the process's state then even if opening
 * /proc is refused by then. */
static int status_fd = -1;
/* SMOL_ATTACK_SHARE's device and inode, taken at load (before any sandbox). */
static dev_t share_dev;
static ino_t share_ino;
static int share_known;

static void say(const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if (n > (int)sizeof line - 2) n = sizeof line - 2;
    line[n++] = '\n';
    ssize_t ignored = write(2, line, (size_t)n);
    (void)ignored;
}

static const char *errno_name(int e) {
    switch (e) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EINTR: return "EINTR";
    case EIO: return "EIO";
    case EBADF: return "EBADF";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EEXIST: return "EEXIST";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case EINVAL: return "EINVAL";
    case EMFILE: return "EMFILE";
    case ENOSPC: return "ENOSPC";
    case EROFS: return "EROFS";
    case ESRCH: return "ESRCH";
    case ECHILD: return "ECHILD";
    case ENOSYS: return "ENOSYS";
    case ENOTSOCK: return "ENOTSOCK";
    case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case ENETUNREACH: return "ENETUNREACH";
    case ECONNREFUSED: return "ECONNREFUSED";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EXDEV: return "EXDEV";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    default: return "EUNKNOWN";
    }
}

static void refused(const char *name, const char *stage, int e) {
    say("@@ATTACK name=%s result=refused stage=%s errno=%s@@", name, stage, errno_name(e));
}

static void allowed(const char *name) {
    say("@@ATTACK name=%s result=allowed@@", name);
}

/* Whether `name` is in SMOL_ATTACK_SKIP (comma-separated). */
static int skipped(const char *name) {
    const char *list = getenv("SMOL_ATTACK_SKIP");
    size_t len = strlen(name);
    while (list && *list) {
        const char *end = strchr(list, ',');
        size_t n = end ? (size_t)(end - list) : strlen(list);
        if (n == len && strncmp(list, name, n) == 0) return 1;
        list = end ? end + 1 : NULL;
    }
    return 0;
}

/* The env var `var`, or NULL after reporting the attack as skipped. */
static const char *need(const char *name, const char *var) {
    const char *v = getenv(var);
    if (!v || !*v) say("@@ATTACK name=%s result=skipped reason=%s-unset@@", name, var);
    return (v && *v) ? v : NULL;
}

static void read_file(const char *name, const char *path) {
    char buf[64];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return refused(name, "open", errno);
    ssize_t n = read(fd, buf, sizeof buf);
    int e = errno;
    close(fd);
    if (n < 0) return refused(name, "read", e);
    allowed(name);
}

static void create_in(const char *name, const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/smol-attack-%d", dir, (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return refused(name, "open", errno);
    close(fd);
    allowed(name);
    /* unlinkat, as libkrun's file server removes files (the VMM's allow-list
     * has no plain unlink). */
    unlinkat(AT_FDCWD, path, 0);
}

static void exec_program(const char *name, const char *prog) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) return refused(name, "pipe", errno);
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(p[0]);
        close(p[1]);
        return refused(name, "fork", e);
    }
    if (pid == 0) {
        char *argv[] = {(char *)prog, NULL};
        char *envp[] = {NULL};
        execve(prog, argv, envp);
        int e = errno;
        ssize_t ignored = write(p[1], &e, sizeof e);
        (void)ignored;
        _exit(127);
    }
    close(p[1]);
    int e = 0, st = 0;
    /* The write end closes on a successful exec (O_CLOEXEC): 0 bytes. */
    ssize_t n = read(p[0], &e, sizeof e);
    close(p[0]);
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (n == (ssize_t)sizeof e) return refused(name, "execve", e);
    if (WIFSIGNALED(st)) {
        say("@@ATTACK name=%s result=refused stage=execve signal=%d@@", name, WTERMSIG(st));
        return;
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return allowed(name);
    say("@@ATTACK name=%s result=refused stage=execve status=%d@@", name, st);
}

static void connect_tcp(const char *name, const char *port) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) return refused(name, "socket", errno);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)atoi(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int r = connect(s, (struct sockaddr *)&a, sizeof a);
    int e = errno;
    close(s);
    if (r < 0) return refused(name, "connect", e);
    allowed(name);
}

static void connect_unix(const char *name, const char *path) {
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) return refused(name, "socket", errno);
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    int r = connect(s, (struct sockaddr *)&a, sizeof a);
    int e = errno;
    close(s);
    if (r < 0) return refused(name, "connect", e);
    allowed(name);
}

static void ptrace_parent(const char *name) {
    pid_t parent = getppid();
    if (ptrace(PTRACE_ATTACH, parent, NULL, NULL) < 0) return refused(name, "attach", errno);
    /* Attached: the supervisor gets SIGSTOP; wait for it to stop, then let
     * it go, or it would stay stopped. */
    int st;
    while (waitpid(parent, &st, __WALL) < 0 && errno == EINTR) {
    }
    ptrace(PTRACE_DETACH, parent, NULL, NULL);
    allowed(name);
}

/* The VMM's way into the share: the descriptor it holds on the directory,
 * as libkrun's virtio-fs opens it (/proc/self/fd/N/.); the host path if no
 * descriptor matches. */
static void share_path(const char *dir, char *out, size_t cap) {
    for (int fd = 0; share_known && fd < 4096; fd++) {
        struct stat st;
        if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode) && st.st_dev == share_dev &&
            st.st_ino == share_ino) {
            snprintf(out, cap, "/proc/self/fd/%d", fd);
            return;
        }
    }
    snprintf(out, cap, "%s", dir);
}

static void share_read_write(const char *name, const char *dir) {
    char via[4096], path[sizeof via + 64], buf[32];
    static const char probe[] = "written-by-the-vmm";
    share_path(dir, via, sizeof via);
    snprintf(path, sizeof path, "%s/smol-attack-probe-%d", via, (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return refused(name, "create", errno);
    ssize_t n = write(fd, probe, sizeof probe - 1);
    int e = errno;
    close(fd);
    if (n != (ssize_t)sizeof probe - 1) return refused(name, "write", n < 0 ? e : EIO);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return refused(name, "reopen", errno);
    n = read(fd, buf, sizeof buf);
    e = errno;
    close(fd);
    /* unlinkat, as libkrun's file server removes files (the VMM's allow-list
     * has no plain unlink). */
    unlinkat(AT_FDCWD, path, 0);
    if (n != (ssize_t)sizeof probe - 1 || memcmp(buf, probe, sizeof probe - 1) != 0)
        return refused(name, "read", n < 0 ? e : EIO);
    allowed(name);
}

/* The value of `key` ("Seccomp:") in a /proc status text, or "?". */
static void field(const char *text, const char *key, char *out, size_t cap) {
    const char *p = strstr(text, key);
    snprintf(out, cap, "?");
    if (!p) return;
    p += strlen(key);
    while (*p == ' ' || *p == '\t') p++;
    size_t n = strcspn(p, "\n");
    if (n >= cap) n = cap - 1;
    memcpy(out, p, n);
    out[n] = 0;
}

/* The vCPU thread's own status if it can still open /proc (that is an
 * attack too: the sandbox may refuse it); else the descriptor opened before
 * the sandbox (the whole process's main thread). */
static void report_status(void) {
    char text[4096], nnp[16], sec[16], cap[32], source[64];
    int fd = open("/proc/thread-self/status", O_RDONLY | O_CLOEXEC);
    ssize_t n = -1;
    if (fd >= 0) {
        snprintf(source, sizeof source, "thread-self");
        n = read(fd, text, sizeof text - 1);
        close(fd);
    } else {
        snprintf(source, sizeof source, "preopened open-errno=%s", errno_name(errno));
        if (status_fd >= 0) n = pread(status_fd, text, sizeof text - 1, 0);
    }
    if (n < 0) {
        say("@@ATTACK-STATUS source=%s result=unreadable errno=%s@@", source, errno_name(errno));
        return;
    }
    text[n] = 0;
    field(text, "NoNewPrivs:", nnp, sizeof nnp);
    field(text, "Seccomp:", sec, sizeof sec);
    field(text, "CapEff:", cap, sizeof cap);
    say("@@ATTACK-STATUS source=%s NoNewPrivs=%s Seccomp=%s CapEff=%s@@", source, nnp, sec, cap);
}

#define ATTACK(name, call)                                                                         \
    do {                                                                                           \
        if (!skipped(name)) {                                                                      \
            say("@@ATTACK-TRY name=%s@@", name);                                                   \
            call;                                                                                  \
        }                                                                                          \
    } while (0)

static void attack(void) {
    const char *v;
    const char *tmp = getenv("SMOL_ATTACK_TMP");
    const char *prog = getenv("SMOL_ATTACK_EXEC");
    say("@@ATTACK-BEGIN pid=%d ppid=%d uid=%d@@", (int)getpid(), (int)getppid(), (int)getuid());
    report_status();
    /* The positive control first: whatever happens later, it is known. */
    ATTACK("share-read-write", if ((v = need("share-read-write", "SMOL_ATTACK_SHARE"))) share_read_write("share-read-write", v));
    ATTACK("read-home-secret", if ((v = need("read-home-secret", "SMOL_ATTACK_SECRET"))) read_file("read-home-secret", v));
    ATTACK("read-etc-shadow", read_file("read-etc-shadow", "/etc/shadow"));
    ATTACK("create-in-home", if ((v = need("create-in-home", "SMOL_ATTACK_OUTSIDE_DIR"))) create_in("create-in-home", v));
    ATTACK("create-in-tmp", create_in("create-in-tmp", tmp && *tmp ? tmp : "/tmp"));
    ATTACK("connect-unix", if ((v = need("connect-unix", "SMOL_ATTACK_UNIX"))) connect_unix("connect-unix", v));
    ATTACK("connect-tcp-loopback", if ((v = need("connect-tcp-loopback", "SMOL_ATTACK_TCP"))) connect_tcp("connect-tcp-loopback", v));
    ATTACK("ptrace-parent", ptrace_parent("ptrace-parent"));
    ATTACK("exec", exec_program("exec", prog && *prog ? prog : "/bin/true"));
    say("@@ATTACK-END@@");
}

static void reopen_status(void) {
    if (status_fd >= 0) close(status_fd);
    status_fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
}

__attribute__((constructor)) static void init(void) {
    real_ioctl = (ioctl_fn)dlsym(RTLD_NEXT, "ioctl");
    /* The VMM is a child of the supervisor: its own status descriptor is
     * opened right after the fork, long before the sandbox. */
    pthread_atfork(NULL, NULL, reopen_status);
    reopen_status();
    const char *share = getenv("SMOL_ATTACK_SHARE");
    struct stat st;
    if (share && *share && stat(share, &st) == 0) {
        share_dev = st.st_dev;
        share_ino = st.st_ino;
        share_known = 1;
    }
}

int ioctl(int fd, unsigned long request, ...) {
    va_list ap;
    va_start(ap, request);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (request == KVM_RUN && !__atomic_exchange_n(&attacked, 1, __ATOMIC_SEQ_CST)) {
        int saved = errno;
        attack();
        const char *exit_now = getenv("SMOL_ATTACK_EXIT");
        if (exit_now && strcmp(exit_now, "1") == 0) _exit(0);
        errno = saved;
    }
    return real_ioctl(fd, request, arg);
}
