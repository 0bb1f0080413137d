/*
 * loadgen.c - closed-loop load generator for CoAP over TCP, TLS and
 * WebSockets (RFC 8323).
 *
 * Opens C TCP connections to a loopback server, sends a CSM on each, waits
 * for the server's CSM, then keeps N GET requests in flight per connection.
 * With -S every connection is TLS (coaps+tcp: OpenSSL, TLS 1.2 or later,
 * ALPN "coap", the server's certificate is NOT verified); with -W each
 * connection is a WebSocket (coap+ws, RFC 8323 section 4: Upgrade GET to
 * /.well-known/coap, subprotocol "coap", one CoAP message per binary
 * message); -S -W together is coaps+ws.
 * Every response is matched to its request by token, checked (code 2.05,
 * optionally an exact payload) and immediately replaced by a new request.
 * After a warm-up period the responses of a measured period are counted and
 * their latencies recorded; at the end one JSON line goes to stdout.
 *
 * Build:  cc -O2 -o loadgen loadgen.c -lssl -lcrypto
 * Usage:  loadgen -h 127.0.0.1 -p PORT -c CONNS -n INFLIGHT -d SECONDS
 *                 -w WARMUP -u /path [-e expected_payload] [options]
 *
 * Only loopback targets (127.0.0.0/8, ::1) are accepted.  The run is bounded
 * in time (setup timeout + warm-up + duration) and in count (-r).
 *
 * Exit status: 0 run completed without errors, 1 run completed with errors
 * (see the JSON line), 2 usage error, 3 setup failed (JSON line still
 * printed when possible).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

/* ---- limits ------------------------------------------------------------ */
#define MAX_CONNS 4096
#define MAX_INFLIGHT 4096
#define MAX_SECONDS 3600.0
#define RBUF_INIT (64 * 1024)
#define RBUF_MAX (16 * 1024 * 1024) /* largest frame we accept */
#define TOKEN_LEN 4
#define MAX_DIAG 10 /* error diagnostics printed to stderr */

/* ---- CoAP codes -------------------------------------------------------- */
#define CODE_EMPTY 0x00
#define CODE_GET 0x01
#define CODE_CONTENT 0x45 /* 2.05 */
#define CODE_CSM 0xe1     /* 7.01 */
#define CODE_PING 0xe2    /* 7.02 */
#define CODE_PONG 0xe3    /* 7.03 */
#define CODE_RELEASE 0xe4 /* 7.04 */
#define CODE_ABORT 0xe5   /* 7.05 */
#define OPT_URI_PATH 11
#define OPT_MAX_MESSAGE_SIZE 2 /* in a CSM */

/* ---- latency histogram (log-linear, ~1.6% relative resolution) ---------- */
#define HIST_SUB_BITS 6
#define HIST_SUB (1u << HIST_SUB_BITS) /* 64 */
#define HIST_BUCKETS ((64 - HIST_SUB_BITS) * HIST_SUB + 2 * HIST_SUB)

static uint64_t hist[HIST_BUCKETS];

static unsigned hist_index(uint64_t v)
{
    if (v < 2 * HIST_SUB)
        return (unsigned)v;
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - HIST_SUB_BITS;
    return (unsigned)((shift << HIST_SUB_BITS) + (v >> shift));
}

static uint64_t hist_value(unsigned idx) /* midpoint of the bucket */
{
    if (idx < 2 * HIST_SUB)
        return idx;
    int shift = (int)(idx >> HIST_SUB_BITS) - 1;
    uint64_t mant = idx - ((unsigned)shift << HIST_SUB_BITS);
    return (mant << shift) + ((1ull << shift) >> 1);
}

static uint64_t hist_percentile(uint64_t total, double pct)
{
    if (total == 0)
        return 0;
    uint64_t rank = (uint64_t)((pct / 100.0) * (double)total + 0.5);
    if (rank < 1)
        rank = 1;
    if (rank > total)
        rank = total;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += hist[i];
        if (seen >= rank)
            return hist_value(i);
    }
    return hist_value(HIST_BUCKETS - 1);
}

/* ---- configuration ----------------------------------------------------- */
static const char *opt_host = "127.0.0.1";
static int opt_port = 0;
static int opt_conns = 1;
static int opt_inflight = 1;
static double opt_duration = 5.0;
static double opt_warmup = 1.0;
static double opt_setup_timeout = 10.0;
static double opt_req_timeout = 5.0;
static int opt_connect_parallel = 4;
static const char *opt_path = NULL;
static const char *opt_expect = NULL;
static size_t opt_expect_len = 0;
static long opt_max_msg_size = -1; /* -1: no Max-Message-Size option in CSM */
static int opt_wait_csm = 1;
static uint64_t opt_max_requests = 100000000ull;
static int opt_verbose = 0;
static int opt_tls = 0; /* -S: coaps+tcp (or coaps+ws with -W) */
static int opt_ws = 0;  /* -W: coap+ws (RFC 8323 section 4) */

/* -o NUM=TEXT / -o NUM=#UINT: further options of every request, e.g. Proxy-Uri (35)
 * or Proxy-Scheme (39) with Uri-Host (3) and Uri-Port (7) for a forward proxy
 * (RFC 7252 sections 5.10.2 and 5.7.2); sorted in with the Uri-Path options.
 * -V BASE,COUNT: "%v" in a value becomes BASE + (connection index mod COUNT), so
 * the connections spread over COUNT variants of the request (e.g. upstream ports). */
#define MAX_EXTRA_OPTS 16
#define MAX_OPT_VALUE 1034 /* the longest Proxy-Uri (RFC 7252 section 5.10) */
#define MAX_VARIANTS 1024
struct extra_opt {
    unsigned num;
    const char *raw; /* TEXT or #UINT, possibly with %v */
};
static struct extra_opt extra_opts[MAX_EXTRA_OPTS];
static int n_extra_opts = 0;
static unsigned long opt_var_base = 0;
static int opt_var_count = 1;

#define WS_PATH "/.well-known/coap"
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_HDR_MAX 16384 /* largest HTTP response header we accept */

/* ---- connection state --------------------------------------------------- */
enum cstate {
    C_IDLE,
    C_CONNECTING,
    C_TLS_HS,     /* -S: TLS handshake in progress */
    C_WS_UPGRADE, /* -W: waiting for the 101 Switching Protocols */
    C_WAIT_CSM,
    C_READY,
    C_RUNNING,
    C_DEAD
};

struct slot {
    uint32_t token; /* token of the request currently (or last) in this slot */
    uint32_t gen;   /* how often the slot was used (token = gen * N + slot) */
    int busy;
    uint64_t t_sent; /* ns, CLOCK_MONOTONIC */
};

struct conn {
    int idx;
    int fd;
    enum cstate state;
    int got_csm;
    int want_out; /* EPOLLOUT currently registered */
    uint8_t *rbuf;
    size_t rlen, rcap;
    uint8_t *wbuf;
    size_t woff, wlen, wcap;
    struct slot *slots;
    int inflight;
    uint64_t measured; /* valid responses in the measured window */
    int free_top;      /* stack of free slot indices */
    int *free_stack;
    uint64_t peer_max_msg_size;
    SSL *ssl;            /* -S only */
    int rd_wants_write;  /* SSL_read asked for writability */
    char ws_accept[32];  /* -W: expected Sec-WebSocket-Accept */
    uint8_t *mbuf;       /* -W: a fragmented message being reassembled */
    size_t mlen, mcap;
    int in_fragment;
};

static struct conn *conns;
static int epfd = -1;
/* The encoded request of each variant (-V; one without it): over TCP with its
 * frame header, the token at tok_off; with -W as a WebSocket message body (Len
 * nibble 0, no length field: RFC 8323 section 4.2), token at offset 2. */
struct req_variant {
    uint8_t *tmpl;
    size_t len, tok_off;
    uint8_t *ws;
    size_t ws_len;
};
static struct req_variant *variants;
static size_t req_len_max;
static SSL_CTX *ssl_ctx;
static volatile sig_atomic_t stop_signal;

/* ---- statistics --------------------------------------------------------- */
static struct {
    uint64_t sent;            /* requests written (all phases) */
    uint64_t responses;       /* valid responses (all phases) */
    uint64_t measured;        /* valid responses in measured window */
    uint64_t measured_errors; /* errors in measured window */
    uint64_t lat_sum_ns, lat_min_ns, lat_max_ns;
    uint64_t err_bad_token, err_bad_code, err_bad_payload, err_proto;
    uint64_t err_conn_closed, err_lost, err_release, err_abort, err_timeout;
    uint64_t csm_missing, err_stalled_conns;
    uint64_t sig_csm, sig_ping, sig_pong, sig_other, empty_msgs;
    uint64_t ws_ping, ws_pong, ws_fragmented; /* -W: WebSocket control/fragments */
} st;

static int diag_count;

