/*
 * fanload: Observe fan-out load for CoAP over TCP (RFC 7641 over RFC 8323).
 *
 * Opens C connections (paced, -P at a time: libcoap listens with a backlog of 5), on
 * each sends its CSM and K GETs with Observe=0 for PATH (one token and one Uri-Query
 * "o=J" each, so that no server takes two of them for the same), and waits
 * until every registration is answered (2.05 with an Observe option; one without is
 * counted as declined).  A control connection then PUTs a new state to PATH every
 * PERIOD ms, N rounds after W warm-up rounds: the state is the round's number, so each
 * notification says which change it reports.  For every round it counts the observers
 * that got its state (each once) and the time from the PUT leaving loadgen to the last
 * of them; a server that falls behind may skip states (RFC 7641 section 3.4: eventual
 * consistency), so a round is complete only when all observers got that state.
 *
 *   fanload -h 127.0.0.1 -p PORT [-c 1000] [-k 10] [-u /obs] [-i 100] [-n 30] [-w 3]
 *           [-P 4] [-t 60]
 *
 * Prints one JSON line (notifications/s delivered in the measured rounds, complete
 * rounds, time to the last notification per round: median, 90th percentile and
 * maximum over complete rounds), exit 0 if every measured round was complete, 1
 * otherwise, 2 usage, 3 setup failure.
 *
 * Build: cc -O2 -Wall -o fanload fanload.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 20000
#define MAX_K 64
#define RBUF 65536
#define MAX_ROUNDS 10000

enum { C_IDLE, C_CONNECTING, C_SETUP, C_READY, C_DEAD };

struct conn {
    int fd, state, index, answered, control;
    uint8_t *rbuf;
    size_t rlen;
    uint8_t wbuf[2048];
    size_t wlen, woff;
};

static const char *opt_host = "127.0.0.1";
static int opt_port, opt_conns = 1000, opt_k = 10, opt_period_ms = 100, opt_rounds = 30,
           opt_warm = 3, opt_parallel = 4;
static double opt_setup_timeout = 60.0;
static const char *opt_path = "/obs";

static struct conn *conns, control;
static int epfd;
static struct sockaddr_in target;
static uint32_t *seen; /* per observer: the last round it got */
static uint64_t registered, declined, stale, put_answers, err_proto, err_closed;
static uint64_t delivered[MAX_ROUNDS + 1], t_put[MAX_ROUNDS + 1], t_last[MAX_ROUNDS + 1];
static uint32_t current_round;
static uint8_t path_opts[256];
static size_t path_len;
static volatile sig_atomic_t stop_signal;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static size_t put_frame(uint8_t *out, uint8_t code, const uint8_t *tok, unsigned tkl,
                        const uint8_t *body, size_t blen)
{
    size_t n = 0;
    if (blen < 13) {
        out[n++] = (uint8_t)(blen << 4 | tkl);
    } else if (blen < 269) {
        out[n++] = (uint8_t)(13 << 4 | tkl);
        out[n++] = (uint8_t)(blen - 13);
    } else {
        out[n++] = (uint8_t)(14 << 4 | tkl);
        out[n++] = (uint8_t)((blen - 269) >> 8);
        out[n++] = (uint8_t)(blen - 269);
    }
    out[n++] = code;
    memcpy(out + n, tok, tkl);
    n += tkl;
    memcpy(out + n, body, blen);
    return n + blen;
}

static void build_path(void)
{
    unsigned last = 0;
    const char *p = opt_path;
    while (*p) {
        while (*p == '/')
            p++;
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (!len)
            break;
        if (len >= 13 || path_len + len + 2 > sizeof path_opts) {
            fprintf(stderr, "fanload: path segment too long\n");
            exit(2);
        }
        path_opts[path_len++] = (uint8_t)((11 - last) << 4 | len);
        memcpy(path_opts + path_len, p, len);
        path_len += len;
        last = 11;
        p += len;
    }
}

