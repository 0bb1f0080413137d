/*
 * connload: closed-loop connection set-up load for CoAP over TCP and TLS (RFC 8323).
 *
 * Each of C connectors loops: TCP connect (non-blocking), with -S a TLS handshake
 * (ALPN "coap"; the certificate is not verified: loopback only), our CSM and one GET
 * sent at once (RFC 8323 section 3.3 lets the initiator send before the server's CSM),
 * wait for the server's CSM and the 2.05 (token and payload checked), send Release
 * (section 5.5), wait for the server to close, close, start again.  Every connection is
 * a new one: with -S every handshake is a full one, unless -R resumes the session of
 * a previous connection (the latest ticket or session the server gave, if it gives any).
 *
 *   connload -h 127.0.0.1 -p PORT [-c 16] [-d 3] [-w 1] [-u /hello] [-e Hello,...]
 *            [-S] [-R] [-t 5] [-r CYCLES]
 *
 * Prints one JSON line: cycles completed in the measured period, their rate, the
 * latency of a cycle (connect to the server's close) and of its answer (connect to
 * the 2.05), errors by kind, TLS resumptions, loadgen's own CPU.  Exit 0 without
 * errors, 1 with errors, 2 usage, 3 setup failure.
 *
 * Build: cc -O2 -Wall -o connload connload.c -lssl -lcrypto
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
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

#define MAX_CONNS 4096
#define RBUF 16384

enum { S_IDLE, S_CONNECTING, S_TLS, S_WAIT, S_RELEASED };

struct conn {
    int fd, state, want_out;
    SSL *ssl;
    uint64_t t_start, t_answer;
    uint8_t rbuf[RBUF];
    size_t rlen;
    uint8_t wbuf[512];
    size_t wlen, woff;
    int got_csm, got_resp;
    uint32_t token;
};

static const char *opt_host = "127.0.0.1";
static int opt_port, opt_conns = 16, opt_tls, opt_resume;
static double opt_duration = 3.0, opt_warmup = 1.0, opt_timeout = 5.0;
static uint64_t opt_max_cycles; /* -r: stop once this many cycles are done (0: no limit) */
static const char *opt_path = "/hello", *opt_expect = "Hello, world!";

static struct conn *conns;
static int epfd;
static struct sockaddr_in target;
static SSL_CTX *ctx;
static SSL_SESSION *saved_session;
static uint64_t t_meas_start, t_meas_end;
static volatile sig_atomic_t stop_signal;
static uint8_t request[256];
static size_t request_len, request_tok_off;
static uint32_t next_token = 1;

static struct {
    uint64_t cycles, cycles_total, resumed, handshakes;
    uint64_t err_connect, err_timeout, err_proto, err_closed_early, err_tls, err_bad_answer;
} st;

#define HIST 100000 /* 10 us buckets up to 1 s, then one overflow bucket */
static uint64_t hist_cycle[HIST + 1], hist_answer[HIST + 1];

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void record(uint64_t *hist, uint64_t ns)
{
    uint64_t b = ns / 10000;
    hist[b < HIST ? b : HIST]++;
}

static double percentile(const uint64_t *hist, double pct)
{
    uint64_t total = 0, seen = 0;
    for (int i = 0; i <= HIST; i++)
        total += hist[i];
    if (!total)
        return 0;
    uint64_t want = (uint64_t)(pct / 100.0 * (double)total);
    for (int i = 0; i <= HIST; i++) {
        seen += hist[i];
        if (seen > want)
            return i * 10.0 + 5.0;
    }
    return HIST * 10.0;
}

static uint64_t errors(void)
{
    return st.err_connect + st.err_timeout + st.err_proto + st.err_closed_early + st.err_tls +
           st.err_bad_answer;
}

/* -- frames (RFC 8323 section 3.2) ------------------------------------------------------ */

static size_t put_frame(uint8_t *out, uint8_t code, const uint8_t *tok, unsigned tkl,
                        const uint8_t *body, size_t blen)
{
    size_t n = 0;
    if (blen < 13) {
        out[n++] = (uint8_t)(blen << 4 | tkl);
    } else {
        out[n++] = (uint8_t)(13 << 4 | tkl);
        out[n++] = (uint8_t)(blen - 13);
    }
    out[n++] = code;
    memcpy(out + n, tok, tkl);
    n += tkl;
    memcpy(out + n, body, blen);
    return n + blen;
}