static void diag(struct conn *c, const char *fmt, ...)
{
    if (diag_count >= MAX_DIAG && !opt_verbose)
        return;
    diag_count++;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loadgen: conn %d: ", c ? c->idx : -1);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double tv_s(struct timeval tv) { return (double)tv.tv_sec + (double)tv.tv_usec / 1e6; }

static void die_usage(const char *msg)
{
    if (msg)
        fprintf(stderr, "loadgen: %s\n", msg);
    fprintf(stderr,
            "usage: loadgen -h HOST -p PORT -u /path [-c CONNS] [-n INFLIGHT]\n"
            "               [-d SECONDS] [-w WARMUP] [-e EXPECTED_PAYLOAD]\n"
            "               [-m MAX_MESSAGE_SIZE] [-t SETUP_TIMEOUT] [-C]\n"
            "               [-r MAX_REQUESTS] [-T REQ_TIMEOUT] [-P PARALLEL] [-S] [-W] [-v]\n"
            "               [-o NUM=TEXT | -o NUM=#UINT ...] [-V BASE,COUNT]\n"
            "  -h HOST   loopback address to connect to (default 127.0.0.1)\n"
            "  -p PORT   TCP port (required)\n"
            "  -u PATH   Uri-Path of the GET requests, e.g. /hello (required)\n"
            "  -c N      connections (default 1, max %d)\n"
            "  -n N      requests in flight per connection (default 1, max %d)\n"
            "  -d S      measured duration in seconds (default 5)\n"
            "  -w S      warm-up seconds before measuring (default 1)\n"
            "  -e STR    expected response payload (checked byte for byte)\n"
            "  -m N      send Max-Message-Size N in our CSM\n"
            "  -t S      setup timeout: connect + server CSM (default 10)\n"
            "  -C        do not wait for the server's CSM before sending requests\n"
            "  -P N      connection setups (connect + server CSM) in parallel\n"
            "            (default 4; servers with a tiny listen backlog drop bursts)\n"
            "  -r N      stop issuing requests after N in total (default 1e8)\n"
            "  -T S      a request unanswered after S seconds counts as an error\n"
            "            (err_timeout) and its slot is reused (default 5)\n"
            "  -S        TLS (coaps+tcp; with -W coaps+ws): OpenSSL, TLS 1.2 or later,\n"
            "            ALPN \"coap\" (not with -W); the certificate is NOT verified\n"
            "  -W        WebSocket (coap+ws, RFC 8323 section 4): GET " WS_PATH "\n"
            "            with subprotocol \"coap\", one CoAP message per binary message\n"
            "  -v        print every error diagnostic, not just the first %d\n"
            "  -o N=TEXT add option number N with TEXT as its value to every request;\n"
            "            N=#UINT: an integer value (shortest big-endian form); repeatable\n"
            "            (up to %d), e.g. -o 35=coap://127.0.0.1:5683/hello (Proxy-Uri)\n"
            "  -V B,K    in -o values, %%v is B + (connection index mod K): the\n"
            "            connections spread over K variants (K up to %d)\n",
            MAX_CONNS, MAX_INFLIGHT, MAX_DIAG, MAX_EXTRA_OPTS, MAX_VARIANTS);
    exit(2);
}

/* ---- encoding ------------------------------------------------------------ */

/* Append one option (delta/length encoding of RFC 7252 section 3.1). */
static size_t put_option(uint8_t *out, unsigned delta, const uint8_t *val, size_t len)
{
    size_t o = 1;
    uint8_t dn, ln;
    uint8_t ext[4];
    size_t ne = 0;
    if (delta < 13) {
        dn = (uint8_t)delta;
    } else if (delta < 269) {
        dn = 13;
        ext[ne++] = (uint8_t)(delta - 13);
    } else {
        dn = 14;
        ext[ne++] = (uint8_t)((delta - 269) >> 8);
        ext[ne++] = (uint8_t)(delta - 269);
    }
    if (len < 13) {
        ln = (uint8_t)len;
    } else if (len < 269) {
        ln = 13;
        ext[ne++] = (uint8_t)(len - 13);
    } else {
        ln = 14;
        ext[ne++] = (uint8_t)((len - 269) >> 8);
        ext[ne++] = (uint8_t)(len - 269);
    }
    out[0] = (uint8_t)(dn << 4 | ln);
    memcpy(out + 1, ext, ne);
    o += ne;
    memcpy(out + o, val, len);
    return o + len;
}

/* Frame header: Len nibble + TKL, extended length, code. Returns bytes written. */
static size_t put_frame_header(uint8_t *out, size_t body_len, unsigned tkl, uint8_t code)
{
    size_t o = 1;
    if (body_len < 13) {
        out[0] = (uint8_t)(body_len << 4 | tkl);
    } else if (body_len < 269) {
        out[0] = (uint8_t)(13 << 4 | tkl);
        out[o++] = (uint8_t)(body_len - 13);
    } else if (body_len < 65805) {
        out[0] = (uint8_t)(14 << 4 | tkl);
        out[o++] = (uint8_t)((body_len - 269) >> 8);
        out[o++] = (uint8_t)(body_len - 269);
    } else {
        uint32_t v = (uint32_t)(body_len - 65805);
        out[0] = (uint8_t)(15 << 4 | tkl);
        out[o++] = (uint8_t)(v >> 24);
        out[o++] = (uint8_t)(v >> 16);
        out[o++] = (uint8_t)(v >> 8);
        out[o++] = (uint8_t)v;
    }
    out[o++] = code;
    return o;
}

/* -o NUM=TEXT or NUM=#UINT (see usage); the value is checked when encoded */
static void parse_extra_option(const char *arg)
{
    if (n_extra_opts >= MAX_EXTRA_OPTS)
        die_usage("too many -o options");
    char *end;
    errno = 0;
    unsigned long num = strtoul(arg, &end, 10);
    if (end == arg || *end != '=' || errno || num == 0 || num > 65535)
        die_usage("-o needs NUM=TEXT or NUM=#UINT with NUM 1-65535");
    extra_opts[n_extra_opts].num = (unsigned)num;
    extra_opts[n_extra_opts].raw = end + 1;
    n_extra_opts++;
}

/* -V BASE,COUNT */
static void parse_variants(const char *arg)
{
    char *end;
    errno = 0;
    unsigned long base = strtoul(arg, &end, 10);
    if (end == arg || *end != ',' || errno || base > 0xffffffffUL)
        die_usage("-V needs BASE,COUNT");
    const char *c = end + 1;
    long count = strtol(c, &end, 10);
    if (end == c || *end || count < 1 || count > MAX_VARIANTS ||
        base + (unsigned long)count - 1 > 0xffffffffUL)
        die_usage("-V needs BASE,COUNT with COUNT 1-1024");
    opt_var_base = base;
    opt_var_count = (int)count;
}

/* The value of an -o option for variant value v ("%v" replaced); returns its length. */
static size_t encode_extra_value(const char *raw, unsigned long v, uint8_t *out)
{
    char text[MAX_OPT_VALUE + 1];
    char num[16];
    size_t len = 0;
    int nl = snprintf(num, sizeof num, "%lu", v);
    for (const char *p = raw; *p; p++) {
        if (p[0] == '%' && p[1] == 'v') {
            if (len + (size_t)nl > MAX_OPT_VALUE)
                die_usage("-o value too long");
            memcpy(text + len, num, (size_t)nl);
            len += (size_t)nl;
            p++;
        } else {
            if (len + 1 > MAX_OPT_VALUE)
                die_usage("-o value too long");
            text[len++] = *p;
        }
    }
    text[len] = '\0';
    if (text[0] != '#') {
        memcpy(out, text, len);
        return len;
    }
    char *end;
    errno = 0;
    unsigned long long u = strtoull(text + 1, &end, 10);
    if (end == text + 1 || *end || errno || u > 0xffffffffull || text[1] == '-')
        die_usage("-o NUM=#UINT needs an integer 0-4294967295");
    size_t ol = 0;
    for (int sh = 24; sh >= 0; sh -= 8) /* shortest form: 0 is the empty value */
        if (ol || (u >> sh) & 0xff)
            out[ol++] = (uint8_t)(u >> sh);
    return ol;
}

struct opt_ref {
    unsigned num;
    const uint8_t *val;
    size_t len;
};

static void build_request_template(struct req_variant *rv, unsigned long v)
{
    static uint8_t opts[MAX_EXTRA_OPTS * (MAX_OPT_VALUE + 8) + 4096];
    static uint8_t values[MAX_EXTRA_OPTS][MAX_OPT_VALUE];
    struct opt_ref refs[MAX_EXTRA_OPTS + 256];
    int nref = 0;
    size_t olen = 0, path_bytes = 0;
    unsigned last = 0;
    for (int i = 0; i < n_extra_opts; i++) {
        size_t vl = encode_extra_value(extra_opts[i].raw, v, values[i]);
        refs[nref++] = (struct opt_ref){extra_opts[i].num, values[i], vl};
    }
    const char *p = opt_path;
    while (*p) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        const char *e = strchr(p, '/');
        size_t seglen = e ? (size_t)(e - p) : strlen(p);
        path_bytes += seglen + 8;
        if (seglen > 255 || path_bytes > 4096 || nref >= MAX_EXTRA_OPTS + 256)
            die_usage("path too long");
        refs[nref++] = (struct opt_ref){OPT_URI_PATH, (const uint8_t *)p, seglen};
        p += seglen;
    }
    /* stable insertion sort by number: repeated options keep their order */
    for (int i = 1; i < nref; i++) {
        struct opt_ref r = refs[i];
        int j = i - 1;
        while (j >= 0 && refs[j].num > r.num) {
            refs[j + 1] = refs[j];
            j--;
        }
        refs[j + 1] = r;
    }
    for (int i = 0; i < nref; i++) {
        olen += put_option(opts + olen, refs[i].num - last, refs[i].val, refs[i].len);
        last = refs[i].num;
    }
    rv->tmpl = malloc(olen + 16);
    rv->ws = malloc(olen + 2 + TOKEN_LEN);
    if (!rv->tmpl || !rv->ws) {
        perror("malloc");
        exit(3);
    }
    size_t h = put_frame_header(rv->tmpl, olen, TOKEN_LEN, CODE_GET);
    rv->tok_off = h;
    memset(rv->tmpl + h, 0, TOKEN_LEN);
    memcpy(rv->tmpl + h + TOKEN_LEN, opts, olen);
    rv->len = h + TOKEN_LEN + olen;
    rv->ws[0] = TOKEN_LEN; /* Len 0, TKL */
    rv->ws[1] = CODE_GET;
    memset(rv->ws + 2, 0, TOKEN_LEN);
    memcpy(rv->ws + 2 + TOKEN_LEN, opts, olen);
    rv->ws_len = 2 + TOKEN_LEN + olen;
    if (rv->len > req_len_max)
        req_len_max = rv->len;
}