/* options of a message body: *observe = 1 if Observe (6) is there; the payload */
static const uint8_t *parse_body(const uint8_t *b, size_t len, int *observe, size_t *plen)
{
    size_t i = 0;
    unsigned number = 0;
    *observe = 0;
    while (i < len) {
        uint8_t h = b[i++];
        if (h == 0xff) {
            *plen = len - i;
            return b + i;
        }
        unsigned d = h >> 4, l = h & 15;
        if (d == 13) {
            if (i >= len)
                return NULL;
            d = b[i++] + 13u;
        } else if (d == 14) {
            if (i + 1 >= len)
                return NULL;
            d = (unsigned)(b[i] << 8 | b[i + 1]) + 269u;
            i += 2;
        } else if (d == 15) {
            return NULL;
        }
        if (l == 13) {
            if (i >= len)
                return NULL;
            l = b[i++] + 13u;
        } else if (l == 14) {
            if (i + 1 >= len)
                return NULL;
            l = (unsigned)(b[i] << 8 | b[i + 1]) + 269u;
            i += 2;
        } else if (l == 15) {
            return NULL;
        }
        number += d;
        if (number == 6)
            *observe = 1;
        i += l;
    }
    *plen = 0;
    return b + len;
}

static void set_out(struct conn *c, int out)
{
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static int conn_flush(struct conn *c)
{
    while (c->woff < c->wlen) {
        ssize_t n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                set_out(c, 1);
                return 0;
            }
            return -1;
        }
        c->woff += (size_t)n;
    }
    c->wlen = c->woff = 0;
    return 0;
}

static void queue(struct conn *c, const uint8_t *data, size_t len)
{
    if (c->wlen + len > sizeof c->wbuf) {
        fprintf(stderr, "fanload: write buffer full\n");
        exit(3);
    }
    memcpy(c->wbuf + c->wlen, data, len);
    c->wlen += len;
}

static int conn_open(struct conn *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        perror("socket");
        return -1;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->rbuf = malloc(RBUF);
    c->state = C_CONNECTING;
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
    if (connect(c->fd, (struct sockaddr *)&target, sizeof target) < 0 && errno != EINPROGRESS) {
        perror("connect");
        return -1;
    }
    return 0;
}

static void send_put(uint32_t round)
{
    uint8_t body[300], frame[320];
    char text[16];
    int tl = snprintf(text, sizeof text, "%010u", round);
    size_t blen = 0;
    memcpy(body, path_opts, path_len);
    blen = path_len;
    body[blen++] = 0xff;
    memcpy(body + blen, text, (size_t)tl);
    blen += (size_t)tl;
    uint8_t tok[4] = {0xff, 0xff, (uint8_t)(round >> 8), (uint8_t)round};
    size_t n = put_frame(frame, 0x03, tok, 4, body, blen);
    queue(&control, frame, n);
    if (conn_flush(&control) < 0) {
        fprintf(stderr, "fanload: the control connection failed\n");
        exit(3);
    }
}

static void on_connected(struct conn *c)
{
    int err = 0;
    socklen_t el = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err) {
        fprintf(stderr, "fanload: connect: %s\n", strerror(err));
        c->state = C_DEAD;
        return;
    }
    c->state = C_SETUP;
    set_out(c, 0);
    uint8_t frame[300];
    queue(c, (const uint8_t *)"\x00\xe1", 2); /* CSM */
    if (!c->control) {
        uint8_t body[260];
        body[0] = 0x60; /* Observe (6), empty: 0 = register */
        /* Uri-Path (11) follows Observe: delta 5 for the first segment */
        memcpy(body + 1, path_opts, path_len);
        body[1] = (uint8_t)((path_opts[0] & 0x0f) | (5 << 4));
        for (int j = 0; j < opt_k; j++) {
            uint32_t t = (uint32_t)(c->index * MAX_K + j);
            uint8_t tok[4] = {(uint8_t)(t >> 24), (uint8_t)(t >> 16), (uint8_t)(t >> 8), (uint8_t)t};
            /* Uri-Query (15) "o=J": each observation of a connection is a different
             * request, so that servers keying observers by request (libcoap) keep all */
            char query[8];
            int ql = snprintf(query, sizeof query, "o=%d", j);
            size_t blen = 1 + path_len;
            body[blen++] = (uint8_t)(4 << 4 | ql);
            memcpy(body + blen, query, (size_t)ql);
            blen += (size_t)ql;
            size_t n = put_frame(frame, 0x01, tok, 4, body, blen);
            queue(c, frame, n);
        }
    }
    if (conn_flush(c) < 0)
        c->state = C_DEAD;
}