static void build_request(void)
{
    uint8_t body[200];
    size_t blen = 0;
    unsigned last = 0;
    const char *p = opt_path;
    while (*p) {
        while (*p == '/')
            p++;
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (!len)
            break;
        if (len >= 13 || blen + len + 2 > sizeof body) {
            fprintf(stderr, "connload: path segment too long\n");
            exit(2);
        }
        body[blen++] = (uint8_t)((11 - last) << 4 | len);
        memcpy(body + blen, p, len);
        blen += len;
        last = 11;
        p += len;
    }
    /* CSM (no options), then GET with a 4-byte token patched per connection */
    request_len = put_frame(request, 0xe1, NULL, 0, NULL, 0);
    uint8_t tok[4] = {0};
    request_tok_off = request_len + (blen < 13 ? 2 : 3);
    request_len += put_frame(request + request_len, 0x01, tok, 4, body, blen);
}

/* the payload of a message body (after its options), or NULL */
static const uint8_t *payload_of(const uint8_t *b, size_t len, size_t *plen)
{
    size_t i = 0;
    while (i < len) {
        uint8_t h = b[i++];
        if (h == 0xff) {
            *plen = len - i;
            return b + i;
        }
        unsigned d = h >> 4, l = h & 15;
        if (d == 13)
            i += 1;
        else if (d == 14)
            i += 2;
        else if (d == 15)
            return NULL;
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
        i += l;
    }
    *plen = 0;
    return b + len;
}

/* -- connections ------------------------------------------------------------------------- */

static void set_events(struct conn *c, int out)
{
    struct epoll_event ev = {.events = out ? EPOLLOUT : EPOLLIN, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = out;
}

static void conn_close(struct conn *c, int abortive)
{
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        if (abortive) {
            struct linger lg = {1, 0};
            setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        close(c->fd);
        c->fd = -1;
    }
    c->state = S_IDLE;
}

/* counted (after the warm-up), dropped with a reset; the main loop starts it again */
static void conn_fail(struct conn *c, uint64_t *counter, uint64_t t)
{
    if (t >= t_meas_start && t < t_meas_end)
        (*counter)++;
    conn_close(c, 1);
}

/* write what is queued; 0 done, 1 must wait, -1 failed */
static int conn_flush(struct conn *c)
{
    while (c->woff < c->wlen) {
        if (c->ssl) {
            int n = SSL_write(c->ssl, c->wbuf + c->woff, (int)(c->wlen - c->woff));
            if (n <= 0) {
                int err = SSL_get_error(c->ssl, n);
                if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ)
                    return 1;
                return -1;
            }
            c->woff += (size_t)n;
        } else {
            ssize_t n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                    return 1;
                return -1;
            }
            c->woff += (size_t)n;
        }
    }
    c->wlen = c->woff = 0;
    return 0;
}

static void queue_request(struct conn *c)
{
    memcpy(c->wbuf, request, request_len);
    uint32_t tok = c->token = next_token++;
    uint8_t *t = c->wbuf + request_tok_off;
    t[0] = (uint8_t)(tok >> 24), t[1] = (uint8_t)(tok >> 16), t[2] = (uint8_t)(tok >> 8),
    t[3] = (uint8_t)tok;
    c->wlen = request_len;
    c->woff = 0;
}

static void send_request(struct conn *c, uint64_t t)
{
    c->state = S_WAIT;
    c->got_csm = c->got_resp = 0;
    c->rlen = 0;
    queue_request(c);
    int r = conn_flush(c);
    if (r < 0) {
        conn_fail(c, &st.err_closed_early, t);
        return;
    }
    set_events(c, r == 1);
}