/* ---- output buffer ------------------------------------------------------- */

static void wbuf_append(struct conn *c, const uint8_t *data, size_t len)
{
    if (c->woff > 0 && c->woff == c->wlen)
        c->woff = c->wlen = 0;
    if (c->wlen + len > c->wcap) {
        if (c->woff > 0) { /* compact first */
            memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
            c->wlen -= c->woff;
            c->woff = 0;
        }
        while (c->wlen + len > c->wcap)
            c->wcap *= 2;
        c->wbuf = realloc(c->wbuf, c->wcap);
        if (!c->wbuf) {
            perror("realloc");
            exit(3);
        }
    }
    memcpy(c->wbuf + c->wlen, data, len);
    c->wlen += len;
}

/* ---- WebSocket output (RFC 6455 section 5) ------------------------------ */

static uint32_t ws_rng = 2463534242u;

static uint32_t ws_mask_key(void) /* xorshift32: a fresh key for every frame */
{
    ws_rng ^= ws_rng << 13;
    ws_rng ^= ws_rng >> 17;
    ws_rng ^= ws_rng << 5;
    return ws_rng;
}

/* Append one complete, masked client frame (FIN set) to the output buffer. */
static void ws_append_frame(struct conn *c, uint8_t opcode, const uint8_t *payload, size_t len)
{
    uint8_t h[14];
    size_t hl = 0;
    h[hl++] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        h[hl++] = (uint8_t)(0x80 | len);
    } else if (len < 65536) {
        h[hl++] = 0x80 | 126;
        h[hl++] = (uint8_t)(len >> 8);
        h[hl++] = (uint8_t)len;
    } else {
        h[hl++] = 0x80 | 127;
        for (int sh = 56; sh >= 0; sh -= 8)
            h[hl++] = (uint8_t)((uint64_t)len >> sh);
    }
    uint32_t key = ws_mask_key();
    uint8_t mk[4] = {(uint8_t)(key >> 24), (uint8_t)(key >> 16), (uint8_t)(key >> 8), (uint8_t)key};
    memcpy(h + hl, mk, 4);
    wbuf_append(c, h, hl + 4);
    size_t start = c->wlen;
    wbuf_append(c, payload, len);
    uint8_t *q = c->wbuf + start;
    for (size_t i = 0; i < len; i++)
        q[i] ^= mk[i & 3];
}

/* Append one CoAP message as a binary WebSocket message (RFC 8323 4.2). */
static void ws_append_coap(struct conn *c, uint8_t code, const uint8_t *tok, unsigned tkl,
                           const uint8_t *body, size_t blen)
{
    uint8_t m[64];
    if (2 + tkl + blen > sizeof m) {
        fprintf(stderr, "loadgen: internal error: message too long\n");
        exit(3);
    }
    m[0] = (uint8_t)tkl;
    m[1] = code;
    memcpy(m + 2, tok, tkl);
    if (blen)
        memcpy(m + 2 + tkl, body, blen);
    ws_append_frame(c, 0x2, m, 2 + tkl + blen);
}

static void set_epoll(struct conn *c, int want_out)
{
    if (c->fd < 0 || c->want_out == want_out)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        perror("epoll_ctl MOD");
    c->want_out = want_out;
}

static void conn_kill(struct conn *c, const char *why);

/* Describe OpenSSL's error queue (and clear it) for a diagnostic. */
static const char *ssl_errstr(int err)
{
    static char buf[256];
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, buf, sizeof buf);
    else if (err == SSL_ERROR_SYSCALL)
        snprintf(buf, sizeof buf, "%s", errno ? strerror(errno) : "EOF");
    else
        snprintf(buf, sizeof buf, "SSL error %d", err);
    ERR_clear_error();
    return buf;
}

/* -S: SSL_write the output buffer.  Partial writes and a moving buffer are
 * allowed (SSL_MODE_*), so a retry after WANT_WRITE simply passes the rest
 * of the (possibly grown and compacted) buffer. */
static int tls_flush(struct conn *c)
{
    while (c->woff < c->wlen) {
        size_t len = c->wlen - c->woff;
        int n = SSL_write(c->ssl, c->wbuf + c->woff, len > INT32_MAX ? INT32_MAX : (int)len);
        if (n > 0) {
            c->woff += (size_t)n;
            continue;
        }
        int err = SSL_get_error(c->ssl, n);
        if (err == SSL_ERROR_WANT_WRITE) {
            set_epoll(c, 1);
            return 0;
        }
        if (err == SSL_ERROR_WANT_READ) /* retried after the next read */
            return 0;
        st.err_conn_closed++;
        conn_kill(c, ssl_errstr(err));
        return -1;
    }
    c->woff = c->wlen = 0;
    set_epoll(c, c->rd_wants_write);
    return 0;
}

/* Write as much of the output buffer as the socket takes. Returns -1 if the
 * connection died. */
static int conn_flush(struct conn *c)
{
    if (c->ssl)
        return tls_flush(c);
    while (c->woff < c->wlen) {
        ssize_t n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
        if (n > 0) {
            c->woff += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_epoll(c, 1);
            return 0;
        }
        st.err_conn_closed++;
        conn_kill(c, n < 0 ? strerror(errno) : "send returned 0");
        return -1;
    }
    c->woff = c->wlen = 0;
    set_epoll(c, 0);
    return 0;
}

static void conn_kill(struct conn *c, const char *why)
{
    if (c->state == C_DEAD)
        return;
    diag(c, "connection closed: %s (%d requests in flight lost)", why, c->inflight);
    st.err_lost += (uint64_t)c->inflight;
    c->inflight = 0;
    c->state = C_DEAD;
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
}

static int sending_allowed = 1;

static void issue_request(struct conn *c, uint64_t t)
{
    int s = c->free_stack[--c->free_top];
    struct slot *sl = &c->slots[s];
    /* Tokens of slot s are s, s+N, s+2N, ...: unique per connection (until
     * 2^32 requests) and token % N gives the slot back in O(1). */
    uint64_t tk = (uint64_t)sl->gen * (uint64_t)opt_inflight + (uint64_t)s;
    if (tk > UINT32_MAX) { /* wrap around (after ~2^32 requests) */
        sl->gen = 0;
        tk = (uint64_t)s;
    }
    sl->gen++;
    sl->token = (uint32_t)tk;
    sl->busy = 1;
    sl->t_sent = t;
    struct req_variant *rv = &variants[c->idx % opt_var_count];
    uint8_t *tok = opt_ws ? rv->ws + 2 : rv->tmpl + rv->tok_off;
    tok[0] = (uint8_t)(sl->token >> 24);
    tok[1] = (uint8_t)(sl->token >> 16);
    tok[2] = (uint8_t)(sl->token >> 8);
    tok[3] = (uint8_t)sl->token;
    if (opt_ws)
        ws_append_frame(c, 0x2, rv->ws, rv->ws_len);
    else
        wbuf_append(c, rv->tmpl, rv->len);
    c->inflight++;
    st.sent++;
    if (st.sent >= opt_max_requests)
        sending_allowed = 0;
}

static void fill_pipeline(struct conn *c, uint64_t t)
{
    while (sending_allowed && c->free_top > 0)
        issue_request(c, t);
}

static uint64_t t_warm_end, t_meas_end;
static void count_error(uint64_t t);

/* Give up on requests older than the request timeout: count them, free the
 * slot (a late response then no longer matches: err_bad_token) and send a
 * replacement, so that one lost response cannot stall a connection. */
