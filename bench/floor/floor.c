/*
 * The floor: the least a fan-out server can do on this machine, to measure the others against.
 * Not a product, a reference for bench/fanout.py (see bench/README.md): one thread, epoll, no
 * allocation on the fan-out path. It speaks just enough of Switchboard's JSON protocol over a
 * WebSocket for the load generator (subscribe, publish, ping) and answers GET /sse.
 *
 *   floor [--batch] [PORT]      prints "floor listening on http://127.0.0.1:PORT"
 *
 * Default: each publication is written to each subscriber with its own write(), straight from the
 * loop that decoded it. --batch: every publication decoded from one read of the publisher goes to
 * each subscriber in one write(). A write that would block (or writes part) keeps the rest in a
 * per-connection buffer flushed on EPOLLOUT; nothing is dropped.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

enum { HEAD, WS, SSE };
#define RBUF 4096

struct conn {
    int fd, state, room; /* room: index in subs[] or -1 */
    size_t rlen;
    char *out; /* pending output that did not fit the socket */
    size_t olen, ocap;
    unsigned char rbuf[RBUF];
};

static struct conn **subs;
static size_t nsubs, capsubs;
static long offset;
static int epfd, batch;

/* ---- SHA-1 and base64, for Sec-WebSocket-Accept ---- */
static uint32_t rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }
static void sha1(const unsigned char *msg, size_t len, unsigned char out[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    unsigned char blk[128] = {0};
    size_t total = ((len + 8) / 64 + 1) * 64; /* len < 120 here: fits two blocks */
    memcpy(blk, msg, len);
    blk[len] = 0x80;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) blk[total - 1 - i] = (unsigned char)(bits >> (8 * i));
    for (size_t off = 0; off < total; off += 64) {
        uint32_t w[80], a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 16; i++)
            w[i] = (uint32_t)blk[off + 4 * i] << 24 | blk[off + 4 * i + 1] << 16 | blk[off + 4 * i + 2] << 8 | blk[off + 4 * i + 3];
        for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        for (int i = 0; i < 80; i++) {
            uint32_t f, k;
            if (i < 20) f = (b & c) | (~b & d), k = 0x5A827999;
            else if (i < 40) f = b ^ c ^ d, k = 0x6ED9EBA1;
            else if (i < 60) f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
            else f = b ^ c ^ d, k = 0xCA62C1D6;
            uint32_t t = rol(a, 5) + f + e + k + w[i];
            e = d, d = c, c = rol(b, 30), b = a, a = t;
        }
        h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
    }
    for (int i = 0; i < 20; i++) out[i] = (unsigned char)(h[i / 4] >> (24 - 8 * (i % 4)));
}
static void b64(const unsigned char *in, size_t n, char *out) {
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        *out++ = t[in[i] >> 2], *out++ = t[(in[i] & 3) << 4 | in[i + 1] >> 4];
        *out++ = t[(in[i + 1] & 15) << 2 | in[i + 2] >> 6], *out++ = t[in[i + 2] & 63];
    }
    if (n - i == 2) {
        *out++ = t[in[i] >> 2], *out++ = t[(in[i] & 3) << 4 | in[i + 1] >> 4];
        *out++ = t[(in[i + 1] & 15) << 2], *out++ = '=';
    } else if (n - i == 1) {
        *out++ = t[in[i] >> 2], *out++ = t[(in[i] & 3) << 4], *out++ = '=', *out++ = '=';
    }
    *out = 0;
}

/* ---- output ---- */
static void close_conn(struct conn *c);

static void keep(struct conn *c, const char *p, size_t n) {
    if (c->olen + n > c->ocap) {
        c->ocap = (c->olen + n) * 2;
        c->out = realloc(c->out, c->ocap);
    }
    memcpy(c->out + c->olen, p, n);
    c->olen += n;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* One write(); what the socket did not take waits in c->out. */
static void send_bytes(struct conn *c, const char *p, size_t n) {
    if (c->olen) {
        keep(c, p, n);
        return;
    }
    ssize_t w = write(c->fd, p, n);
    if (w < 0) {
        if (errno != EAGAIN) return; /* the read side will see the error and close */
        w = 0;
    }
    if ((size_t)w < n) keep(c, p + w, n - (size_t)w);
}

static void flush_out(struct conn *c) {
    ssize_t w = write(c->fd, c->out, c->olen);
    if (w < 0) {
        if (errno != EAGAIN) close_conn(c);
        return;
    }
    memmove(c->out, c->out + w, c->olen - (size_t)w);
    c->olen -= (size_t)w;
    if (!c->olen) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    }
}