static void tls_step(struct conn *c, uint64_t t)
{
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        if (t >= t_meas_start && t < t_meas_end) {
            st.handshakes++;
            if (SSL_session_reused(c->ssl))
                st.resumed++;
        }
        send_request(c, t);
        return;
    }
    int err = SSL_get_error(c->ssl, r);
    if (err == SSL_ERROR_WANT_READ) {
        if (c->want_out)
            set_events(c, 0);
    } else if (err == SSL_ERROR_WANT_WRITE) {
        if (!c->want_out)
            set_events(c, 1);
    } else {
        if (st.err_tls < 3) {
            unsigned long e = ERR_get_error();
            fprintf(stderr, "connload: TLS handshake failed: %s\n",
                    e ? ERR_error_string(e, NULL) : "connection closed");
        }
        ERR_clear_error();
        conn_fail(c, &st.err_tls, t);
    }
}

static void conn_connected(struct conn *c, uint64_t t)
{
    int err = 0;
    socklen_t el = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err) {
        conn_fail(c, &st.err_connect, t);
        return;
    }
    if (!opt_tls) {
        send_request(c, t);
        return;
    }
    c->ssl = SSL_new(ctx);
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_connect_state(c->ssl);
    if (opt_resume && saved_session)
        SSL_set_session(c->ssl, saved_session);
    c->state = S_TLS;
    tls_step(c, t);
}

static int conn_start(struct conn *c, uint64_t t)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        perror("socket");
        return -1;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->t_start = t;
    c->state = S_CONNECTING;
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
    c->want_out = 1;
    if (connect(c->fd, (struct sockaddr *)&target, sizeof target) < 0 && errno != EINPROGRESS) {
        conn_fail(c, &st.err_connect, t);
        return 0;
    }
    return 0;
}

/* read what is there: >0 bytes added, 0 nothing now, -1 closed (EOF / reset / TLS end) */
static int conn_read(struct conn *c)
{
    int got = 0;
    for (;;) {
        if (c->rlen == RBUF)
            return got ? got : -2;
        if (c->ssl) {
            int n = SSL_read(c->ssl, c->rbuf + c->rlen, (int)(RBUF - c->rlen));
            if (n <= 0) {
                int err = SSL_get_error(c->ssl, n);
                ERR_clear_error();
                if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
                    return got;
                return got ? got : -1;
            }
            c->rlen += (size_t)n;
            got += n;
        } else {
            ssize_t n = recv(c->fd, c->rbuf + c->rlen, RBUF - c->rlen, 0);
            if (n < 0)
                return (errno == EAGAIN || errno == EINTR) ? got : (got ? got : -1);
            if (n == 0)
                return got ? got : -1;
            c->rlen += (size_t)n;
            got += (int)n;
        }
    }
}

/* parse complete frames; -1 on a protocol error */
static int conn_parse(struct conn *c)
{
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
            return -1;
        size_t total = 2 + ext + tkl + blen;
        if (total > RBUF)
            return -1;
        if (c->rlen - pos < total)
            break;
        uint8_t code = b[1 + ext];
        const uint8_t *tok = b + 2 + ext, *body = tok + tkl;
        pos += total;
        if (code == 0xe1) {
            c->got_csm = 1;
        } else if (code == 0xe2) { /* Ping: Pong */
            c->woff = 0;
            c->wlen = put_frame(c->wbuf, 0xe3, tok, tkl, NULL, 0);
            conn_flush(c);
        } else if (code == 0x00 || code == 0xe3) {
            /* empty, Pong: ignored */
        } else if (code == 0x45 && tkl == 4 && c->state == S_WAIT) {
            uint32_t t = (uint32_t)tok[0] << 24 | (uint32_t)tok[1] << 16 |
                         (uint32_t)tok[2] << 8 | tok[3];
            size_t plen;
            const uint8_t *pl = payload_of(body, blen, &plen);
            if (t != c->token || !pl || plen != strlen(opt_expect) ||
                memcmp(pl, opt_expect, plen))
                return -1;
            c->got_resp = 1;
        } else if (code == 0xe4 && c->state == S_RELEASED) {
            /* the server's own Release while closing: fine */
        } else {
            return -1;
        }
    }
    memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
    c->rlen -= pos;
    return 0;
}