static void expire_requests(struct conn *c, uint64_t t, uint64_t limit_ns)
{
    if (c->state != C_RUNNING || c->inflight == 0)
        return;
    int expired = 0;
    for (int s = 0; s < opt_inflight; s++) {
        struct slot *sl = &c->slots[s];
        if (sl->busy && t - sl->t_sent > limit_ns) {
            sl->busy = 0;
            c->inflight--;
            c->free_stack[c->free_top++] = s;
            st.err_timeout++;
            count_error(t);
            expired++;
        }
    }
    if (expired) {
        diag(c, "%d requests unanswered after %.1fs", expired, opt_req_timeout);
        if (t < t_meas_end)
            fill_pipeline(c, t);
    }
}

/* ---- response processing ------------------------------------------------ */

/* Find the payload of a message body (options + marker + payload).
 * Returns 0 on success, -1 if the options are malformed. */
static int find_payload(const uint8_t *b, size_t len, const uint8_t **pl, size_t *pllen)
{
    size_t i = 0;
    while (i < len) {
        uint8_t h = b[i++];
        if (h == 0xff) {
            if (i == len)
                return -1; /* marker followed by empty payload is an error */
            *pl = b + i;
            *pllen = len - i;
            return 0;
        }
        unsigned dn = h >> 4, ln = h & 0x0f;
        size_t olen;
        if (dn == 15 || ln == 15)
            return -1;
        if (dn == 13)
            i += 1;
        else if (dn == 14)
            i += 2;
        if (ln == 13) {
            if (i + 1 > len)
                return -1;
            olen = (size_t)b[i] + 13;
            i += 1;
        } else if (ln == 14) {
            if (i + 2 > len)
                return -1;
            olen = ((size_t)b[i] << 8 | b[i + 1]) + 269;
            i += 2;
        } else {
            olen = ln;
        }
        if (i > len || olen > len - i)
            return -1;
        i += olen;
    }
    *pl = b + len;
    *pllen = 0;
    return 0;
}

static void parse_csm(struct conn *c, const uint8_t *b, size_t len)
{
    size_t i = 0;
    unsigned num = 0;
    while (i < len && b[i] != 0xff) {
        uint8_t h = b[i++];
        unsigned dn = h >> 4, ln = h & 0x0f, delta;
        size_t olen;
        if (dn == 15 || ln == 15)
            return;
        if (dn == 13) {
            if (i + 1 > len)
                return;
            delta = b[i] + 13u;
            i += 1;
        } else if (dn == 14) {
            if (i + 2 > len)
                return;
            delta = ((unsigned)b[i] << 8 | b[i + 1]) + 269u;
            i += 2;
        } else {
            delta = dn;
        }
        if (ln == 13) {
            if (i + 1 > len)
                return;
            olen = (size_t)b[i] + 13;
            i += 1;
        } else if (ln == 14) {
            if (i + 2 > len)
                return;
            olen = ((size_t)b[i] << 8 | b[i + 1]) + 269;
            i += 2;
        } else {
            olen = ln;
        }
        if (olen > len - i)
            return;
        num += delta;
        if (num == OPT_MAX_MESSAGE_SIZE && olen <= 8) {
            uint64_t v = 0;
            for (size_t k = 0; k < olen; k++)
                v = v << 8 | b[i + k];
            c->peer_max_msg_size = v;
        }
        i += olen;
    }
}

static void count_error(uint64_t t)
{
    if (t >= t_warm_end && t < t_meas_end)
        st.measured_errors++;
}

/* Handle one complete frame. Returns -1 if the connection must be dropped. */
static int handle_frame(struct conn *c, uint8_t code, const uint8_t *tok, unsigned tkl,
                        const uint8_t *body, size_t blen, uint64_t t)
{
    if ((code >> 5) == 7) { /* signaling */
        switch (code) {
        case CODE_CSM:
            st.sig_csm++;
            c->got_csm = 1;
            parse_csm(c, body, blen);
            if (c->state == C_WAIT_CSM)
                c->state = C_READY;
            break;
        case CODE_PING: { /* must be answered with a Pong carrying its token */
            st.sig_ping++;
            if (opt_ws) {
                ws_append_coap(c, CODE_PONG, tok, tkl, NULL, 0);
                break;
            }
            uint8_t pong[16];
            size_t h = put_frame_header(pong, 0, tkl, CODE_PONG);
            memcpy(pong + h, tok, tkl);
            wbuf_append(c, pong, h + tkl);
            break;
        }
        case CODE_PONG:
            st.sig_pong++;
            break;
        case CODE_RELEASE:
            st.err_release++;
            count_error(t);
            diag(c, "server sent Release (7.04)");
            break;
        case CODE_ABORT:
            st.err_abort++;
            count_error(t);
            diag(c, "server sent Abort (7.05)");
            return -1;
        default:
            st.sig_other++;
            break;
        }
        return 0;
    }
    if (code == CODE_EMPTY) {
        st.empty_msgs++; /* RFC 8323 3.4: silently ignored */
        return 0;
    }
    if (tkl != TOKEN_LEN) {
        st.err_bad_token++;
        count_error(t);
        diag(c, "response code %d.%02d with token length %u (expected %d)", code >> 5,
             code & 31, tkl, TOKEN_LEN);
        return 0;
    }
    uint32_t token = (uint32_t)tok[0] << 24 | (uint32_t)tok[1] << 16 | (uint32_t)tok[2] << 8 | tok[3];
    unsigned s = token % (unsigned)opt_inflight;
    struct slot *sl = &c->slots[s];
    if (!sl->busy || sl->token != token) {
        st.err_bad_token++;
        count_error(t);
        diag(c, "response code %d.%02d for token %08" PRIx32 " which is not in flight",
             code >> 5, code & 31, token);
        return 0;
    }
    sl->busy = 0;
    c->inflight--;
    c->free_stack[c->free_top++] = (int)s;

    int ok = 1;
    if (code != CODE_CONTENT) {
        st.err_bad_code++;
        ok = 0;
        diag(c, "response code %d.%02d (expected 2.05)", code >> 5, code & 31);
    } else if (opt_expect) {
        const uint8_t *pl;
        size_t pllen;
        if (find_payload(body, blen, &pl, &pllen) < 0) {
            st.err_proto++;
            ok = 0;
            diag(c, "malformed options in response");
        } else if (pllen != opt_expect_len || memcmp(pl, opt_expect, pllen) != 0) {
            st.err_bad_payload++;
            ok = 0;
            diag(c, "payload mismatch: got %zu bytes \"%.*s\"", pllen,
                 (int)(pllen > 60 ? 60 : pllen), (const char *)pl);
        }
    }
    if (!ok) {
        count_error(t);
    } else {
        st.responses++;
        if (t >= t_warm_end && t < t_meas_end) {
            uint64_t lat = t - sl->t_sent;
            st.measured++;
            c->measured++;
            st.lat_sum_ns += lat;
            if (lat < st.lat_min_ns)
                st.lat_min_ns = lat;
            if (lat > st.lat_max_ns)
                st.lat_max_ns = lat;
            hist[hist_index(lat)]++;
        }
    }
    if (c->state == C_RUNNING && t < t_meas_end)
        fill_pipeline(c, t);
    return 0;
}

/* Parse all complete frames in the read buffer. */
static size_t rbuf_fit(struct conn *c, size_t off, size_t flen);

static int conn_parse(struct conn *c)
{
    size_t off = 0;
    uint64_t t = now_ns();
    while (off < c->rlen) {
        const uint8_t *p = c->rbuf + off;
        size_t avail = c->rlen - off;
        unsigned ln = p[0] >> 4, tkl = p[0] & 0x0f;
        size_t ext = ln == 13 ? 1 : ln == 14 ? 2 : ln == 15 ? 4 : 0;
        if (avail < 1 + ext + 1)
            break;
        size_t blen;
        if (ln < 13)
            blen = ln;
        else if (ln == 13)
            blen = (size_t)p[1] + 13;
        else if (ln == 14)
            blen = ((size_t)p[1] << 8 | p[2]) + 269;
        else
            blen = ((size_t)p[1] << 24 | (size_t)p[2] << 16 | (size_t)p[3] << 8 | p[4]) + 65805;
        if (tkl > 8) {
            st.err_proto++;
            count_error(t);
            conn_kill(c, "protocol error: TKL > 8");
            return -1;
        }
        size_t flen = 1 + ext + 1 + tkl + blen;
        if (flen > RBUF_MAX) {
            st.err_proto++;
            count_error(t);
            conn_kill(c, "protocol error: frame larger than 16 MiB");
            return -1;
        }
        if (avail < flen) {
            off = rbuf_fit(c, off, flen); /* make room for a large frame */
            break;
        }
        uint8_t code = p[1 + ext];
        const uint8_t *tok = p + 2 + ext;
        if (handle_frame(c, code, tok, tkl, tok + tkl, blen, t) < 0) {
            conn_kill(c, "aborted by server");
            return -1;
        }
        off += flen;
    }
    if (off > 0) {
        memmove(c->rbuf, c->rbuf + off, c->rlen - off);
        c->rlen -= off;
    }
    return 0;
}