/* A server-to-client WebSocket frame header for a payload of n bytes: its length. */
static size_t ws_head(unsigned char *h, unsigned char op, size_t n) {
    h[0] = 0x80 | op;
    if (n < 126) return h[1] = (unsigned char)n, 2;
    if (n < 65536) return h[1] = 126, h[2] = (unsigned char)(n >> 8), h[3] = (unsigned char)n, 4;
    h[1] = 127;
    for (int i = 0; i < 8; i++) h[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
    return 10;
}

static void ws_send(struct conn *c, unsigned char op, const char *p, size_t n) {
    char f[256];
    size_t h = ws_head((unsigned char *)f, op, n);
    if (h + n <= sizeof f) {
        memcpy(f + h, p, n);
        send_bytes(c, f, h + n);
    } else {
        send_bytes(c, f, h);
        send_bytes(c, p, n);
    }
}

/* ---- the room ---- */
static void join(struct conn *c) {
    if (c->room >= 0) return;
    if (nsubs == capsubs) {
        capsubs = capsubs ? capsubs * 2 : 1024;
        subs = realloc(subs, capsubs * sizeof *subs);
    }
    c->room = (int)nsubs;
    subs[nsubs++] = c;
}

static void close_conn(struct conn *c) {
    if (c->room >= 0) {
        subs[c->room] = subs[--nsubs];
        subs[c->room]->room = c->room;
    }
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->out);
    free(c);
}

/* Publications decoded from one read, when batching: WebSocket frames and SSE events apart. */
static char wsb[1 << 20], sseb[1 << 20];
static size_t wsn, ssen;

static void fan_out(const char *ws, size_t wn, const char *sse, size_t sn) {
    for (size_t i = 0; i < nsubs; i++) {
        struct conn *s = subs[i];
        if (s->state == WS) send_bytes(s, ws, wn);
        else send_bytes(s, sse, sn);
    }
}

static void publish(const char *data, size_t dn) {
    static char text[8192], frame[8300], event[8400];
    if (dn > 4096) return;
    offset++;
    int tn = snprintf(text, sizeof text, "{\"pub\":{\"channel\":\"bench\",\"offset\":%ld,\"epoch\":\"floor\",\"data\":%.*s}}",
                      offset, (int)dn, data);
    size_t h = ws_head((unsigned char *)frame, 1, (size_t)tn);
    memcpy(frame + h, text, (size_t)tn);
    int en = snprintf(event, sizeof event, "data: %s\nid: %ld\n\n", text, offset);
    if (!batch) {
        fan_out(frame, h + (size_t)tn, event, (size_t)en);
    } else if (wsn + h + (size_t)tn <= sizeof wsb && ssen + (size_t)en <= sizeof sseb) {
        memcpy(wsb + wsn, frame, h + (size_t)tn), wsn += h + (size_t)tn;
        memcpy(sseb + ssen, event, (size_t)en), ssen += (size_t)en;
    }
}

static long json_id(const char *t, size_t n) {
    const char *p = memmem(t, n, "\"id\":", 5);
    return p ? strtol(p + 5, NULL, 10) : 0;
}

static void on_text(struct conn *c, char *t, size_t n) {
    char reply[256];
    long id = json_id(t, n);
    if (memmem(t, n, "\"publish\"", 9)) {
        /* {"id":N,"publish":{"channel":C,"data":D}}: D runs to the last two braces. */
        char *d = memmem(t, n, "\"data\":", 7);
        if (!d || n < 2) return;
        d += 7;
        size_t dn = (size_t)(t + n - d);
        while (dn && (d[dn - 1] == ' ' || d[dn - 1] == '\n')) dn--;
        if (dn < 2 || memcmp(d + dn - 2, "}}", 2)) return;
        dn -= 2;
        publish(d, dn);
        if (id) ws_send(c, 1, reply, (size_t)snprintf(reply, sizeof reply, "{\"id\":%ld,\"publish\":{\"epoch\":\"floor\",\"offset\":%ld}}", id, offset));
    } else if (memmem(t, n, "\"subscribe\"", 11)) {
        join(c);
        ws_send(c, 1, reply, (size_t)snprintf(reply, sizeof reply,
            "{\"id\":%ld,\"subscribe\":{\"channel\":\"bench\",\"epoch\":\"floor\",\"offset\":%ld,\"recovered\":true,\"replayed\":0}}", id, offset));
    }
}

