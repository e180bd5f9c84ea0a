/* netpeer: the L1 host's side of tests/tests/boot_net_contain.rs (built with
 * cc -static, run in L1 next to the packed machine).
 *
 *   netpeer unix-serve PATH     listens on the Unix socket PATH (mode 0777),
 *                               prints "listening", accepts until killed
 *   netpeer unix-probe PATH     connects to PATH: "victim: ok" or the errno
 *   netpeer udp-peer ADDR PORT  waits (120 s at most) for one datagram on
 *                               ADDR:PORT and prints the sender's port (the
 *                               VMM's datagram socket); then strangers send
 *                               to that port, from 127.0.0.1 and from ADDR
 *                               on other ports, to 127.0.0.1 and ADDR; one
 *                               second later the peer answers "from-peer"
 *   netpeer hold ADDR PORT      listens on ADDR:PORT, accepts and keeps every
 *                               connection until killed */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static struct sockaddr_in inet(const char *ip, unsigned port) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    inet_pton(AF_INET, ip, &a.sin_addr);
    return a;
}

static struct sockaddr_un unix_addr(const char *path) {
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    return a;
}

static int die(const char *what) {
    perror(what);
    return 1;
}

static int stranger(const char *from, const char *to, unsigned port, const char *msg) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in f = inet(from, 0), t = inet(to, port);
    if (bind(s, (struct sockaddr *)&f, sizeof f) != 0) return die("stranger bind");
    if (sendto(s, msg, strlen(msg), 0, (struct sockaddr *)&t, sizeof t) < 0) return die("stranger send");
    close(s);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 3 && strcmp(argv[1], "unix-serve") == 0) {
        struct sockaddr_un u = unix_addr(argv[2]);
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        unlink(argv[2]);
        if (bind(s, (struct sockaddr *)&u, sizeof u) || listen(s, 16) || chmod(argv[2], 0777))
            return die("unix-serve");
        printf("listening\n");
        for (;;) {
            int c = accept(s, NULL, NULL);
            if (c >= 0) close(c);
        }
    }
    if (argc == 3 && strcmp(argv[1], "unix-probe") == 0) {
        struct sockaddr_un u = unix_addr(argv[2]);
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        int ok = connect(s, (struct sockaddr *)&u, sizeof u) == 0;
        printf("victim: %s\n", ok ? "ok" : strerror(errno));
        return !ok;
    }
    if (argc == 4 && strcmp(argv[1], "udp-peer") == 0) {
        unsigned port = (unsigned)atoi(argv[3]);
        struct sockaddr_in me = inet(argv[2], port), from;
        socklen_t flen = sizeof from;
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        if (bind(s, (struct sockaddr *)&me, sizeof me) != 0) return die("udp-peer bind");
        printf("peer listening\n");
        struct pollfd p = {s, POLLIN, 0};
        char buf[256];
        if (poll(&p, 1, 120000) != 1) return die("udp-peer: nothing arrived");
        if (recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen) < 0) return die("recvfrom");
        unsigned vmm = ntohs(from.sin_port);
        printf("vmm port found\n");
        if (stranger("127.0.0.1", "127.0.0.1", vmm, "from-stranger-lo") ||
            stranger(argv[2], argv[2], vmm, "from-stranger-same-host") ||
            stranger("127.0.0.1", argv[2], vmm, "from-stranger"))
            return 1;
        printf("strangers sent 3\n");
        sleep(1);
        if (sendto(s, "from-peer", 9, 0, (struct sockaddr *)&from, flen) != 9) return die("reply");
        printf("peer replied\n");
        return 0;
    }
    if (argc == 4 && strcmp(argv[1], "hold") == 0) {
        struct rlimit r;
        if (getrlimit(RLIMIT_NOFILE, &r) == 0) {
            r.rlim_cur = r.rlim_max;
            setrlimit(RLIMIT_NOFILE, &r);
        }
        struct sockaddr_in a = inet(argv[2], (unsigned)atoi(argv[3]));
        int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 4096)) return die("hold");
        printf("holding\n");
        for (;;) (void)accept(s, NULL, NULL);
    }
    fprintf(stderr, "usage: see tests/harness/netpeer.c\n");
    return 2;
}
