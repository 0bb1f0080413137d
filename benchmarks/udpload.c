/* udpload: a closed-loop CoAP-over-UDP load generator (RFC 7252), for benchmarks/udp.py.
 *
 * Each of -c sockets is connect()ed to the server (one client address each) and keeps -n
 * Confirmable GET requests in flight: every answer (a piggybacked ACK with the same
 * Message ID and token) is counted and replaced by a new request at once.  A request
 * unanswered after -t seconds counts as lost and is replaced (no RFC retransmission: a
 * benchmark measures the server, and a lost request shows as a loss).  After -w seconds
 * of warm-up it counts for -d seconds and prints one JSON line: requests/s, losses,
 * latency percentiles in microseconds.
 *
 * Usage: udpload -p PORT [-h 127.0.0.1] [-c SOCKETS] [-n IN_FLIGHT] [-d 3] [-w 1]
 *                [-t 2] [-u /hello]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_IN_FLIGHT 256
#define HIST 4096 /* latency buckets of 10 us: up to 40.96 ms, the rest in the last */

struct pending {
    uint16_t mid;
    uint64_t sent;
    int used;
};

struct sock {
    int fd;
    uint16_t next_mid;
    uint32_t next_token;
    struct pending slots[MAX_IN_FLIGHT];
};

static uint64_t hist[HIST];
static uint64_t answered, lost, unexpected;
static int counting;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint8_t path_opts[256];
static size_t path_len;

static void build_path(const char *path)
{
    unsigned last = 0;
    const char *p = path;
    while (*p == '/')
        p++;
    while (*p) {
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        unsigned delta = 11 - last;
        if (n > 12 || path_len + 1 + n > sizeof path_opts) {
            fprintf(stderr, "path segment too long\n");
            exit(2);
        }
        path_opts[path_len++] = (uint8_t)(delta << 4 | n);
        memcpy(path_opts + path_len, p, n);
        path_len += n;
        last = 11;
        p += n;
        while (*p == '/')
            p++;
    }
}

static void send_request(struct sock *s, int slot)
{
    uint8_t buf[300];
    uint16_t mid = s->next_mid++;
    uint32_t token = s->next_token++;
    buf[0] = 0x44; /* version 1, CON, TKL 4 */
    buf[1] = 0x01; /* GET */
    buf[2] = (uint8_t)(mid >> 8);
    buf[3] = (uint8_t)mid;
    buf[4] = (uint8_t)slot; /* the token's first byte names the slot */
    buf[5] = (uint8_t)(token >> 16);
    buf[6] = (uint8_t)(token >> 8);
    buf[7] = (uint8_t)token;
    memcpy(buf + 8, path_opts, path_len);
    s->slots[slot].mid = mid;
    s->slots[slot].sent = now_ns();
    s->slots[slot].used = 1;
    if (send(s->fd, buf, 8 + path_len, 0) < 0 && errno != EAGAIN && errno != ECONNREFUSED) {
        perror("send");
        exit(1);
    }
}

static void on_datagram(struct sock *s, const uint8_t *d, ssize_t n)
{
    if (n < 8 || (d[0] & 0xF0) != 0x60 || (d[0] & 0x0F) != 4) { /* ACK, TKL 4 */
        unexpected++;
        return;
    }
    int slot = d[4];
    uint16_t mid = (uint16_t)(d[2] << 8 | d[3]);
    if (slot >= MAX_IN_FLIGHT || !s->slots[slot].used || s->slots[slot].mid != mid) {
        unexpected++;
        return;
    }
    uint64_t took = (now_ns() - s->slots[slot].sent) / 10000; /* 10 us units */
    if (counting) {
        answered++;
        hist[took < HIST ? took : HIST - 1]++;
    }
    send_request(s, slot);
}

static double percentile(double pct)
{
    uint64_t total = 0, seen = 0;
    for (int i = 0; i < HIST; i++)
        total += hist[i];
    if (!total)
        return 0;
    for (int i = 0; i < HIST; i++) {
        seen += hist[i];
        if ((double)seen >= pct / 100.0 * (double)total)
            return (i + 0.5) * 10.0;
    }
    return HIST * 10.0;
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *path = "/hello";
    int port = 0, conns = 1, inflight = 1, opt;
    double duration = 3, warmup = 1, timeout = 2;
    while ((opt = getopt(argc, argv, "h:p:c:n:d:w:t:u:")) != -1) {
        switch (opt) {
        case 'h': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'c': conns = atoi(optarg); break;
        case 'n': inflight = atoi(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 'w': warmup = atof(optarg); break;
        case 't': timeout = atof(optarg); break;
        case 'u': path = optarg; break;
        default: fprintf(stderr, "bad option\n"); return 2;
        }
    }
    if (port <= 0 || conns < 1 || inflight < 1 || inflight > MAX_IN_FLIGHT) {
        fprintf(stderr, "usage: udpload -p PORT [-c N] [-n 1..%d] [-d S] [-w S] [-t S]\n",
                MAX_IN_FLIGHT);
        return 2;
    }
    build_path(path);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &to.sin_addr) != 1) {
        fprintf(stderr, "bad host %s\n", host);
        return 2;
    }
    int ep = epoll_create1(0);
    struct sock *socks = calloc((size_t)conns, sizeof *socks);
    srand((unsigned)now_ns());
    for (int i = 0; i < conns; i++) {
        socks[i].fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        if (socks[i].fd < 0 || connect(socks[i].fd, (struct sockaddr *)&to, sizeof to) < 0) {
            perror("socket");
            return 1;
        }
        socks[i].next_mid = (uint16_t)rand();
        socks[i].next_token = (uint32_t)rand();
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &socks[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, socks[i].fd, &ev);
        for (int k = 0; k < inflight; k++)
            send_request(&socks[i], k);
    }
    uint64_t start = now_ns();
    uint64_t begin = start + (uint64_t)(warmup * 1e9);
    uint64_t end = begin + (uint64_t)(duration * 1e9);
    uint64_t limit = (uint64_t)(timeout * 1e9), last_sweep = start;
    struct epoll_event events[64];
    uint8_t buf[2048];
    for (;;) {
        uint64_t now = now_ns();
        if (!counting && now >= begin)
            counting = 1;
        if (now >= end)
            break;
        int ready = epoll_wait(ep, events, 64, 10);
        for (int e = 0; e < ready; e++) {
            struct sock *s = events[e].data.ptr;
            ssize_t n;
            while ((n = recv(s->fd, buf, sizeof buf, 0)) >= 0)
                on_datagram(s, buf, n);
        }
        if (now - last_sweep > 100000000ull) { /* every 100 ms: replace lost requests */
            /* a fresh clock: requests sent while handling this turn's datagrams are
             * younger than `now` (unsigned: they would look ancient) */
            uint64_t t = now_ns();
            last_sweep = now;
            for (int i = 0; i < conns; i++)
                for (int k = 0; k < inflight; k++)
                    if (t - socks[i].slots[k].sent > limit) {
                        if (counting)
                            lost++;
                        send_request(&socks[i], k);
                    }
        }
    }
    printf("{\"conns\": %d, \"inflight\": %d, \"rps\": %.1f, \"answered\": %llu, "
           "\"lost\": %llu, \"unexpected\": %llu, \"p50_us\": %.0f, \"p99_us\": %.0f}\n",
           conns, inflight, (double)answered / duration, (unsigned long long)answered,
           (unsigned long long)lost, (unsigned long long)unexpected, percentile(50),
           percentile(99));
    return 0;
}