/* Make room in the read buffer for a frame of flen bytes that starts at
 * off; moves the partial frame to the front.  Returns the new offset. */
static size_t rbuf_fit(struct conn *c, size_t off, size_t flen)
{
    size_t avail = c->rlen - off;
    if (flen > c->rcap) {
        size_t ncap = c->rcap;
        while (ncap < flen)
            ncap *= 2;
        if (off > 0) {
            memmove(c->rbuf, c->rbuf + off, avail);
            c->rlen = avail;
            off = 0;
        }
        c->rbuf = realloc(c->rbuf, ncap);
        if (!c->rbuf) {
            perror("realloc");
            exit(3);
        }
        c->rcap = ncap;
    }
    return off;
}

/* -W: one complete WebSocket message = one CoAP message (RFC 8323 4.2:
 * Len nibble 0, TKL, code, token, options and payload). */
static int ws_message(struct conn *c, const uint8_t *m, size_t len, uint64_t t)
{
    if (len < 2 || (m[0] >> 4) != 0 || (m[0] & 0x0f) > 8 || len < 2u + (m[0] & 0x0fu)) {
        st.err_proto++;
        count_error(t);
        conn_kill(c, len < 2 ? "protocol error: WebSocket message shorter than 2 bytes"
                  : (m[0] >> 4) ? "protocol error: Len nibble not 0 in a WebSocket message"
                                : "protocol error: bad TKL in a WebSocket message");
        return -1;
    }
    unsigned tkl = m[0] & 0x0f;
    if (handle_frame(c, m[1], m + 2, tkl, m + 2 + tkl, len - 2 - tkl, t) < 0) {
        conn_kill(c, "aborted by server");
        return -1;
    }
    return 0;
}

static int ws_proto_error(struct conn *c, uint64_t t, const char *why)
{
    st.err_proto++;
    count_error(t);
    conn_kill(c, why);
    return -1;
}

/* -W: parse all complete WebSocket frames in the read buffer (RFC 6455
 * section 5.2): 7/16/64-bit lengths, fragmented binary messages (control
 * frames may come between the fragments), Ping (answered with a Pong of the
 * same payload), Pong (ignored), Close (the connection is lost). */
static int ws_input(struct conn *c)
{
    size_t off = 0;
    uint64_t t = now_ns();
    while (off < c->rlen) {
        const uint8_t *p = c->rbuf + off;
        size_t avail = c->rlen - off;
        if (avail < 2)
            break;
        unsigned l7 = p[1] & 0x7f;
        size_t hl = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0);
        if (avail < hl)
            break;
        uint64_t plen = l7;
        if (l7 == 126)
            plen = (uint64_t)p[2] << 8 | p[3];
        else if (l7 == 127) {
            plen = 0;
            for (int k = 0; k < 8; k++)
                plen = plen << 8 | p[2 + k];
        }
        unsigned fin = p[0] & 0x80, op = p[0] & 0x0f;
        if (p[0] & 0x70)
            return ws_proto_error(c, t, "protocol error: WebSocket RSV bits set");
        if (p[1] & 0x80)
            return ws_proto_error(c, t, "protocol error: masked frame from the server");
        if (plen > RBUF_MAX)
            return ws_proto_error(c, t, "protocol error: WebSocket frame larger than 16 MiB");
        if ((op & 0x8) && (!fin || plen > 125))
            return ws_proto_error(c, t, "protocol error: fragmented or long control frame");
        size_t flen = hl + (size_t)plen;
        if (avail < flen) {
            off = rbuf_fit(c, off, flen);
            break;
        }
        const uint8_t *pl = p + hl;
        switch (op) {
        case 0x2: /* binary */
            if (c->in_fragment)
                return ws_proto_error(c, t, "protocol error: new message inside a fragmented one");
            if (fin) {
                if (ws_message(c, pl, (size_t)plen, t) < 0)
                    return -1;
                break;
            }
            c->in_fragment = 1;
            c->mlen = 0;
            /* the first fragment is kept below */
            /* fall through */
        case 0x0: /* continuation */
            if (!c->in_fragment)
                return ws_proto_error(c, t, "protocol error: continuation without a message");
            if (c->mlen + plen > RBUF_MAX)
                return ws_proto_error(c, t, "protocol error: WebSocket message larger than 16 MiB");
            if (c->mlen + plen > c->mcap) {
                size_t ncap = c->mcap ? c->mcap : 4096;
                while (ncap < c->mlen + plen)
                    ncap *= 2;
                c->mbuf = realloc(c->mbuf, ncap);
                if (!c->mbuf) {
                    perror("realloc");
                    exit(3);
                }
                c->mcap = ncap;
            }
            memcpy(c->mbuf + c->mlen, pl, (size_t)plen);
            c->mlen += (size_t)plen;
            if (fin && op == 0x0) {
                c->in_fragment = 0;
                st.ws_fragmented++;
                if (ws_message(c, c->mbuf, c->mlen, t) < 0)
                    return -1;
            }
            break;
        case 0x1:
            return ws_proto_error(c, t, "protocol error: text WebSocket message");
        case 0x8: { /* close: the server ends the connection */
            char why[96];
            if (plen >= 2)
                snprintf(why, sizeof why, "closed by server (WebSocket close %u \"%.*s\")",
                         (unsigned)pl[0] << 8 | pl[1], (int)(plen - 2 > 40 ? 40 : plen - 2),
                         (const char *)pl + 2);
            else
                snprintf(why, sizeof why, "closed by server (WebSocket close)");
            st.err_conn_closed++;
            count_error(t);
            conn_kill(c, why);
            return -1;
        }
        case 0x9: /* ping: answer with a pong carrying the same payload */
            st.ws_ping++;
            ws_append_frame(c, 0xA, pl, (size_t)plen);
            break;
        case 0xA:
            st.ws_pong++;
            break;
        default:
            return ws_proto_error(c, t, "protocol error: unknown WebSocket opcode");
        }
        off += flen;
    }
    if (off > 0) {
        memmove(c->rbuf, c->rbuf + off, c->rlen - off);
        c->rlen -= off;
    }
    return 0;
}

/* Value of header `name` (lower case) in an HTTP header block, or NULL;
 * the value is copied (trimmed) into out. */
static const char *http_header(const char *hdr, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    const char *line = strstr(hdr, "\r\n");
    while (line && line[2] != '\r') {
        line += 2;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1, *e = strstr(v, "\r\n");
            while (*v == ' ' || *v == '\t')
                v++;
            while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
            size_t n = (size_t)(e - v) < outlen - 1 ? (size_t)(e - v) : outlen - 1;
            memcpy(out, v, n);
            out[n] = 0;
            return out;
        }
        line = strstr(line, "\r\n");
    }
    return NULL;
}

static void ws_append_csm(struct conn *c);

/* -W: the server's answer to the Upgrade request: 101, Upgrade: websocket,
 * Connection: Upgrade, the Sec-WebSocket-Accept for our key (RFC 6455 4.1)
 * and Sec-WebSocket-Protocol: coap (RFC 8323 4.1).  What follows the header
 * is WebSocket frames. */
static int ws_upgrade_input(struct conn *c)
{
    uint8_t *e = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
    if (!e) {
        if (c->rlen > WS_HDR_MAX) {
            st.err_proto++;
            conn_kill(c, "WebSocket upgrade: HTTP response header too long");
            return -1;
        }
        return 0;
    }
    size_t hlen = (size_t)(e - c->rbuf) + 4;
    char *hdr = malloc(hlen + 1);
    memcpy(hdr, c->rbuf, hlen);
    hdr[hlen] = 0;
    char v[128];
    const char *bad = NULL;
    if (strncmp(hdr, "HTTP/1.1 101", 12) != 0)
        bad = "status is not 101";
    else if (!http_header(hdr, "upgrade", v, sizeof v) || strcasecmp(v, "websocket") != 0)
        bad = "no Upgrade: websocket";
    else if (!http_header(hdr, "connection", v, sizeof v) || !strcasestr(v, "upgrade"))
        bad = "no Connection: Upgrade";
    else if (!http_header(hdr, "sec-websocket-accept", v, sizeof v) || strcmp(v, c->ws_accept) != 0)
        bad = "wrong or missing Sec-WebSocket-Accept";
    else if (!http_header(hdr, "sec-websocket-protocol", v, sizeof v) || strcmp(v, "coap") != 0)
        bad = "subprotocol \"coap\" not selected";
    if (bad) {
        char why[200];
        const char *eol = strstr(hdr, "\r\n");
        snprintf(why, sizeof why, "WebSocket upgrade refused: %s (\"%.*s\")", bad,
                 (int)(eol - hdr > 80 ? 80 : eol - hdr), hdr);
        free(hdr);
        st.err_proto++;
        conn_kill(c, why);
        return -1;
    }
    free(hdr);
    memmove(c->rbuf, c->rbuf + hlen, c->rlen - hlen);
    c->rlen -= hlen;
    c->state = opt_wait_csm ? C_WAIT_CSM : C_READY;
    ws_append_csm(c);
    return c->rlen ? ws_input(c) : 0;
}

