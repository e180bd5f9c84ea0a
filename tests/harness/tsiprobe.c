/* tsiprobe: the guest side of tests/tests/boot_net_contain.rs, run inside a
 * networked smolmachine (L2) as a hostile workload would. Built with
 * cc -static and copied into the guest image as /bin/tsiprobe.
 *
 *   tsiprobe contain SYNC VICTIM
 *       Ordinary listeners first: TCP bind(0)+listen, listen() with no bind,
 *       TCP 0.0.0.0:9099 and UDP 0.0.0.0:5353 (neither published). Then raw
 *       TSI requests sent from this process over vsock datagrams, as guest
 *       userspace can without any kernel change: PROXY_CREATE (AF_INET
 *       stream) + LISTEN on port 0, on the unpublished port 9099, with a
 *       sockaddr_un naming the host path VICTIM, an AF_UNIX PROXY_CREATE +
 *       LISTEN on VICTIM, every request cut short at every length, and a
 *       LISTEN whose addr_len runs past the packet. One line per result.
 *       Prints "holding" with every socket still open and waits (60 s at
 *       most) until the file SYNC exists, while the host looks.
 *   tsiprobe udp ADDR PORT
 *       Sends "hello" to ADDR:PORT from one UDP socket, then prints every
 *       datagram that socket receives ("got PAYLOAD") until 3 s after
 *       "from-peer" arrived or 40 s passed.
 *   tsiprobe many N ADDR PORT SYNC
 *       Opens N TCP sockets and connects each to ADDR:PORT; prints how many
 *       connected and how the rest failed; prints "holding" and waits for
 *       SYNC; then closes them all and connects 5 fresh ones (the machine
 *       keeps working once the guest lets go).
 *
 * TSI's wire format (krun-devices vsock/packet.rs): requests go to host
 * (CID 2) ports 1024.. as vsock datagrams, little-endian u32/u16 fields,
 * addresses as Linux struct sockaddr; replies come back to the sender's
 * port, a little-endian i32 result first. */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/vm_sockets.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum {
    TSI_PROXY_CREATE = 1024,
    TSI_CONNECT = 1025,
    TSI_GETNAME = 1026,
    TSI_SENDTO_ADDR = 1027,
    TSI_SENDTO_DATA = 1028,
    TSI_LISTEN = 1029,
    TSI_ACCEPT = 1030,
    TSI_PROXY_RELEASE = 1031,
};

static int vs = -1;

static const char *err(int ok) { return ok ? "ok" : strerror(errno); }

static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void tsi_send(unsigned port, const void *buf, size_t len) {
    struct sockaddr_vm a;
    memset(&a, 0, sizeof a);
    a.svm_family = AF_VSOCK;
    a.svm_cid = VMADDR_CID_HOST;
    a.svm_port = port;
    if (sendto(vs, buf, len, 0, (struct sockaddr *)&a, sizeof a) < 0 && len > 0)
        printf("send to %u (%zu bytes): %s\n", port, len, strerror(errno));
}

/* The next reply's result, or a word for why there is none. */
static void tsi_reply(const char *what) {
    struct pollfd p = {vs, POLLIN, 0};
    uint8_t buf[256];
    if (poll(&p, 1, 5000) != 1) {
        printf("%s: no reply\n", what);
        return;
    }
    ssize_t n = recv(vs, buf, sizeof buf, 0);
    if (n < 4) {
        printf("%s: short reply (%zd)\n", what, n);
        return;
    }
    int32_t r = (int32_t)(buf[0] | buf[1] << 8 | buf[2] << 16 | (uint32_t)buf[3] << 24);
    printf("%s: result %d%s%s\n", what, r, r < 0 ? " " : "", r < 0 ? strerror(-r) : "");
}

/* Drops replies the short requests may have caused. */
static void tsi_drain(void) {
    uint8_t buf[256];
    struct pollfd p = {vs, POLLIN, 0};
    while (poll(&p, 1, 500) == 1) (void)recv(vs, buf, sizeof buf, 0);
}

static void proxy_create(uint32_t peer, uint16_t family, uint16_t type) {
    uint8_t m[8];
    put32(m, peer);
    put16(m + 4, family);
    put16(m + 6, type);
    tsi_send(TSI_PROXY_CREATE, m, sizeof m);
}

/* A LISTEN request for proxy `peer` with `addr` (addr_len bytes); its
 * length. */