static void conn_event(struct conn *c, uint64_t t)
{
    if (c->state == S_CONNECTING) {
        conn_connected(c, t);
        return;
    }
    if (c->state == S_TLS) {
        tls_step(c, t);
        return;
    }
    if (c->wlen) {
        int r = conn_flush(c);
        if (r < 0) {
            conn_fail(c, &st.err_closed_early, t);
            return;
        }
        if (r == 1)
            return;
        set_events(c, 0);
    }
    int n = conn_read(c);
    if (n == -2 || (n > 0 && conn_parse(c) < 0)) {
        conn_fail(c, &st.err_proto, t);
        return;
    }
    if (c->state == S_WAIT) {
        if (n == -1) {
            conn_fail(c, &st.err_closed_early, t);
            return;
        }
        if (c->got_csm && c->got_resp) {
            c->t_answer = t;
            c->woff = 0;
            c->wlen = put_frame(c->wbuf, 0xe4, NULL, 0, NULL, 0); /* Release */
            c->state = S_RELEASED;
            int r = conn_flush(c);
            if (r < 0) {
                conn_fail(c, &st.err_closed_early, t);
                return;
            }
            set_events(c, r == 1);
        }
    } else if (c->state == S_RELEASED && n == -1) {
        if (c->t_start >= t_meas_start && t < t_meas_end) {
            st.cycles++;
            record(hist_cycle, t - c->t_start);
            record(hist_answer, c->t_answer - c->t_start);
        }
        st.cycles_total++;
        conn_close(c, 0);
    }
}

static int new_session(SSL *ssl, SSL_SESSION *session)
{
    (void)ssl;
    if (saved_session)
        SSL_SESSION_free(saved_session);
    saved_session = session;
    return 1; /* we keep the reference */
}

static void on_signal(int sig)
{
    (void)sig;
    stop_signal = 1;
}

static void usage(const char *why)
{
    fprintf(stderr, "connload: %s\nusage: connload -h HOST -p PORT [-c CONNECTORS] [-d SECONDS] "
                    "[-w SECONDS] [-u PATH] [-e PAYLOAD] [-S] [-R] [-t TIMEOUT] [-r CYCLES]\n",
            why);
    exit(2);
}