/* Bytes arrived in the read buffer: hand them to the right parser. */
static int conn_input(struct conn *c)
{
    if (!opt_ws)
        return conn_parse(c);
    if (c->state == C_WS_UPGRADE)
        return ws_upgrade_input(c);
    return ws_input(c);
}

/* Double the read buffer (up to RBUF_MAX; beyond, the connection is killed). */
static int grow_rbuf(struct conn *c)
{
    if (c->rcap >= RBUF_MAX) {
        st.err_proto++;
        conn_kill(c, "read buffer overflow");
        return -1;
    }
    c->rcap *= 2;
    c->rbuf = realloc(c->rbuf, c->rcap);
    if (!c->rbuf) {
        perror("realloc");
        exit(3);
    }
    return 0;
}

/* -S: SSL_read until OpenSSL wants more from the socket.  (One record per
 * call, so a short read says nothing about the socket being drained.) */
static int tls_read(struct conn *c)
{
    c->rd_wants_write = 0;
    for (;;) {
        if (c->rlen == c->rcap && grow_rbuf(c) < 0)
            return -1;
        size_t space = c->rcap - c->rlen;
        int n = SSL_read(c->ssl, c->rbuf + c->rlen, space > INT32_MAX ? INT32_MAX : (int)space);
        if (n > 0) {
            c->rlen += (size_t)n;
            if (conn_input(c) < 0)
                return -1;
            continue;
        }
        int err = SSL_get_error(c->ssl, n);
        if (err == SSL_ERROR_WANT_READ)
            return 0;
        if (err == SSL_ERROR_WANT_WRITE) {
            c->rd_wants_write = 1;
            set_epoll(c, 1);
            return 0;
        }
        st.err_conn_closed++;
        count_error(now_ns());
        conn_kill(c, err == SSL_ERROR_ZERO_RETURN ? "closed by server (TLS close_notify)"
                     : err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && (n == 0 || errno == 0)
                         ? "closed by server (EOF)"
                         : ssl_errstr(err));
        return -1;
    }
}

static int conn_read(struct conn *c)
{
    if (c->ssl)
        return tls_read(c);
    for (;;) {
        /* a full buffer cannot happen here: conn_parse grows it to fit a frame */
        if (c->rlen == c->rcap && grow_rbuf(c) < 0)
            return -1;
        size_t space = c->rcap - c->rlen;
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, space, 0);
        if (n > 0) {
            c->rlen += (size_t)n;
            if (conn_input(c) < 0)
                return -1;
            if ((size_t)n < space) /* short read: socket drained for now */
                return 0;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        st.err_conn_closed++;
        count_error(now_ns());
        conn_kill(c, n == 0 ? "closed by server (EOF)" : strerror(errno));
        return -1;
    }
}

/* ---- setup --------------------------------------------------------------- */

static struct addrinfo *target;
static uint8_t csm[32];
static size_t csm_len;
static uint8_t ws_csm[32]; /* -W: the CSM as a WebSocket message body */
static size_t ws_csm_len;
static char host_header[80];

static void ws_append_csm(struct conn *c) { ws_append_frame(c, 0x2, ws_csm, ws_csm_len); }

/* -W: queue the opening handshake (RFC 6455 4.1, RFC 8323 4.1) with a fresh
 * key, and remember the Sec-WebSocket-Accept the server must answer. */
static int ws_start_upgrade(struct conn *c)
{
    uint8_t raw[16];
    char key[32], req[512];
    if (RAND_bytes(raw, sizeof raw) != 1) {
        fprintf(stderr, "loadgen: RAND_bytes failed\n");
        return -1;
    }
    EVP_EncodeBlock((unsigned char *)key, raw, sizeof raw);
    char cat[96];
    snprintf(cat, sizeof cat, "%s%s", key, WS_GUID);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    if (!EVP_Digest(cat, strlen(cat), md, &mdlen, EVP_sha1(), NULL)) {
        fprintf(stderr, "loadgen: SHA-1 failed\n");
        return -1;
    }
    EVP_EncodeBlock((unsigned char *)c->ws_accept, md, (int)mdlen);
    int n = snprintf(req, sizeof req,
                     "GET " WS_PATH " HTTP/1.1\r\n"
                     "Host: %s\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "Sec-WebSocket-Protocol: coap\r\n"
                     "\r\n",
                     host_header, key);
    wbuf_append(c, (const uint8_t *)req, (size_t)n);
    c->state = C_WS_UPGRADE;
    return 0;
}

/* What follows the TCP connect (and the TLS handshake): the CSM, or the
 * WebSocket upgrade (the CSM then follows the 101). */
static int conn_after_handshake(struct conn *c)
{
    if (opt_ws)
        return ws_start_upgrade(c);
    wbuf_append(c, csm, csm_len);
    c->state = opt_wait_csm ? C_WAIT_CSM : C_READY;
    return 0;
}

/* The TCP connect completed. */
static int conn_connected(struct conn *c)
{
    if (!opt_tls && !opt_ws) { /* coap+tcp: the CSM was queued in conn_start */
        c->state = opt_wait_csm ? C_WAIT_CSM : C_READY;
        return 0;
    }
    if (!opt_tls)
        return conn_after_handshake(c);
    c->ssl = SSL_new(ssl_ctx);
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1) {
        fprintf(stderr, "loadgen: SSL_new: %s\n", ssl_errstr(0));
        return -1;
    }
    SSL_set_connect_state(c->ssl);
    c->state = C_TLS_HS;
    return 0;
}

/* -S: drive the TLS handshake; once done, queue what follows it. */
static int tls_handshake(struct conn *c)
{
    int r = SSL_do_handshake(c->ssl);
    if (r == 1)
        return conn_after_handshake(c);
    int err = SSL_get_error(c->ssl, r);
    if (err == SSL_ERROR_WANT_READ) {
        set_epoll(c, 0);
        return 0;
    }
    if (err == SSL_ERROR_WANT_WRITE) {
        set_epoll(c, 1);
        return 0;
    }
    char why[300];
    snprintf(why, sizeof why, "TLS handshake failed: %s", ssl_errstr(err));
    st.err_conn_closed++;
    conn_kill(c, why);
    return -1;
}

/* Start a non-blocking connect; the CSM is queued to go out first. */
static int conn_start(struct conn *c)
{
    c->fd = socket(target->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        perror("socket");
        return -1;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int r = connect(c->fd, target->ai_addr, target->ai_addrlen);
    if (r < 0 && errno != EINPROGRESS) {
        fprintf(stderr, "loadgen: connect to %s:%d: %s\n", opt_host, opt_port, strerror(errno));
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    c->state = C_CONNECTING;
    c->want_out = 1;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        perror("epoll_ctl ADD");
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    if (!opt_tls && !opt_ws)
        wbuf_append(c, csm, csm_len);
    return 0;
}

static int is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        return (ntohl(s4->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        return IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr);
    }
    return 0;
}

static void on_signal(int sig)
{
    (void)sig;
    stop_signal = 1;
}

static double parse_double(const char *s, const char *what)
{
    char *end;
    double v = strtod(s, &end);
    if (*s == 0 || *end != 0 || v != v) {
        fprintf(stderr, "loadgen: bad %s: %s\n", what, s);
        exit(2);
    }
    return v;
}

static long parse_long(const char *s, const char *what)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == 0 || *end != 0) {
        fprintf(stderr, "loadgen: bad %s: %s\n", what, s);
        exit(2);
    }
    return v;
}

static uint64_t total_errors(void)
{
    return st.err_bad_token + st.err_bad_code + st.err_bad_payload + st.err_proto +
           st.err_conn_closed + st.err_lost + st.err_release + st.err_abort + st.err_timeout +
           st.err_stalled_conns;
}

static void ju(const char *k, uint64_t v) { printf(",\"%s\":%" PRIu64, k, v); }
static void jf(const char *k, double v, int prec) { printf(",\"%s\":%.*f", k, prec, v); }