static size_t listen_req(uint8_t *m, uint32_t peer, const void *addr, uint32_t addr_len) {
    put32(m, peer);
    put32(m + 4, peer); /* vm_port: where accepted connections would go */
    put32(m + 8, 16);   /* backlog */
    put32(m + 12, addr_len);
    memcpy(m + 16, addr, addr_len);
    return 16 + addr_len;
}

static struct sockaddr_in inet(const char *ip, unsigned port) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, ip, &a.sin_addr);
    return a;
}

static void wait_for(const char *sync) {
    struct stat st;
    for (int i = 0; i < 600 && stat(sync, &st) != 0; i++) usleep(100000);
}

static void ordinary_listeners(int *keep, int *nkeep) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = inet("0.0.0.0", 0);
    int b = bind(s, (struct sockaddr *)&a, sizeof a) == 0;
    printf("tcp bind 0: %s", err(b));
    printf(", listen: %s\n", err(listen(s, 16) == 0));
    keep[(*nkeep)++] = s;

    s = socket(AF_INET, SOCK_STREAM, 0);
    printf("tcp listen without bind: %s\n", err(listen(s, 16) == 0));
    keep[(*nkeep)++] = s;

    s = socket(AF_INET, SOCK_STREAM, 0);
    a = inet("0.0.0.0", 9099);
    b = bind(s, (struct sockaddr *)&a, sizeof a) == 0;
    printf("tcp bind 9099: %s", err(b));
    printf(", listen: %s\n", err(listen(s, 16) == 0));
    keep[(*nkeep)++] = s;

    s = socket(AF_INET, SOCK_DGRAM, 0);
    a = inet("0.0.0.0", 5353);
    printf("udp bind 5353: %s\n", err(bind(s, (struct sockaddr *)&a, sizeof a) == 0));
    keep[(*nkeep)++] = s;
}

static void raw_tsi(const char *victim) {
    struct sockaddr_vm me;
    memset(&me, 0, sizeof me);
    me.svm_family = AF_VSOCK;
    me.svm_cid = VMADDR_CID_ANY;
    me.svm_port = VMADDR_PORT_ANY;
    vs = socket(AF_VSOCK, SOCK_DGRAM, 0);
    if (vs < 0 || bind(vs, (struct sockaddr *)&me, sizeof me) != 0) {
        printf("vsock datagram socket: %s\n", strerror(errno));
        return;
    }
    uint8_t m[512];
    /* Proxy ids far from the guest kernel's own (it counts up from 1024). */
    uint32_t peer = 0x7a000000;

    struct sockaddr_in any0 = inet("0.0.0.0", 0);
    proxy_create(++peer, AF_INET, SOCK_STREAM);
    tsi_send(TSI_LISTEN, m, listen_req(m, peer, &any0, sizeof any0));
    tsi_reply("raw listen 0.0.0.0:0");

    struct sockaddr_in any9099 = inet("0.0.0.0", 9099);
    proxy_create(++peer, AF_INET, SOCK_STREAM);
    tsi_send(TSI_LISTEN, m, listen_req(m, peer, &any9099, sizeof any9099));
    tsi_reply("raw listen 0.0.0.0:9099");

    struct sockaddr_un un;
    memset(&un, 0, sizeof un);
    un.sun_family = AF_UNIX;
    snprintf(un.sun_path, sizeof un.sun_path, "%s", victim);
    uint32_t un_len = (uint32_t)(offsetof(struct sockaddr_un, sun_path) + strlen(victim) + 1);
    proxy_create(++peer, AF_INET, SOCK_STREAM);
    tsi_send(TSI_LISTEN, m, listen_req(m, peer, &un, un_len));
    tsi_reply("raw listen sockaddr_un on an inet proxy");

    proxy_create(++peer, AF_UNIX, SOCK_STREAM);
    tsi_send(TSI_LISTEN, m, listen_req(m, peer, &un, un_len));
    tsi_reply("raw listen sockaddr_un on a unix proxy");

    /* addr_len says 128, the packet holds a sockaddr_in. */
    proxy_create(++peer, AF_INET, SOCK_STREAM);
    size_t n = listen_req(m, peer, &any9099, sizeof any9099);
    put32(m + 12, 128);
    tsi_send(TSI_LISTEN, m, n);
    tsi_reply("raw listen addr_len past the packet");

    /* Every request cut short at every length below a whole one. */
    struct sockaddr_in to = inet("192.0.2.1", 8082);
    proxy_create(++peer, AF_INET, SOCK_STREAM);
    struct {
        unsigned port;
        size_t len;
    } whole[] = {
        {TSI_PROXY_CREATE, 8}, {TSI_CONNECT, 8 + sizeof to}, {TSI_GETNAME, 16},
        {TSI_SENDTO_ADDR, 8 + sizeof to}, {TSI_SENDTO_DATA, 8}, {TSI_LISTEN, 16 + sizeof to},
        {TSI_ACCEPT, 8}, {TSI_PROXY_RELEASE, 8},
    };
    int shorts = 0;
    for (size_t i = 0; i < sizeof whole / sizeof whole[0]; i++) {
        memset(m, 0, sizeof m);
        put32(m, peer);
        put32(m + 4, whole[i].port == TSI_LISTEN ? peer : (uint32_t)sizeof to);
        if (whole[i].port == TSI_LISTEN) {
            listen_req(m, peer, &to, sizeof to);
        } else if (whole[i].port == TSI_CONNECT || whole[i].port == TSI_SENDTO_ADDR) {
            memcpy(m + 8, &to, sizeof to);
        }
        for (size_t len = 0; len < whole[i].len; len++, shorts++) tsi_send(whole[i].port, m, len);
    }
    tsi_drain();
    printf("short requests sent: %d\n", shorts);
}