int main(int argc, char **argv)
{
    int o;
    while ((o = getopt(argc, argv, "h:p:c:d:w:u:e:t:r:SR")) != -1) {
        switch (o) {
        case 'h': opt_host = optarg; break;
        case 'p': opt_port = atoi(optarg); break;
        case 'c': opt_conns = atoi(optarg); break;
        case 'd': opt_duration = atof(optarg); break;
        case 'w': opt_warmup = atof(optarg); break;
        case 'u': opt_path = optarg; break;
        case 'e': opt_expect = optarg; break;
        case 't': opt_timeout = atof(optarg); break;
        case 'r': opt_max_cycles = strtoull(optarg, NULL, 10); break;
        case 'S': opt_tls = 1; break;
        case 'R': opt_resume = 1; break;
        default: usage("unknown option");
        }
    }
    if (opt_port <= 0 || opt_port > 65535)
        usage("-p PORT is required");
    if (opt_conns < 1 || opt_conns > MAX_CONNS)
        usage("-c must be 1..4096");
    if (opt_duration <= 0 || opt_duration > 3600 || opt_warmup < 0 || opt_warmup > 3600 ||
        opt_timeout <= 0)
        usage("bad -d, -w or -t");
    if (opt_resume && !opt_tls)
        usage("-R needs -S");
    memset(&target, 0, sizeof target);
    target.sin_family = AF_INET;
    target.sin_port = htons((uint16_t)opt_port);
    if (inet_pton(AF_INET, opt_host, &target.sin_addr) != 1)
        usage("-h must be an IPv4 address");
    if ((ntohl(target.sin_addr.s_addr) >> 24) != 127)
        usage("only loopback targets (127.0.0.0/8)");
    build_request();
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    if (opt_tls) {
        ctx = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        static const unsigned char alpn[] = {4, 'c', 'o', 'a', 'p'};
        SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn);
        if (opt_resume) {
            SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
                                                    SSL_SESS_CACHE_NO_INTERNAL_STORE);
            SSL_CTX_sess_set_new_cb(ctx, new_session);
        } else {
            SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        }
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    conns = calloc((size_t)opt_conns, sizeof *conns);
    uint64_t t0 = now_ns();
    t_meas_start = t0 + (uint64_t)(opt_warmup * 1e9);
    t_meas_end = t_meas_start + (uint64_t)(opt_duration * 1e9);
    for (int i = 0; i < opt_conns; i++)
        conns[i].fd = -1;
    struct rusage ru0, ru1;
    int have_ru0 = 0;
    uint64_t timeout_ns = (uint64_t)(opt_timeout * 1e9), next_scan = t0;
    for (int i = 0; i < opt_conns && (!opt_max_cycles || (uint64_t)i < opt_max_cycles); i++)
        if (conn_start(&conns[i], t0) < 0)
            return 3;
    struct epoll_event evs[256];
    for (;;) {
        uint64_t t = now_ns();
        if (!have_ru0 && t >= t_meas_start) {
            getrusage(RUSAGE_SELF, &ru0);
            have_ru0 = 1;
        }
        if (t >= t_meas_end || stop_signal)
            break;
        if (t >= next_scan) { /* a connection stuck in any state: counted, dropped, redone */
            next_scan = t + 100000000ull;
            for (int i = 0; i < opt_conns; i++)
                if (conns[i].state != S_IDLE && t - conns[i].t_start > timeout_ns)
                    conn_fail(&conns[i], &st.err_timeout, t);
        }
        int n = epoll_wait(epfd, evs, 256, 50);
        if (n < 0 && errno != EINTR) {
            perror("epoll_wait");
            return 3;
        }
        t = now_ns();
        for (int k = 0; k < n; k++)
            conn_event(evs[k].data.ptr, t);
        uint64_t started = st.cycles_total;
        for (int i = 0; i < opt_conns; i++)
            started += conns[i].state != S_IDLE;
        for (int i = 0; i < opt_conns; i++) { /* closed loop: a finished connector starts again */
            if (conns[i].state != S_IDLE)
                continue;
            if (opt_max_cycles && started >= opt_max_cycles)
                continue;
            if (conn_start(&conns[i], t) < 0)
                return 3;
            started++;
        }
        if (opt_max_cycles && st.cycles_total >= opt_max_cycles)
            break;
    }
    getrusage(RUSAGE_SELF, &ru1);
    double cpu = 0;
    if (have_ru0)
        cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec -
                       ru0.ru_stime.tv_sec) +
              (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec -
                       ru0.ru_stime.tv_usec) / 1e6;
    printf("{\"status\":\"%s\",\"conns\":%d,\"tls\":%d,\"resume\":%d,\"duration_s\":%.3f,"
           "\"cycles\":%" PRIu64 ",\"cycles_total\":%" PRIu64 ",\"rate\":%.1f,\"p50_us\":%.0f,\"p90_us\":%.0f,"
           "\"p99_us\":%.0f,\"answer_p50_us\":%.0f,\"answer_p99_us\":%.0f,"
           "\"errors\":%" PRIu64 ",\"err_connect\":%" PRIu64 ",\"err_timeout\":%" PRIu64
           ",\"err_proto\":%" PRIu64 ",\"err_closed_early\":%" PRIu64 ",\"err_tls\":%" PRIu64
           ",\"handshakes\":%" PRIu64 ",\"resumed\":%" PRIu64 ",\"cpu_pct\":%.1f}\n",
           stop_signal ? "interrupted" : "ok", opt_conns, opt_tls, opt_resume, opt_duration,
           st.cycles, st.cycles_total, (double)st.cycles / opt_duration, percentile(hist_cycle, 50),
           percentile(hist_cycle, 90), percentile(hist_cycle, 99),
           percentile(hist_answer, 50), percentile(hist_answer, 99), errors(), st.err_connect,
           st.err_timeout, st.err_proto, st.err_closed_early, st.err_tls, st.handshakes,
           st.resumed, 100.0 * cpu / opt_duration);
    return errors() ? 1 : 0;
}