static int handle(struct conn *c, uint8_t code, const uint8_t *tok, unsigned tkl,
                  const uint8_t *body, size_t blen, uint64_t t)
{
    if (code == 0xe1 || code == 0x00 || code == 0xe3)
        return 0; /* CSM, empty, Pong */
    if (code == 0xe2) { /* Ping */
        uint8_t frame[32];
        size_t n = put_frame(frame, 0xe3, tok, tkl, NULL, 0);
        queue(c, frame, n);
        return conn_flush(c);
    }
    if (code == 0xe4 || code == 0xe5)
        return -1; /* Release, Abort */
    if (c->control) {
        if (code == 0x41 || code == 0x44)
            put_answers++;
        else
            return -1;
        return 0;
    }
    if (tkl != 4)
        return -1;
    uint32_t token = (uint32_t)tok[0] << 24 | (uint32_t)tok[1] << 16 | (uint32_t)tok[2] << 8 | tok[3];
    uint32_t conn_index = token / MAX_K, j = token % MAX_K;
    if ((int)conn_index != c->index || (int)j >= opt_k)
        return -1;
    uint32_t obs = conn_index * (uint32_t)opt_k + j;
    int observe;
    size_t plen;
    const uint8_t *pl = parse_body(body, blen, &observe, &plen);
    if (!pl || code != 0x45)
        return -1;
    if (c->state == C_SETUP && seen[obs] == UINT32_MAX) {
        seen[obs] = 0;
        c->answered++;
        if (observe)
            registered++;
        else
            declined++;
        if (c->answered == opt_k)
            c->state = C_READY;
        return 0;
    }
    uint32_t round = 0;
    for (size_t i = 0; i < plen; i++) {
        if (pl[i] < '0' || pl[i] > '9')
            return 0; /* the initial state, or another: not a round */
        round = round * 10 + (uint32_t)(pl[i] - '0');
    }
    if (round == 0 || round > MAX_ROUNDS)
        return 0;
    if (round <= seen[obs] || round < current_round) {
        stale++;
        if (round <= seen[obs])
            return 0;
    }
    seen[obs] = round;
    delivered[round]++;
    t_last[round] = t;
    return 0;
}

static int conn_input(struct conn *c, uint64_t t)
{
    for (;;) {
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, RBUF - c->rlen, 0);
        if (n < 0)
            return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
        if (n == 0)
            return -1;
        c->rlen += (size_t)n;
        size_t pos = 0;
        while (c->rlen - pos >= 2) {
            const uint8_t *b = c->rbuf + pos;
            unsigned nib = b[0] >> 4, tkl = b[0] & 15;
            size_t ext = nib == 13 ? 1 : nib == 14 ? 2 : nib == 15 ? 4 : 0;
            if (c->rlen - pos < 2 + ext)
                break;
            size_t blen = nib;
            if (nib == 13)
                blen = b[1] + 13u;
            else if (nib == 14)
                blen = (size_t)(b[1] << 8 | b[2]) + 269u;
            else if (nib == 15)
                return -2;
            size_t total = 2 + ext + tkl + blen;
            if (total > RBUF)
                return -2;
            if (c->rlen - pos < total)
                break;
            const uint8_t *tok = b + 2 + ext;
            if (handle(c, b[1 + ext], tok, tkl, tok + tkl, blen, t) < 0)
                return -2;
            pos += total;
        }
        memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
        c->rlen -= pos;
    }
}