static void contain(const char *sync, const char *victim) {
    int keep[16], nkeep = 0;
    ordinary_listeners(keep, &nkeep);
    raw_tsi(victim);
    printf("holding\n");
    fflush(stdout);
    wait_for(sync);
}

static void udp(const char *ip, unsigned port) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to = inet(ip, port);
    printf("sent: %s\n", err(sendto(s, "hello", 5, 0, (struct sockaddr *)&to, sizeof to) == 5));
    fflush(stdout);
    time_t end = time(NULL) + 40;
    while (time(NULL) < end) {
        struct pollfd p = {s, POLLIN, 0};
        if (poll(&p, 1, 1000) != 1) continue;
        char buf[256];
        ssize_t n = recv(s, buf, sizeof buf - 1, 0);
        if (n < 0) continue;
        buf[n] = 0;
        printf("got %s\n", buf);
        fflush(stdout);
        if (strcmp(buf, "from-peer") == 0) end = time(NULL) + 3;
    }
}

static int connect_to(const char *ip, unsigned port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) return -errno;
    struct sockaddr_in a = inet(ip, port);
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
        int e = errno;
        close(s);
        return -e;
    }
    return s;
}

static void many(int n, const char *ip, unsigned port, const char *sync) {
    struct rlimit r = {(rlim_t)n + 64, (rlim_t)n + 64};
    if (setrlimit(RLIMIT_NOFILE, &r) != 0) printf("setrlimit: %s\n", strerror(errno));
    int *fds = calloc((size_t)n, sizeof *fds);
    int ok = 0, errs[200] = {0};
    for (int i = 0; i < n; i++) {
        fds[i] = connect_to(ip, port);
        if (fds[i] >= 0) ok++;
        else if (-fds[i] < 200) errs[-fds[i]]++;
    }
    printf("opened %d: connected %d", n, ok);
    for (int e = 0; e < 200; e++)
        if (errs[e]) printf(", %s %d", strerror(e), errs[e]);
    printf("\nholding\n");
    fflush(stdout);
    wait_for(sync);
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0) close(fds[i]);
    /* The VMM frees a host socket when the guest's close reaches it as a
     * TSI release; a loaded L1 (CI, two boots at once) takes more than a
     * fixed 2 s for a thousand of them. Wait until one connects again, at
     * most 60 s: a socket the VMM never frees still fails below. */
    int waited_ms = 0;
    for (;;) {
        int s = connect_to(ip, port);
        if (s >= 0) {
            close(s);
            break;
        }
        if (waited_ms >= 60000)
            break;
        usleep(200 * 1000);
        waited_ms += 200;
    }
    printf("released within %d ms\n", waited_ms);
    int again = 0;
    for (int i = 0; i < 5; i++) {
        int s = connect_to(ip, port);
        if (s >= 0) {
            again++;
            close(s);
        } else {
            printf("after closing: %s\n", strerror(-s));
        }
    }
    printf("after closing: %d of 5 connected\n", again);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 4 && strcmp(argv[1], "contain") == 0) {
        contain(argv[2], argv[3]);
    } else if (argc == 4 && strcmp(argv[1], "udp") == 0) {
        udp(argv[2], (unsigned)atoi(argv[3]));
    } else if (argc == 6 && strcmp(argv[1], "many") == 0) {
        many(atoi(argv[2]), argv[3], (unsigned)atoi(argv[4]), argv[5]);
    } else {
        fprintf(stderr, "usage: see tests/harness/tsiprobe.c\n");
        return 2;
    }
    return 0;
}