/* Decodes the client frames in c->rbuf; false if the connection is to close. */
static int on_ws(struct conn *c) {
    size_t pos = 0;
    while (c->rlen - pos >= 6) {
        unsigned char *b = c->rbuf + pos;
        unsigned op = b[0] & 15;
        size_t n = b[1] & 127, h = 2;
        if (!(b[1] & 128)) return 0; /* clients mask */
        if (n == 126) n = (size_t)b[2] << 8 | b[3], h = 4;
        else if (n == 127) return 0; /* too large for this server */
        if (h + 4 + n > RBUF) return 0;
        if (c->rlen - pos < h + 4 + n) break;
        unsigned char *m = b + h, *p = b + h + 4;
        for (size_t i = 0; i < n; i++) p[i] ^= m[i & 3];
        if (op == 1) on_text(c, (char *)p, n);
        else if (op == 9) ws_send(c, 10, (char *)p, n);
        else if (op == 8) return 0;
        pos += h + 4 + n;
    }
    memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
    c->rlen -= pos;
    return 1;
}

static int on_head(struct conn *c) {
    char *end = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
    if (!end) return c->rlen < RBUF;
    size_t used = (size_t)(end + 4 - (char *)c->rbuf);
    if (!memcmp(c->rbuf, "GET /sse", 8)) {
        static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                                   "Connection: close\r\n\r\nevent: subscribed\ndata: {\"epoch\":\"floor\"}\n\n";
        c->state = SSE;
        join(c);
        send_bytes(c, head, sizeof head - 1);
    } else {
        char *k = memmem(c->rbuf, used, "Sec-WebSocket-Key: ", 19);
        if (!k) return 0;
        k += 19;
        char *ke = memmem(k, used, "\r\n", 2);
        char key[128], acc[32], resp[256];
        unsigned char dig[20];
        int kn = snprintf(key, sizeof key, "%.*s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", (int)(ke - k), k);
        if (kn <= 0 || kn >= 100) return 0;
        sha1((unsigned char *)key, (size_t)kn, dig);
        b64(dig, 20, acc);
        c->state = WS;
        send_bytes(c, resp, (size_t)snprintf(resp, sizeof resp, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: switchboard.v1.json\r\n\r\n", acc));
    }
    memmove(c->rbuf, c->rbuf + used, c->rlen - used);
    c->rlen -= used;
    return c->state == WS ? on_ws(c) : 1;
}

static void on_read(struct conn *c) {
    ssize_t r = read(c->fd, c->rbuf + c->rlen, RBUF - c->rlen);
    if (r == 0 || (r < 0 && errno != EAGAIN)) {
        close_conn(c);
        return;
    }
    if (r < 0) return;
    c->rlen += (size_t)r;
    wsn = ssen = 0;
    int ok = c->state == HEAD ? on_head(c) : c->state == WS ? on_ws(c) : 1;
    if (batch && wsn) fan_out(wsb, wsn, sseb, ssen);
    if (!ok) close_conn(c);
}

int main(int argc, char **argv) {
    int port = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--batch")) batch = 1;
        else port = atoi(argv[i]);
    }
    signal(SIGPIPE, SIG_IGN);
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 4096) || getsockname(ls, (struct sockaddr *)&a, &al)) {
        perror("floor: listen");
        return 1;
    }
    printf("floor listening on http://127.0.0.1:%d (%s)\n", ntohs(a.sin_port), batch ? "batch" : "each");
    fflush(stdout);
    epfd = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL}, evs[256];
    epoll_ctl(epfd, EPOLL_CTL_ADD, ls, &ev);
    for (;;) {
        int n = epoll_wait(epfd, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    c = calloc(1, sizeof *c);
                    c->fd = fd, c->room = -1;
                    struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e);
                }
                continue;
            }
            if (evs[i].events & EPOLLOUT) flush_out(c);
            /* Connections close only from their own event, so no later event is stale. */
            else if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_read(c);
        }
    }
}