static void print_result(const char *status, double measured_s, double cpu_u, double cpu_s)
{
    double rps = measured_s > 0 ? (double)st.measured / measured_s : 0.0;
    double mean_us = st.measured ? (double)st.lat_sum_ns / (double)st.measured / 1e3 : 0.0;
    printf("{\"status\":\"%s\",\"conns\":%d,\"inflight\":%d,\"path\":\"", status, opt_conns,
           opt_inflight);
    for (const char *p = opt_path; *p; p++) { /* minimal JSON escaping */
        if (*p == '"' || *p == '\\')
            putchar('\\');
        if ((unsigned char)*p >= 0x20)
            putchar(*p);
    }
    putchar('"');
    jf("warmup_s", opt_warmup, 3);
    jf("duration_s", measured_s, 3);
    ju("requests", st.measured); /* valid responses in the measured window */
    ju("errors", total_errors());  /* all errors, warm-up included */
    ju("errors_measured", st.measured_errors);
    jf("rps", rps, 1);
    jf("p50_us", hist_percentile(st.measured, 50) / 1e3, 1);
    jf("p90_us", hist_percentile(st.measured, 90) / 1e3, 1);
    jf("p99_us", hist_percentile(st.measured, 99) / 1e3, 1);
    jf("p999_us", hist_percentile(st.measured, 99.9) / 1e3, 1);
    jf("min_us", st.measured ? st.lat_min_ns / 1e3 : 0.0, 1);
    jf("max_us", st.lat_max_ns / 1e3, 1);
    jf("mean_us", mean_us, 1);
    jf("cpu_user_s", cpu_u, 3);
    jf("cpu_sys_s", cpu_s, 3);
    jf("cpu_pct", measured_s > 0 ? 100.0 * (cpu_u + cpu_s) / measured_s : 0.0, 1);
    ju("total_sent", st.sent);
    ju("total_ok", st.responses);
    ju("err_bad_token", st.err_bad_token);
    ju("err_bad_code", st.err_bad_code);
    ju("err_bad_payload", st.err_bad_payload);
    ju("err_proto", st.err_proto);
    ju("err_conn_closed", st.err_conn_closed);
    ju("err_lost", st.err_lost);
    ju("err_release", st.err_release);
    ju("err_abort", st.err_abort);
    ju("err_timeout", st.err_timeout);
    ju("err_stalled_conns", st.err_stalled_conns);
    ju("csm_missing", st.csm_missing);
    ju("sig_csm", st.sig_csm);
    ju("sig_ping", st.sig_ping);
    ju("sig_other", st.sig_other);
    ju("empty_msgs", st.empty_msgs);
    ju("peer_max_msg_size", conns ? conns[0].peer_max_msg_size : 0);
    if (opt_tls || opt_ws) { /* only in these modes: the TCP line stays as it was */
        printf(",\"transport\":\"%s\"", opt_tls ? (opt_ws ? "wss" : "tls") : "ws");
        if (opt_tls) {
            const char *ver = "", *cipher = "";
            const unsigned char *alpn = NULL;
            unsigned alpn_len = 0;
            for (int i = 0; conns && i < opt_conns; i++)
                if (conns[i].ssl) {
                    ver = SSL_get_version(conns[i].ssl);
                    cipher = SSL_get_cipher_name(conns[i].ssl);
                    SSL_get0_alpn_selected(conns[i].ssl, &alpn, &alpn_len);
                    break;
                }
            printf(",\"tls_version\":\"%s\",\"tls_cipher\":\"%s\",\"alpn\":\"%.*s\"", ver,
                   cipher ? cipher : "", (int)alpn_len, alpn ? (const char *)alpn : "");
        }
        if (opt_ws) {
            ju("ws_ping", st.ws_ping);
            ju("ws_pong", st.ws_pong);
            ju("ws_fragmented", st.ws_fragmented);
        }
    }
    printf("}\n");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    int ch;
    while ((ch = getopt(argc, argv, "h:p:c:n:d:w:u:e:m:t:r:T:P:o:V:CSWv?")) != -1) {
        switch (ch) {
        case 'h': opt_host = optarg; break;
        case 'p': opt_port = (int)parse_long(optarg, "port"); break;
        case 'c': opt_conns = (int)parse_long(optarg, "connections"); break;
        case 'n': opt_inflight = (int)parse_long(optarg, "in-flight"); break;
        case 'd': opt_duration = parse_double(optarg, "duration"); break;
        case 'w': opt_warmup = parse_double(optarg, "warm-up"); break;
        case 'u': opt_path = optarg; break;
        case 'e': opt_expect = optarg; opt_expect_len = strlen(optarg); break;
        case 'm': opt_max_msg_size = parse_long(optarg, "max message size"); break;
        case 't': opt_setup_timeout = parse_double(optarg, "setup timeout"); break;
        case 'P': opt_connect_parallel = (int)parse_long(optarg, "parallel setups"); break;
        case 'T': opt_req_timeout = parse_double(optarg, "request timeout"); break;
        case 'r': opt_max_requests = (uint64_t)parse_long(optarg, "max requests"); break;
        case 'C': opt_wait_csm = 0; break;
        case 'v': opt_verbose = 1; break;
        case 'S': opt_tls = 1; break;
        case 'W': opt_ws = 1; break;
        case 'o': parse_extra_option(optarg); break;
        case 'V': parse_variants(optarg); break;
        default: die_usage(NULL);
        }
    }
    if (optind != argc)
        die_usage("unexpected arguments");
    if (opt_port <= 0 || opt_port > 65535)
        die_usage("-p PORT is required (1-65535)");
    if (!opt_path || opt_path[0] != '/')
        die_usage("-u /path is required");
    if (opt_conns < 1 || opt_conns > MAX_CONNS)
        die_usage("bad connection count");
    if (opt_inflight < 1 || opt_inflight > MAX_INFLIGHT)
        die_usage("bad in-flight count");
    if (opt_duration <= 0 || opt_duration > MAX_SECONDS || opt_warmup < 0 ||
        opt_warmup > MAX_SECONDS || opt_setup_timeout <= 0 || opt_setup_timeout > 600 ||
        opt_req_timeout <= 0)
        die_usage("bad duration / warm-up / setup timeout");
    if (opt_connect_parallel < 1)
        die_usage("bad -P");
    if (opt_max_requests < 1)
        die_usage("bad max requests");
    if (opt_max_msg_size > 0xffffffffL)
        die_usage("bad max message size");

    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)opt_conns + 16) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", opt_port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *ai;
    int gai = getaddrinfo(opt_host, portstr, &hints, &ai);
    target = ai;
    if (gai != 0) {
        fprintf(stderr, "loadgen: %s: %s\n", opt_host, gai_strerror(gai));
        return 2;
    }
    if (!is_loopback(ai->ai_addr)) {
        fprintf(stderr, "loadgen: refusing non-loopback target %s\n", opt_host);
        return 2;
    }

    variants = calloc((size_t)opt_var_count, sizeof *variants);
    if (!variants) {
        perror("calloc");
        return 3;
    }
    for (int v = 0; v < opt_var_count; v++)
        build_request_template(&variants[v], opt_var_base + (unsigned long)v);

    /* our CSM: 7.01, no token, optional Max-Message-Size */
    if (opt_max_msg_size >= 0) {
        uint8_t v[4];
        size_t vl = 0;
        uint32_t m = (uint32_t)opt_max_msg_size;
        for (int sh = 24; sh >= 0; sh -= 8)
            if (vl || (m >> sh) & 0xff)
                v[vl++] = (uint8_t)(m >> sh);
        uint8_t opt[8];
        size_t ol = put_option(opt, OPT_MAX_MESSAGE_SIZE, v, vl);
        size_t h = put_frame_header(csm, ol, 0, CODE_CSM);
        memcpy(csm + h, opt, ol);
        csm_len = h + ol;
    } else {
        csm[0] = 0x00;
        csm[1] = CODE_CSM;
        csm_len = 2;
    }
    /* the same CSM as a WebSocket message: Len 0 and no extended length */
    {
        unsigned ext = (csm[0] >> 4) == 13 ? 1 : (csm[0] >> 4) == 14 ? 2 : (csm[0] >> 4) == 15 ? 4 : 0;
        ws_csm[0] = 0x00;
        memcpy(ws_csm + 1, csm + 1 + ext, csm_len - 1 - ext);
        ws_csm_len = csm_len - ext;
    }
    if (ai->ai_family == AF_INET6)
        snprintf(host_header, sizeof host_header, "[%s]:%d", opt_host, opt_port);
    else
        snprintf(host_header, sizeof host_header, "%s:%d", opt_host, opt_port);
    if (opt_ws) {
        uint32_t seed = 0;
        if (RAND_bytes((unsigned char *)&seed, sizeof seed) == 1 && seed)
            ws_rng = seed;
    }
    if (opt_tls) {
        ssl_ctx = SSL_CTX_new(TLS_client_method());
        if (!ssl_ctx || !SSL_CTX_set_min_proto_version(ssl_ctx, TLS1_2_VERSION)) {
            fprintf(stderr, "loadgen: SSL_CTX_new: %s\n", ssl_errstr(0));
            return 3;
        }
        /* loopback benchmark: the server's certificate is not verified */
        SSL_CTX_set_verify(ssl_ctx, SSL_VERIFY_NONE, NULL);
        SSL_CTX_set_mode(ssl_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        /* coaps+tcp negotiates ALPN "coap" (RFC 8323 8.2); coaps+ws is HTTP */
        static const unsigned char alpn_coap[] = "\x04" "coap";
        static const unsigned char alpn_http[] = "\x08http/1.1";
        if (opt_ws)
            SSL_CTX_set_alpn_protos(ssl_ctx, alpn_http, sizeof alpn_http - 1);
        else
            SSL_CTX_set_alpn_protos(ssl_ctx, alpn_coap, sizeof alpn_coap - 1);
    }

    epfd = epoll_create1(0);
    if (epfd < 0) {
        perror("epoll_create1");
        return 3;
    }
    conns = calloc((size_t)opt_conns, sizeof *conns);
    st.lat_min_ns = UINT64_MAX;

    uint64_t t_start = now_ns();
    uint64_t t_setup_end = t_start + (uint64_t)(opt_setup_timeout * 1e9);

    for (int i = 0; i < opt_conns; i++) {
        struct conn *c = &conns[i];
        c->idx = i;
        c->rcap = RBUF_INIT;
        c->rbuf = malloc(c->rcap);
        c->wcap = 4096;
        while (c->wcap < (size_t)opt_inflight * (req_len_max + 32) + 64)
            c->wcap *= 2;
        c->wbuf = malloc(c->wcap);
        c->slots = calloc((size_t)opt_inflight, sizeof *c->slots);
        c->free_stack = malloc((size_t)opt_inflight * sizeof(int));
        for (int s = 0; s < opt_inflight; s++)
            c->free_stack[opt_inflight - 1 - s] = s;
        c->free_top = opt_inflight;
        c->fd = -1;
        c->state = C_IDLE;
    }

    /* Phase boundaries are set once every connection is ready. */
    t_warm_end = UINT64_MAX;
    t_meas_end = UINT64_MAX;
    int running = 0;
    int alive = opt_conns;
    struct rusage ru_start, ru_end;
    int have_ru_start = 0, have_ru_end = 0;
    uint64_t t_ru_start = 0, t_ru_end = 0;
    const char *status = "ok";

    uint64_t req_timeout_ns = (uint64_t)(opt_req_timeout * 1e9);
    uint64_t t_next_expire = 0;
    enum { MAX_EVENTS = 256 };
    struct epoll_event evs[MAX_EVENTS];

    for (;;) {
        uint64_t t = now_ns();
        if (stop_signal) {
            status = "interrupted";
            break;
        }
        if (!running) {
            int ready = 0, dead = 0, pending = 0;
            for (int i = 0; i < opt_conns; i++) {
                if (conns[i].state == C_READY)
                    ready++;
                else if (conns[i].state == C_DEAD)
                    dead++;
                else if (conns[i].state == C_CONNECTING || conns[i].state == C_WAIT_CSM ||
                         conns[i].state == C_TLS_HS || conns[i].state == C_WS_UPGRADE)
                    pending++;
            }
            /* pace the setups: at most -P connects/CSM waits at a time */
            for (int i = 0; i < opt_conns && pending < opt_connect_parallel && !dead; i++) {
                if (conns[i].state != C_IDLE)
                    continue;
                if (conn_start(&conns[i]) < 0) {
                    conns[i].state = C_DEAD;
                    dead++;
                    break;
                }
                pending++;
            }
            if (dead > 0) {
                status = "setup_failed";
                break;
            }
            int go = ready == opt_conns;
            if (!go && t >= t_setup_end) {
                int connected = 0;
                for (int i = 0; i < opt_conns; i++)
                    if (conns[i].state == C_WAIT_CSM || conns[i].state == C_READY)
                        connected++;
                if (connected < opt_conns) {
                    fprintf(stderr, "loadgen: only %d of %d connections established within %.1fs\n",
                            connected, opt_conns, opt_setup_timeout);
                    status = "setup_failed";
                    break;
                }
                /* connected but some servers sent no CSM (RFC 8323 says MUST) */
                for (int i = 0; i < opt_conns; i++)
                    if (!conns[i].got_csm)
                        st.csm_missing++;
                fprintf(stderr, "loadgen: %" PRIu64 " connections got no CSM from the server "
                                "within %.1fs; starting anyway\n", st.csm_missing, opt_setup_timeout);
                go = 1;
            }
            if (go) {
                running = 1;
                t_warm_end = t + (uint64_t)(opt_warmup * 1e9);
                t_meas_end = t_warm_end + (uint64_t)(opt_duration * 1e9);
                for (int i = 0; i < opt_conns; i++) {
                    struct conn *c = &conns[i];
                    c->state = C_RUNNING;
                    fill_pipeline(c, t);
                    conn_flush(c);
                }
                continue;
            }
        } else {
            if (!have_ru_start && t >= t_warm_end) {
                getrusage(RUSAGE_SELF, &ru_start);
                t_ru_start = t;
                have_ru_start = 1;
            }
            if (t >= t_meas_end) {
                getrusage(RUSAGE_SELF, &ru_end);
                t_ru_end = t;
                have_ru_end = 1;
                break;
            }
            if (alive == 0) {
                status = "all_connections_lost";
                break;
            }
            if (t >= t_next_expire) { /* scan for lost requests, 10x a second */
                t_next_expire = t + 100000000ull;
                for (int i = 0; i < opt_conns; i++) {
                    expire_requests(&conns[i], t, req_timeout_ns);
                    if (conns[i].woff < conns[i].wlen && conn_flush(&conns[i]) < 0)
                        alive--;
                }
            }
            if (!sending_allowed) {
                int any = 0;
                for (int i = 0; i < opt_conns && !any; i++)
                    any = conns[i].inflight > 0;
                if (!any) {
                    status = "request_limit_reached";
                    break;
                }
            }
        }

        /* sleep until the next phase boundary at most (and at most 100 ms) */
        uint64_t next = running ? (t < t_warm_end ? t_warm_end : t_meas_end) : t_setup_end;
        uint64_t wait_ns = next > t ? next - t : 0;
        int timeout_ms = (int)((wait_ns + 999999) / 1000000);
        if (timeout_ms > 100)
            timeout_ms = 100;
        int n = epoll_wait(epfd, evs, MAX_EVENTS, timeout_ms);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("epoll_wait");
            status = "epoll_failed";
            break;
        }
        for (int k = 0; k < n; k++) {
            struct conn *c = evs[k].data.ptr;
            if (c->state == C_DEAD)
                continue;
            uint32_t e = evs[k].events;
            if (c->state == C_CONNECTING) {
                if (!(e & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
                    continue;
                int err = 0;
                socklen_t el = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err != 0) {
                    st.err_conn_closed++;
                    conn_kill(c, strerror(err));
                    alive--;
                    continue;
                }
                if (conn_connected(c) < 0) {
                    conn_kill(c, "TLS setup failed");
                    alive--;
                    continue;
                }
            }
            if (c->state == C_TLS_HS) {
                if (tls_handshake(c) < 0) {
                    alive--;
                    continue;
                }
                if (c->state == C_TLS_HS)
                    continue;
                e |= EPOLLIN; /* records may already wait in OpenSSL's buffer */
            }
            if ((e & (EPOLLIN | EPOLLERR | EPOLLHUP)) || (c->rd_wants_write && (e & EPOLLOUT))) {
                if (conn_read(c) < 0) {
                    alive--;
                    continue;
                }
            }
            /* flush: queued requests/pongs from parsing, or EPOLLOUT */
            if (c->woff < c->wlen || (e & EPOLLOUT)) {
                if (conn_flush(c) < 0) {
                    alive--;
                    continue;
                }
            }
        }
    }

    if (!have_ru_start) {
        getrusage(RUSAGE_SELF, &ru_start);
        t_ru_start = now_ns();
    }
    if (!have_ru_end) {
        getrusage(RUSAGE_SELF, &ru_end);
        t_ru_end = now_ns();
    }
    (void)t_ru_start;
    (void)t_ru_end;
    double cpu_u = tv_s(ru_end.ru_utime) - tv_s(ru_start.ru_utime);
    double cpu_s = tv_s(ru_end.ru_stime) - tv_s(ru_start.ru_stime);

    /* measured time: the nominal window, or the part of it that ran */
    double measured_s = 0;
    if (running) {
        uint64_t t_end = now_ns();
        if (t_end > t_meas_end)
            t_end = t_meas_end;
        if (t_end > t_warm_end)
            measured_s = (double)(t_end - t_warm_end) / 1e9;
    }

    /* a live connection that got no valid response in a whole measured
     * window is stuck (e.g. the server never accepted it): an error */
    if (strcmp(status, "ok") == 0) {
        for (int i = 0; i < opt_conns; i++) {
            struct conn *c = &conns[i];
            if (c->state == C_RUNNING && c->measured == 0) {
                st.err_stalled_conns++;
                diag(c, "no valid response in the measured window (%d requests in flight)",
                     c->inflight);
            }
        }
    }

    print_result(status, measured_s, cpu_u, cpu_s);
    uint64_t errors = total_errors();

    for (int i = 0; i < opt_conns; i++) {
        if (conns[i].ssl)
            SSL_free(conns[i].ssl);
        if (conns[i].fd >= 0)
            close(conns[i].fd);
        free(conns[i].mbuf);
        free(conns[i].rbuf);
        free(conns[i].wbuf);
        free(conns[i].slots);
        free(conns[i].free_stack);
    }
    free(conns);
    for (int v = 0; v < opt_var_count; v++) {
        free(variants[v].tmpl);
        free(variants[v].ws);
    }
    free(variants);
    if (ssl_ctx)
        SSL_CTX_free(ssl_ctx);
    freeaddrinfo(target);
    close(epfd);
    if (strcmp(status, "ok") != 0 && strcmp(status, "request_limit_reached") != 0)
        return 3;
    return errors ? 1 : 0;
}