static void event(struct conn *c, uint32_t ev, uint64_t t)
{
    if (c->state == C_CONNECTING) {
        on_connected(c);
        return;
    }
    if ((ev & EPOLLOUT) && c->wlen) {
        if (conn_flush(c) < 0) {
            c->state = C_DEAD;
            err_closed++;
            return;
        }
        if (!c->wlen)
            set_out(c, 0);
    }
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        int r = conn_input(c, t);
        if (r < 0) {
            if (r == -2)
                err_proto++;
            else
                err_closed++;
            epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
            close(c->fd);
            c->state = C_DEAD;
        }
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void on_signal(int sig)
{
    (void)sig;
    stop_signal = 1;
}

static void usage(const char *why)
{
    fprintf(stderr, "fanload: %s\nusage: fanload -h HOST -p PORT [-c CONNS] [-k OBSERVERS] "
                    "[-u PATH] [-i PERIOD_MS] [-n ROUNDS] [-w WARMUP_ROUNDS] [-P PARALLEL] "
                    "[-t SETUP_TIMEOUT]\n", why);
    exit(2);
}

static int poll_once(int timeout_ms)
{
    struct epoll_event evs[512];
    int n = epoll_wait(epfd, evs, 512, timeout_ms);
    if (n < 0 && errno != EINTR) {
        perror("epoll_wait");
        exit(3);
    }
    uint64_t t = now_ns();
    for (int i = 0; i < n; i++)
        event(evs[i].data.ptr, evs[i].events, t);
    return n;
}

int main(int argc, char **argv)
{
    int o;
    while ((o = getopt(argc, argv, "h:p:c:k:u:i:n:w:P:t:")) != -1) {
        switch (o) {
        case 'h': opt_host = optarg; break;
        case 'p': opt_port = atoi(optarg); break;
        case 'c': opt_conns = atoi(optarg); break;
        case 'k': opt_k = atoi(optarg); break;
        case 'u': opt_path = optarg; break;
        case 'i': opt_period_ms = atoi(optarg); break;
        case 'n': opt_rounds = atoi(optarg); break;
        case 'w': opt_warm = atoi(optarg); break;
        case 'P': opt_parallel = atoi(optarg); break;
        case 't': opt_setup_timeout = atof(optarg); break;
        default: usage("unknown option");
        }
    }
    if (opt_port <= 0 || opt_port > 65535)
        usage("-p PORT is required");
    if (opt_conns < 1 || opt_conns > MAX_CONNS || opt_k < 1 || opt_k > MAX_K)
        usage("-c must be 1..20000 and -k 1..64");
    if (opt_period_ms < 1 || opt_rounds < 1 || opt_warm < 0 ||
        opt_rounds + opt_warm > MAX_ROUNDS || opt_parallel < 1)
        usage("bad -i, -n, -w or -P");
    memset(&target, 0, sizeof target);
    target.sin_family = AF_INET;
    target.sin_port = htons((uint16_t)opt_port);
    if (inet_pton(AF_INET, opt_host, &target.sin_addr) != 1)
        usage("-h must be an IPv4 address");
    if ((ntohl(target.sin_addr.s_addr) >> 24) != 127)
        usage("only loopback targets (127.0.0.0/8)");
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < (rlim_t)opt_conns + 16) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    build_path();
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    conns = calloc((size_t)opt_conns, sizeof *conns);
    size_t observers = (size_t)opt_conns * (size_t)opt_k;
    seen = malloc(observers * sizeof *seen);
    for (size_t i = 0; i < observers; i++)
        seen[i] = UINT32_MAX;

    /* the control connection first: it sets the initial state (libcoap creates the
     * resource on this first PUT) */
    uint64_t t0 = now_ns(), deadline = t0 + (uint64_t)(opt_setup_timeout * 1e9);
    control.control = 1;
    control.index = -1;
    if (conn_open(&control) < 0)
        return 3;
    while (control.state != C_SETUP && control.state != C_DEAD && now_ns() < deadline)
        poll_once(10);
    if (control.state != C_SETUP) {
        fprintf(stderr, "fanload: the control connection failed\n");
        return 3;
    }
    uint8_t frame[320], body[300];
    memcpy(body, path_opts, path_len);
    body[path_len] = 0xff;
    body[path_len + 1] = '-';
    size_t n = put_frame(frame, 0x03, (const uint8_t *)"\xff\xff\x00\x00", 4, body, path_len + 2);
    queue(&control, frame, n);
    conn_flush(&control);
    while (put_answers < 1 && control.state != C_DEAD && now_ns() < deadline)
        poll_once(10);
    if (put_answers < 1) {
        fprintf(stderr, "fanload: the first PUT got no 2.01/2.04\n");
        return 3;
    }

    /* the observers, -P connections setting up at a time */
    int next = 0;
    for (;;) {
        int pending = 0, ready = 0, dead = 0;
        for (int i = 0; i < next; i++) {
            pending += conns[i].state == C_CONNECTING || conns[i].state == C_SETUP;
            ready += conns[i].state == C_READY;
            dead += conns[i].state == C_DEAD;
        }
        if (dead) {
            fprintf(stderr, "fanload: %d connections failed during set-up\n", dead);
            return 3;
        }
        if (ready == opt_conns)
            break;
        if (now_ns() > deadline) {
            fprintf(stderr, "fanload: %d of %d connections ready within %.0f s\n", ready,
                    opt_conns, opt_setup_timeout);
            return 3;
        }
        while (next < opt_conns && pending < opt_parallel) {
            conns[next].index = next;
            if (conn_open(&conns[next]) < 0)
                return 3;
            next++;
            pending++;
        }
        poll_once(10);
        if (stop_signal)
            return 3;
    }
    double setup_s = (double)(now_ns() - t0) / 1e9;

    /* the rounds */
    uint64_t period = (uint64_t)opt_period_ms * 1000000ull;
    int total_rounds = opt_warm + opt_rounds;
    uint64_t start = now_ns();
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    for (int r = 1; r <= total_rounds + 1 && !stop_signal; r++) {
        uint64_t due = start + (uint64_t)(r - 1) * period;
        if (r <= total_rounds) {
            current_round = (uint32_t)r;
            t_put[r] = now_ns();
            send_put((uint32_t)r);
        }
        uint64_t until = due + period;
        for (;;) {
            uint64_t t = now_ns();
            if (t >= until)
                break;
            int ms = (int)((until - t + 999999) / 1000000);
            poll_once(ms < 1 ? 1 : ms);
        }
    }
    getrusage(RUSAGE_SELF, &ru1);
    uint64_t measured = 0, complete = 0, expect = registered;
    uint64_t times[MAX_ROUNDS];
    size_t nt = 0;
    uint64_t min_delivered = UINT64_MAX;
    for (int r = opt_warm + 1; r <= total_rounds; r++) {
        measured += delivered[r];
        if (delivered[r] < min_delivered)
            min_delivered = delivered[r];
        if (delivered[r] >= expect) {
            complete++;
            times[nt++] = t_last[r] - t_put[r];
        }
    }
    qsort(times, nt, sizeof *times, cmp_u64);
    double secs = (double)opt_rounds * opt_period_ms / 1000.0;
    double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec -
                          ru0.ru_stime.tv_sec) +
                 (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec -
                          ru0.ru_stime.tv_usec) / 1e6;
    printf("{\"status\":\"ok\",\"conns\":%d,\"per_conn\":%d,\"observers\":%" PRIu64
           ",\"declined\":%" PRIu64 ",\"setup_s\":%.2f,\"period_ms\":%d,\"rounds\":%d,"
           "\"notifications\":%" PRIu64 ",\"expected\":%" PRIu64 ",\"notifications_per_s\":%.0f,"
           "\"complete_rounds\":%" PRIu64 ",\"min_delivered\":%" PRIu64 ",\"last_p50_ms\":%.2f,"
           "\"last_p90_ms\":%.2f,\"last_max_ms\":%.2f,\"stale\":%" PRIu64 ",\"err_proto\":%" PRIu64
           ",\"err_closed\":%" PRIu64 ",\"cpu_pct\":%.1f}\n",
           opt_conns, opt_k, registered, declined, setup_s, opt_period_ms, opt_rounds, measured,
           expect * (uint64_t)opt_rounds, (double)measured / secs, complete,
           min_delivered == UINT64_MAX ? 0 : min_delivered,
           nt ? (double)times[nt / 2] / 1e6 : -1.0, nt ? (double)times[nt * 9 / 10] / 1e6 : -1.0,
           nt ? (double)times[nt - 1] / 1e6 : -1.0, stale, err_proto, err_closed,
           100.0 * cpu / ((double)total_rounds * opt_period_ms / 1000.0));
    return complete == (uint64_t)opt_rounds && !err_proto && !err_closed ? 0 : 1;
}
