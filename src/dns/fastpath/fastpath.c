// apns-proxy UDP fast path of the DNS server (Node-API, Linux only; the addon apns_proxy_fastpath,
// loaded by index.ts beside this file; napi_errors.h is shared with src/fallback/relay).
//
// Node pays a fixed cost per datagram (a libuv read, a JS callback, a send request) that caps a
// node:dgram server below unbound. Here one thread per UDP listen socket reads datagrams in batches
// (recvmmsg), answers the fully-understood common case itself and sends those answers in batches
// (sendmmsg). The common case is a query for a courier name from an allowed IPv4 client: its reply
// is one of the four JS precomputed for that courier (src/dns/answer.ts, buildResponder), copied and
// patched (ID, RD/CD, the question's letter case) exactly as answerQuery does. No answer logic lives
// here beyond that patching: every other datagram goes to JS unchanged with its sender, where
// src/dns/server.ts decides, and JS replies through dnsSend() on the same socket.
//
// The per-client rate limit (dns.rateLimit) is kept here for every datagram of every socket, and for
// TCP queries through dnsTake(), with the token-bucket semantics of src/dns/limits.ts.
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>

#include "napi_errors.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64                   // datagrams per recvmmsg / sendmmsg
#define SLOT_SIZE 65536            // a receive slot holds any UDP payload (at most 65527 bytes)
#define OUT_SIZE 1232              // EDNS_UDP_SIZE: no fast-path reply exceeds the largest client limit
#define PLAIN_UDP_LIMIT 512        // without EDNS (RFC 1035 4.2.1)
#define HEADER_SIZE 12
#define MAX_NAME_WIRE 255
#define MAX_SOCKETS 64             // UDP listen sockets per server
#define MAX_ENTRIES 1024           // courier names in a table (JS has at most 254)
#define TABLE_SLOTS 2048           // open addressing, power of two, > 2 * MAX_ENTRIES
#define MAX_ACL 4096               // IPv4 networks in dns.allowClients
#define HANDOFF_MAX_BYTES (16u << 20)  // datagrams queued for JS at most; beyond, dropped (counted)
#define UDP_BUFFER_BYTES (4 << 20)     // SO_RCVBUF / SO_SNDBUF, as server.ts asks of node:dgram
#define TYPE_A 1
#define TYPE_OPT 41
#define CLASS_IN 1
#define FLAG2_QR 0x80
#define FLAG2_OPCODE 0x78
#define FLAG2_RD 0x01
#define FLAG3_CD 0x10
#define FNV_BASIS 0x811c9dc5u
#define FNV_PRIME 16777619u

enum { OUT_COURIER, OUT_NODATA, OUT_NXDOMAIN, OUT_COUNT };  // as server.ts's Outcome names them
enum { REC_CHARGED = 1 };                                   // handoff record flag: a token was taken

// ---------------------------------------------------------------------------------------------
// Errors (throw_errno, NAPI_OK: napi_errors.h)

// errno names Node would give a bind failure (server.ts explains them to the operator)
static const char *errno_code(int err) {
  switch (err) {
    case EADDRINUSE: return "EADDRINUSE";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EINVAL: return "EINVAL";
    default: return "E_NATIVE";
  }
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static inline uint8_t fold(uint8_t c) {
  return c >= 0x41 && c <= 0x5a ? (uint8_t)(c | 0x20) : c;
}

// ---------------------------------------------------------------------------------------------
// The table: the precomputed courier replies and the IPv4 part of dns.allowClients, as JS encodes
// them (src/dns/fastpath/index.ts, encodeFastPathTable). Immutable once built; swapped whole on updates.

typedef struct {
  const uint8_t *qname;          // lower-cased wire name
  uint32_t qlen;
  uint32_t hash;                 // FNV-1a of qname
  uint8_t outcome[2];            // [type A, any other type]
  const uint8_t *reply[2][2];    // [A, other][without EDNS, with our OPT]
  uint32_t reply_len[2][2];
} entry_t;

typedef struct {
  int answer;                    // 0: every datagram goes to JS (debug logging, a test clock)
  uint32_t nacl;
  uint32_t *acl_net, *acl_mask;  // host byte order
  uint32_t nentries;
  entry_t *entries;
  int16_t slots[TABLE_SLOTS];    // index into entries, -1 when empty
  uint8_t *blob;                 // a copy of the encoded table: entries point into it
} table_t;

static void table_free(table_t *t) {
  if (!t) return;
  free(t->acl_net);
  free(t->acl_mask);
  free(t->entries);
  free(t->blob);
  free(t);
}

static uint32_t name_hash(const uint8_t *p, size_t n) {
  uint32_t h = FNV_BASIS;
  for (size_t i = 0; i < n; i++) h = (h ^ fold(p[i])) * FNV_PRIME;
  return h;
}

typedef struct {
  const uint8_t *b;
  size_t n, p;
  int bad;
} reader_t;

static uint32_t rd(reader_t *r, int bytes) {
  if (r->bad || r->n - r->p < (size_t)bytes) {
    r->bad = 1;
    return 0;
  }
  uint32_t v = 0;
  for (int i = 0; i < bytes; i++) v = (v << 8) | r->b[r->p++];
  return v;
}

static const uint8_t *rd_bytes(reader_t *r, size_t len) {
  if (r->bad || r->n - r->p < len) {
    r->bad = 1;
    return NULL;
  }
  const uint8_t *out = r->b + r->p;
  r->p += len;
  return out;
}

// A plain wire name (labels of 1..63 bytes, then the root) exactly `len` bytes long.
static int wire_name_ok(const uint8_t *q, size_t len) {
  if (len < 1 || len > MAX_NAME_WIRE) return 0;
  size_t p = 0;
  while (p < len) {
    uint8_t l = q[p];
    if (l == 0) return p == len - 1;
    if (l > 63) return 0;
    p += 1 + (size_t)l;
  }
  return 0;
}

static const entry_t *table_lookup(const table_t *t, uint32_t hash, const uint8_t *name, size_t len) {
  for (uint32_t i = 0, s = hash & (TABLE_SLOTS - 1); i < TABLE_SLOTS; i++, s = (s + 1) & (TABLE_SLOTS - 1)) {
    int16_t k = t->slots[s];
    if (k < 0) return NULL;
    const entry_t *e = &t->entries[k];
    if (e->hash != hash || e->qlen != len) continue;
    size_t j = 0;
    while (j < len && fold(name[j]) == e->qname[j]) j++;
    if (j == len) return e;
  }
  return NULL;
}

// Parses an encoded table (trusted, but checked as if it were not). NULL with *why on error.
static table_t *table_parse(const uint8_t *buf, size_t n, const char **why) {
  table_t *t = calloc(1, sizeof *t);
  if (!t) {
    *why = "out of memory";
    return NULL;
  }
  memset(t->slots, 0xff, sizeof t->slots);
  t->blob = malloc(n ? n : 1);
  if (!t->blob) {
    *why = "out of memory";
    goto fail;
  }
  memcpy(t->blob, buf, n);
  reader_t r = {.b = t->blob, .n = n};
  const uint8_t *magic = rd_bytes(&r, 4);
  if (!magic || memcmp(magic, "DNSF", 4) != 0 || rd(&r, 1) != 1) {
    *why = "not a fast-path table (version 1)";
    goto fail;
  }
  t->answer = rd(&r, 1) != 0;
  t->nacl = rd(&r, 2);
  if (t->nacl > MAX_ACL) {
    *why = "too many networks";
    goto fail;
  }
  t->acl_net = calloc(t->nacl + 1, sizeof *t->acl_net);
  t->acl_mask = calloc(t->nacl + 1, sizeof *t->acl_mask);
  if (!t->acl_net || !t->acl_mask) {
    *why = "out of memory";
    goto fail;
  }
  for (uint32_t i = 0; i < t->nacl; i++) {
    uint32_t net = rd(&r, 4), prefix = rd(&r, 1);
    if (prefix > 32) {
      *why = "bad prefix length";
      goto fail;
    }
    t->acl_mask[i] = prefix == 0 ? 0 : 0xffffffffu << (32 - prefix);
    t->acl_net[i] = net & t->acl_mask[i];
  }
  t->nentries = rd(&r, 2);
  if (t->nentries > MAX_ENTRIES) {
    *why = "too many courier names";
    goto fail;
  }
  t->entries = calloc(t->nentries + 1, sizeof *t->entries);
  if (!t->entries) {
    *why = "out of memory";
    goto fail;
  }
  for (uint32_t i = 0; i < t->nentries && !r.bad; i++) {
    entry_t *e = &t->entries[i];
    e->qlen = rd(&r, 1);
    e->qname = rd_bytes(&r, e->qlen);
    e->outcome[0] = (uint8_t)rd(&r, 1);
    e->outcome[1] = (uint8_t)rd(&r, 1);
    if (r.bad) break;
    if (!wire_name_ok(e->qname, e->qlen) || e->outcome[0] >= OUT_COUNT || e->outcome[1] >= OUT_COUNT) {
      *why = "bad courier entry";
      goto fail;
    }
    for (int k = 0; k < 2; k++) {
      for (int edns = 0; edns < 2; edns++) {
        uint32_t len = rd(&r, 2);
        const uint8_t *reply = rd_bytes(&r, len);
        if (r.bad) break;
        // the question the patch overwrites must be this name, then type and class
        if (len < HEADER_SIZE + e->qlen + 4 || len > OUT_SIZE || memcmp(reply + HEADER_SIZE, e->qname, e->qlen) != 0) {
          *why = "bad reply template";
          goto fail;
        }
        e->reply[k][edns] = reply;
        e->reply_len[k][edns] = len;
      }
    }
    if (r.bad) break;
    e->hash = name_hash(e->qname, e->qlen);
    if (table_lookup(t, e->hash, e->qname, e->qlen)) {
      *why = "duplicate courier name";
      goto fail;
    }
    uint32_t s = e->hash & (TABLE_SLOTS - 1);
    while (t->slots[s] >= 0) s = (s + 1) & (TABLE_SLOTS - 1);
    t->slots[s] = (int16_t)i;
  }
  if (r.bad || r.p != n) {
    *why = r.bad ? "truncated" : "trailing bytes";
    goto fail;
  }
  return t;
fail:
  table_free(t);
  return NULL;
}

static int acl_allows_v4(const table_t *t, uint32_t a) {
  for (uint32_t i = 0; i < t->nacl; i++) {
    if ((a & t->acl_mask[i]) == t->acl_net[i]) return 1;
  }
  return 0;
}

// The IPv4 address of a peer (plain, or IPv4-mapped on a dual-stack socket); 0 when it has none.
static int peer_v4(const struct sockaddr_storage *ss, uint32_t *out) {
  if (ss->ss_family == AF_INET) {
    *out = ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr);
    return 1;
  }
  if (ss->ss_family == AF_INET6) {
    const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
    if (!IN6_IS_ADDR_V4MAPPED(a)) return 0;
    *out = ((uint32_t)a->s6_addr[12] << 24) | ((uint32_t)a->s6_addr[13] << 16) | ((uint32_t)a->s6_addr[14] << 8) | a->s6_addr[15];
    return 1;
  }
  return 0;
}

// The fast path's answer to one datagram from a client the ACL allows: the reply's length (written
// to out, OUT_SIZE bytes), or 0 when JS must decide. Accepts only what answerQuery would answer from
// a courier template, and builds exactly its bytes:
//   header readable; QR 0; opcode QUERY; QDCOUNT 1; ANCOUNT 0; NSCOUNT 0; ARCOUNT 0 with the question
//   ending the datagram, or ARCOUNT 1 with one OPT (root owner, version 0, options framed) ending it;
//   an uncompressed question name equal, ignoring ASCII case, to a courier name of the table; class
//   IN; the reply no longer than the client's limit (512 without EDNS, else its size in 512..1232).
static size_t fast_answer(const table_t *t, const uint8_t *m, size_t n, uint8_t *out, int *outcome) {
  if (n < HEADER_SIZE) return 0;
  if (m[2] & (FLAG2_QR | FLAG2_OPCODE)) return 0;
  if (m[4] != 0 || m[5] != 1 || (m[6] | m[7] | m[8] | m[9]) != 0 || m[10] != 0 || m[11] > 1) return 0;
  size_t p = HEADER_SIZE;
  uint32_t h = FNV_BASIS;
  for (;;) {
    if (p >= n) return 0;
    uint8_t len = m[p];
    h = (h ^ len) * FNV_PRIME;  // a length byte (<= 63) folds to itself
    if (len == 0) {
      p++;
      break;
    }
    if (len > 63 || p + 1 + len >= n) return 0;
    for (size_t i = p + 1; i <= p + len; i++) h = (h ^ fold(m[i])) * FNV_PRIME;
    p += 1 + (size_t)len;
    if (p - HEADER_SIZE >= MAX_NAME_WIRE) return 0;
  }
  size_t qlen = p - HEADER_SIZE;
  if (p + 4 > n) return 0;
  unsigned qtype = ((unsigned)m[p] << 8) | m[p + 1];
  unsigned qclass = ((unsigned)m[p + 2] << 8) | m[p + 3];
  if (qclass != CLASS_IN) return 0;
  size_t qend = p + 4;
  int edns = 0;
  size_t limit = PLAIN_UDP_LIMIT;
  if (m[11] == 0) {
    if (qend != n) return 0;
  } else {
    // OPT: root owner, type 41, class = payload size, ttl = ext rcode, version, flags; rdlen; options
    if (n - qend < 11 || m[qend] != 0 || m[qend + 1] != 0 || m[qend + 2] != TYPE_OPT || m[qend + 6] != 0) return 0;
    size_t rdlen = ((size_t)m[qend + 9] << 8) | m[qend + 10];
    if (n - qend - 11 != rdlen) return 0;
    size_t o = qend + 11;
    while (o < n) {
      if (n - o < 4) return 0;
      o += 4 + (((size_t)m[o + 2] << 8) | m[o + 3]);
    }
    if (o != n) return 0;
    edns = 1;
    size_t size = ((size_t)m[qend + 3] << 8) | m[qend + 4];
    limit = size < PLAIN_UDP_LIMIT ? PLAIN_UDP_LIMIT : size > OUT_SIZE ? OUT_SIZE : size;
  }
  const entry_t *e = table_lookup(t, h, m + HEADER_SIZE, qlen);
  if (!e) return 0;
  int other = qtype != TYPE_A;
  const uint8_t *tpl = e->reply[other][edns];
  size_t tl = e->reply_len[other][edns];
  if (tl > limit) return 0;
  memcpy(out, tpl, tl);
  out[0] = m[0];
  out[1] = m[1];
  out[2] = (uint8_t)(tpl[2] | (m[2] & FLAG2_RD));
  out[3] = (uint8_t)(tpl[3] | (m[3] & FLAG3_CD));
  memcpy(out + HEADER_SIZE, m + HEADER_SIZE, qend - HEADER_SIZE);  // the question as asked (0x20)
  *outcome = e->outcome[other];
  return tl;
}

// ---------------------------------------------------------------------------------------------
// The rate limiter: src/dns/limits.ts TokenBuckets in C. One bucket per client address (as the
// address string JS would use: family, bytes, and the scope of a link-local IPv6 address), `rate`
// tokens a second up to `burst`, at most max_keys buckets: when full, refilled buckets are forgotten,
// and if none has refilled, all are.

typedef struct {
  uint8_t b[24];  // [0] family 4/6, [4..7] scope id, [8..23] address
} ckey_t;

typedef struct {
  ckey_t key;
  double tokens, at;
  int32_t next;
} bucket_t;

typedef struct {
  pthread_mutex_t mu;
  // rate > 0, written under mu and read without it: with the limit off a batch takes no lock, so
  // the sockets' threads do not queue behind each other for nothing
  atomic_int on;
  double rate, burst;  // rate 0: off
  uint32_t max_keys;
  bucket_t *b;
  uint32_t n, cap;
  int32_t *heads;
  uint32_t mask;
  uint64_t seed;
} limiter_t;

static uint32_t key_hash(const limiter_t *l, const ckey_t *k) {
  uint64_t h = l->seed;
  for (int i = 0; i < 24; i += 8) {
    uint64_t w;
    memcpy(&w, k->b + i, 8);
    h = (h ^ w) * 0x9e3779b97f4a7c15ull;
    h ^= h >> 29;
  }
  return (uint32_t)(h >> 32) ^ (uint32_t)h;
}

static void lim_reset(limiter_t *l) {
  free(l->b);
  free(l->heads);
  l->b = NULL;
  l->heads = NULL;
  l->n = l->cap = 0;
}

static void lim_rechain(limiter_t *l) {
  memset(l->heads, 0xff, ((size_t)l->mask + 1) * sizeof *l->heads);
  for (uint32_t i = 0; i < l->n; i++) {
    uint32_t h = key_hash(l, &l->b[i].key) & l->mask;
    l->b[i].next = l->heads[h];
    l->heads[h] = (int32_t)i;
  }
}

static void lim_sweep(limiter_t *l, double now) {
  uint32_t kept = 0;
  for (uint32_t i = 0; i < l->n; i++) {
    bucket_t *b = &l->b[i];
    if (b->tokens + ((now - b->at) * l->rate) / 1000.0 >= l->burst) continue;
    if (kept != i) l->b[kept] = *b;
    kept++;
  }
  l->n = kept >= l->max_keys ? 0 : kept;  // still full: spoofed sources; forget them all
  lim_rechain(l);
}

// Takes one token for `k`; 0 when its bucket is empty. Caller holds l->mu and l->rate > 0.
static int lim_take(limiter_t *l, const ckey_t *k, double now) {
  if (!l->heads) {
    uint32_t slots = 1;
    while (slots < l->max_keys) slots <<= 1;
    l->heads = malloc((size_t)slots * sizeof *l->heads);
    if (!l->heads) return 1;  // cannot track: let it through rather than drop everyone
    l->mask = slots - 1;
    memset(l->heads, 0xff, (size_t)slots * sizeof *l->heads);
  }
  uint32_t h = key_hash(l, k) & l->mask;
  int32_t i = l->heads[h];
  while (i >= 0 && memcmp(&l->b[i].key, k, sizeof *k) != 0) i = l->b[i].next;
  bucket_t *b;
  if (i < 0) {
    if (l->n >= l->max_keys) lim_sweep(l, now);
    if (l->n >= l->cap) {
      uint32_t cap = l->cap ? l->cap * 2 : 64;
      if (cap > l->max_keys) cap = l->max_keys;
      bucket_t *nb = realloc(l->b, (size_t)cap * sizeof *nb);
      if (!nb) return 1;
      l->b = nb;
      l->cap = cap;
    }
    b = &l->b[l->n];
    b->key = *k;
    b->tokens = l->burst;
    b->at = now;
    b->next = l->heads[h];
    l->heads[h] = (int32_t)l->n;
    l->n++;
  } else {
    b = &l->b[i];
    if (now > b->at) {
      double t = b->tokens + ((now - b->at) * l->rate) / 1000.0;
      b->tokens = t < l->burst ? t : l->burst;
      b->at = now;
    }
  }
  if (b->tokens < 1) return 0;
  b->tokens -= 1;
  return 1;
}

static void key_of(const struct sockaddr_storage *ss, ckey_t *k) {
  memset(k, 0, sizeof *k);
  if (ss->ss_family == AF_INET) {
    k->b[0] = 4;
    memcpy(k->b + 8, &((const struct sockaddr_in *)ss)->sin_addr, 4);
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
    k->b[0] = 6;
    memcpy(k->b + 8, &s6->sin6_addr, 16);
    // Node writes "fe80::1%eth0" for link-local addresses with a scope: a different string, bucket
    if (IN6_IS_ADDR_LINKLOCAL(&s6->sin6_addr) && s6->sin6_scope_id > 0) memcpy(k->b + 4, &s6->sin6_scope_id, 4);
  }
}

// The address text Node would give for a peer (rinfo.address), into buf (>= 64 bytes).
static size_t address_text(const struct sockaddr_storage *ss, char *buf, size_t size) {
  buf[0] = 0;
  if (ss->ss_family == AF_INET) {
    inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, buf, (socklen_t)size);
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
    inet_ntop(AF_INET6, &s6->sin6_addr, buf, (socklen_t)size);
    if (IN6_IS_ADDR_LINKLOCAL(&s6->sin6_addr) && s6->sin6_scope_id > 0) {
      size_t len = strlen(buf);
      char ifname[IF_NAMESIZE];
      if (if_indextoname(s6->sin6_scope_id, ifname)) snprintf(buf + len, size - len, "%%%s", ifname);
      else snprintf(buf + len, size - len, "%%%u", s6->sin6_scope_id);
    }
  }
  return strlen(buf);
}

// Parses an address as Node writes it ("192.0.2.2", "::ffff:192.0.2.2", "fe80::1%eth0").
static int parse_address(const char *text, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof *ss);
  struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
  if (inet_pton(AF_INET, text, &s4->sin_addr) == 1) {
    s4->sin_family = AF_INET;
    return 1;
  }
  char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
  snprintf(host, sizeof host, "%s", text);
  char *pct = strchr(host, '%');
  if (pct) *pct++ = 0;
  struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
  if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1) return 0;
  s6->sin6_family = AF_INET6;
  if (pct && *pct) {
    unsigned idx = if_nametoindex(pct);
    if (idx == 0) {
      char *end;
      unsigned long v = strtoul(pct, &end, 10);
      idx = *end == 0 && v <= UINT32_MAX ? (unsigned)v : 0;
    }
    s6->sin6_scope_id = idx;
  }
  return 1;
}

// ---------------------------------------------------------------------------------------------
// Servers and their sockets.

struct server;

typedef struct {
  struct server *srv;
  int index;
  int fd, evfd;
  int started;
  pthread_t thread;
  atomic_int stop;
  uint8_t *in, *out;
  struct mmsghdr rmsg[BATCH], smsg[BATCH];
  struct iovec riov[BATCH], siov[BATCH];
  struct sockaddr_storage peer[BATCH];
  double last_error;  // ms, monotonic: errors are reported to JS at most once a second
} sock_t;

typedef struct server {
  pthread_rwlock_t tlock;
  table_t *table;  // guarded by tlock
  limiter_t lim;   // guarded by lim.mu
  napi_threadsafe_function tsfn;
  sock_t *socks[MAX_SOCKETS];
  int nsocks;
  int closed;
  int handle_gone, tsfn_gone;  // main thread only: freed when both
  atomic_size_t queued;        // handoff bytes waiting for JS
  atomic_uint_fast64_t queries, rate_limited, handed, handoff_dropped, send_errors, outcomes[OUT_COUNT];
} server_t;

// What the threads hand to JS: a batch of datagrams (records), or an error to log.
typedef struct {
  size_t len;
  int is_error;
  uint8_t bytes[];
} handoff_t;

static void post_error(sock_t *s, const char *what, int err) {
  double now = now_ms();
  if (now - s->last_error < 1000.0) return;
  s->last_error = now;
  char text[200];
  int len = snprintf(text, sizeof text, "%s: %s", what, strerror(err));
  if (len < 0) return;
  if ((size_t)len >= sizeof text) len = sizeof text - 1;
  handoff_t *h = malloc(sizeof *h + (size_t)len);
  if (!h) return;
  h->len = (size_t)len;
  h->is_error = 1;
  memcpy(h->bytes, text, (size_t)len);
  if (napi_call_threadsafe_function(s->srv->tsfn, h, napi_tsfn_nonblocking) != napi_ok) free(h);
}

// Record: u16 message length, u16 socket index, u8 flags, u8 address text length, u8 sockaddr length,
// the sockaddr (for the reply), the address text, the message. Big-endian.
#define REC_HEAD 7

static void hand_to_js(sock_t *s, const int *idx, const uint8_t *flags, int count) {
  if (count == 0) return;
  server_t *srv = s->srv;
  char text[BATCH][INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
  size_t tlen[BATCH];
  size_t total = 0;
  for (int k = 0; k < count; k++) {
    int i = idx[k];
    tlen[k] = address_text(&s->peer[i], text[k], sizeof text[k]);
    total += REC_HEAD + s->rmsg[i].msg_hdr.msg_namelen + tlen[k] + s->rmsg[i].msg_len;
  }
  if (atomic_load_explicit(&srv->queued, memory_order_relaxed) + total > HANDOFF_MAX_BYTES) {
    atomic_fetch_add_explicit(&srv->handoff_dropped, (uint64_t)count, memory_order_relaxed);
    return;
  }
  handoff_t *h = malloc(sizeof *h + total);
  if (!h) {
    atomic_fetch_add_explicit(&srv->handoff_dropped, (uint64_t)count, memory_order_relaxed);
    return;
  }
  h->len = total;
  h->is_error = 0;
  uint8_t *p = h->bytes;
  for (int k = 0; k < count; k++) {
    int i = idx[k];
    size_t mlen = s->rmsg[i].msg_len;
    socklen_t salen = s->rmsg[i].msg_hdr.msg_namelen;
    p[0] = (uint8_t)(mlen >> 8);
    p[1] = (uint8_t)mlen;
    p[2] = (uint8_t)(s->index >> 8);
    p[3] = (uint8_t)s->index;
    p[4] = flags[k];
    p[5] = (uint8_t)tlen[k];
    p[6] = (uint8_t)salen;
    p += REC_HEAD;
    memcpy(p, &s->peer[i], salen);
    p += salen;
    memcpy(p, text[k], tlen[k]);
    p += tlen[k];
    memcpy(p, s->in + (size_t)i * SLOT_SIZE, mlen);
    p += mlen;
  }
  atomic_fetch_add_explicit(&srv->queued, total, memory_order_relaxed);
  if (napi_call_threadsafe_function(srv->tsfn, h, napi_tsfn_nonblocking) != napi_ok) {
    atomic_fetch_sub_explicit(&srv->queued, total, memory_order_relaxed);
    atomic_fetch_add_explicit(&srv->handoff_dropped, (uint64_t)count, memory_order_relaxed);
    free(h);
    return;
  }
  atomic_fetch_add(&srv->handed, (uint64_t)count);
}

// Waits until fd is ready for `events` or the socket is told to stop; 0 when stopping.
static int wait_ready(sock_t *s, short events, int timeout_ms) {
  struct pollfd pfd[2] = {{.fd = s->fd, .events = events}, {.fd = s->evfd, .events = POLLIN}};
  int r = poll(pfd, 2, timeout_ms);
  if (r < 0 && errno != EINTR) return !atomic_load(&s->stop);
  return !atomic_load(&s->stop);
}

static void send_batch(sock_t *s, int count) {
  int off = 0;
  int tries = 0;
  while (off < count && !atomic_load(&s->stop)) {
    int r = sendmmsg(s->fd, s->smsg + off, (unsigned)(count - off), MSG_DONTWAIT);
    if (r > 0) {
      off += r;
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && tries++ < 10) {
      if (!wait_ready(s, POLLOUT, 100)) return;
      continue;
    }
    // this datagram cannot be sent (e.g. EPERM from a firewall, a full buffer for a second): skip it
    atomic_fetch_add_explicit(&s->srv->send_errors, 1, memory_order_relaxed);
    post_error(s, "dns: udp send", r < 0 ? errno : EIO);
    off++;
  }
}

static void process_batch(sock_t *s, int n) {
  server_t *srv = s->srv;
  int js[BATCH];
  uint8_t flags[BATCH];
  int njs = 0, nout = 0;
  uint64_t limited = 0, outcomes[OUT_COUNT] = {0};
  double now = now_ms();  // one clock read per batch
  pthread_rwlock_rdlock(&srv->tlock);
  const table_t *t = srv->table;
  // The buckets are shared by every socket's thread (and TCP, dnsTake): while the limit is on they
  // are used under lim.mu, held for the batch; while it is off no lock is taken at all.
  int limiting = atomic_load_explicit(&srv->lim.on, memory_order_acquire);
  if (limiting) {
    pthread_mutex_lock(&srv->lim.mu);
    limiting = srv->lim.rate > 0;  // turned off meanwhile
    if (!limiting) pthread_mutex_unlock(&srv->lim.mu);
  }
  for (int i = 0; i < n; i++) {
    uint8_t f = 0;
    if (limiting) {
      ckey_t key;
      key_of(&s->peer[i], &key);
      if (!lim_take(&srv->lim, &key, now)) {
        limited++;
        continue;
      }
      f = REC_CHARGED;
    }
    uint32_t v4;
    size_t len = 0;
    int outcome = 0;
    uint8_t *out = s->out + (size_t)nout * OUT_SIZE;
    if (t && t->answer && !(s->rmsg[i].msg_hdr.msg_flags & MSG_TRUNC) && peer_v4(&s->peer[i], &v4) && acl_allows_v4(t, v4)) {
      len = fast_answer(t, s->in + (size_t)i * SLOT_SIZE, s->rmsg[i].msg_len, out, &outcome);
    }
    if (len > 0) {
      outcomes[outcome]++;
      s->siov[nout].iov_base = out;
      s->siov[nout].iov_len = len;
      s->smsg[nout].msg_hdr = (struct msghdr){
          .msg_name = &s->peer[i], .msg_namelen = s->rmsg[i].msg_hdr.msg_namelen, .msg_iov = &s->siov[nout], .msg_iovlen = 1};
      nout++;
    } else {
      js[njs] = i;
      flags[njs] = f;
      njs++;
    }
  }
  if (limiting) pthread_mutex_unlock(&srv->lim.mu);
  pthread_rwlock_unlock(&srv->tlock);
  if (limited) atomic_fetch_add_explicit(&srv->rate_limited, limited, memory_order_relaxed);
  for (int k = 0; k < OUT_COUNT; k++) {
    if (outcomes[k]) atomic_fetch_add_explicit(&srv->outcomes[k], outcomes[k], memory_order_relaxed);
  }
  if (nout) send_batch(s, nout);
  hand_to_js(s, js, flags, njs);
  // after `handed`: JS counts a handed datagram once it takes it in, so stats read queries before
  // handed and never count one twice (nor before JS has seen it)
  atomic_fetch_add(&srv->queries, (uint64_t)n);
}

static void *sock_main(void *arg) {
  sock_t *s = arg;
  for (int i = 0; i < BATCH; i++) {
    s->riov[i].iov_base = s->in + (size_t)i * SLOT_SIZE;
    s->riov[i].iov_len = SLOT_SIZE;
  }
  while (!atomic_load(&s->stop)) {
    for (int i = 0; i < BATCH; i++) {
      s->rmsg[i].msg_hdr = (struct msghdr){
          .msg_name = &s->peer[i], .msg_namelen = sizeof s->peer[i], .msg_iov = &s->riov[i], .msg_iovlen = 1};
      s->rmsg[i].msg_len = 0;
    }
    int n = recvmmsg(s->fd, s->rmsg, BATCH, MSG_DONTWAIT, NULL);
    if (n > 0) {
      process_batch(s, n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      post_error(s, "dns: udp receive", errno);
      wait_ready(s, 0, 100);  // e.g. ENOMEM: do not spin
      continue;
    }
    wait_ready(s, POLLIN, -1);
  }
  return NULL;
}

static void sock_close(sock_t *s) {
  if (!s) return;
  if (s->started) {
    atomic_store(&s->stop, 1);
    uint64_t one = 1;
    if (write(s->evfd, &one, sizeof one) < 0) { /* the counter is already non-zero: awake anyway */ }
    pthread_join(s->thread, NULL);
  }
  if (s->fd >= 0) close(s->fd);
  if (s->evfd >= 0) close(s->evfd);
  free(s->in);
  free(s->out);
  free(s);
}

static void server_stop(server_t *srv) {
  if (srv->closed) return;
  srv->closed = 1;
  for (int i = 0; i < srv->nsocks; i++) {
    sock_close(srv->socks[i]);
    srv->socks[i] = NULL;
  }
  // what is big goes now, not when the handle is collected
  pthread_rwlock_wrlock(&srv->tlock);
  table_free(srv->table);
  srv->table = NULL;
  pthread_rwlock_unlock(&srv->tlock);
  pthread_mutex_lock(&srv->lim.mu);
  lim_reset(&srv->lim);
  srv->lim.rate = 0;
  atomic_store_explicit(&srv->lim.on, 0, memory_order_release);
  pthread_mutex_unlock(&srv->lim.mu);
  // datagrams still queued for JS are dropped: call_js frees them without an env
  if (srv->tsfn) napi_release_threadsafe_function(srv->tsfn, napi_tsfn_abort);
  else srv->tsfn_gone = 1;
}

static void server_free(server_t *srv) {
  table_free(srv->table);
  lim_reset(&srv->lim);
  pthread_mutex_destroy(&srv->lim.mu);
  pthread_rwlock_destroy(&srv->tlock);
  free(srv);
}

static void tsfn_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  server_t *srv = data;
  srv->tsfn_gone = 1;
  if (srv->handle_gone) server_free(srv);
}

static void handle_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  server_t *srv = data;
  server_stop(srv);
  srv->handle_gone = 1;
  if (srv->tsfn_gone) server_free(srv);
}

// Runs on the JS thread: onEvent(batch: Buffer | null, error: string | null).
static void call_js(napi_env env, napi_value js_cb, void *context, void *data) {
  handoff_t *h = data;
  server_t *srv = context;
  if (env != NULL && js_cb != NULL) {
    if (!h->is_error) atomic_fetch_sub_explicit(&srv->queued, h->len, memory_order_relaxed);
    napi_value args[2], undef;
    napi_get_null(env, &args[0]);
    napi_get_null(env, &args[1]);
    if (h->is_error) napi_create_string_utf8(env, (const char *)h->bytes, h->len, &args[1]);
    else napi_create_buffer_copy(env, h->len, h->bytes, NULL, &args[0]);
    napi_get_undefined(env, &undef);
    napi_call_function(env, undef, js_cb, 2, args, NULL);
  }
  free(h);
}

static server_t *get_server(napi_env env, napi_value v, int open) {
  server_t *srv = NULL;
  if (napi_get_value_external(env, v, (void **)&srv) != napi_ok || srv == NULL) {
    napi_throw_type_error(env, "E_NATIVE", "expected a DNS fast-path handle");
    return NULL;
  }
  if (open && srv->closed) {
    napi_throw_error(env, "E_NATIVE", "DNS fast path is closed");
    return NULL;
  }
  return srv;
}

static sock_t *get_sock(napi_env env, server_t *srv, napi_value v) {
  int32_t i = -1;
  if (napi_get_value_int32(env, v, &i) != napi_ok || i < 0 || i >= srv->nsocks || srv->socks[i] == NULL) {
    napi_throw_range_error(env, "E_NATIVE", "no such fast-path socket");
    return NULL;
  }
  return srv->socks[i];
}

// ---------------------------------------------------------------------------------------------
// The JS API (src/dns/fastpath/index.ts, FastPathBinding).

// dnsCreate(onEvent): handle
static napi_value DnsCreate(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  napi_valuetype ty;
  if (argc != 1 || napi_typeof(env, argv[0], &ty) != napi_ok || ty != napi_function) {
    napi_throw_type_error(env, "E_NATIVE", "dnsCreate(onEvent: function)");
    return NULL;
  }
  server_t *srv = calloc(1, sizeof *srv);
  if (!srv) return throw_errno(env, "E_NATIVE", "dnsCreate", ENOMEM);
  pthread_rwlockattr_t attr;
  pthread_rwlockattr_init(&attr);
  // several socket threads read; a table update must not wait behind them forever
  pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init(&srv->tlock, &attr);
  pthread_rwlockattr_destroy(&attr);
  pthread_mutex_init(&srv->lim.mu, NULL);
  if (getrandom(&srv->lim.seed, sizeof srv->lim.seed, GRND_NONBLOCK) != (ssize_t)sizeof srv->lim.seed) {
    srv->lim.seed = (uint64_t)now_ms() ^ (uint64_t)(uintptr_t)srv;
  }
  napi_value name;
  if (napi_create_string_utf8(env, "apns-proxy dns", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_threadsafe_function(env, argv[0], NULL, name, 0, 1, srv, tsfn_finalize, srv, call_js, &srv->tsfn) != napi_ok) {
    server_free(srv);
    napi_throw_error(env, "E_NATIVE", "dnsCreate: cannot create the threadsafe function");
    return NULL;
  }
  // the listen sockets' TCP twins keep the process alive; this must not on its own
  napi_unref_threadsafe_function(env, srv->tsfn);
  napi_value handle;
  if (napi_create_external(env, srv, handle_finalize, NULL, &handle) != napi_ok) {
    server_stop(srv);  // the tsfn's finalizer frees nothing until the handle is gone: mark it so
    srv->handle_gone = 1;
    napi_throw_error(env, "E_NATIVE", "dnsCreate: cannot create the handle");
    return NULL;
  }
  return handle;
}

// dnsBind(handle, host, port, family): [index, port]. Binds, does not start reading yet.
static napi_value DnsBind(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 4) {
    napi_throw_type_error(env, "E_NATIVE", "dnsBind(handle, host, port, family)");
    return NULL;
  }
  server_t *srv = get_server(env, argv[0], 1);
  if (!srv) return NULL;
  char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
  size_t hostlen = 0;
  uint32_t port = 0, family = 0;
  if (napi_get_value_string_utf8(env, argv[1], host, sizeof host, &hostlen) != napi_ok ||
      napi_get_value_uint32(env, argv[2], &port) != napi_ok || napi_get_value_uint32(env, argv[3], &family) != napi_ok ||
      port > 65535 || (family != 4 && family != 6)) {
    napi_throw_type_error(env, "E_NATIVE", "dnsBind(handle, host: string, port: 0..65535, family: 4 | 6)");
    return NULL;
  }
  if (srv->nsocks >= MAX_SOCKETS) {
    napi_throw_range_error(env, "E_NATIVE_ADDR", "dnsBind: too many sockets");
    return NULL;
  }
  struct sockaddr_storage ss;
  socklen_t sslen;
  memset(&ss, 0, sizeof ss);
  if (family == 4) {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    sslen = sizeof *a;
    if (inet_pton(AF_INET, host, &a->sin_addr) != 1) goto not_literal;
  } else {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)port);
    sslen = sizeof *a;
    if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1) goto not_literal;
  }
  int fd = socket(family == 4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno_code(errno), "socket", errno);
  int size = UDP_BUFFER_BYTES;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);  // best effort, capped by rmem_max
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  if (bind(fd, (struct sockaddr *)&ss, sslen) < 0) {
    int e = errno;
    close(fd);
    char what[128];
    snprintf(what, sizeof what, "bind %s:%u", host, port);
    return throw_errno(env, errno_code(e), what, e);
  }
  struct sockaddr_storage bound;
  socklen_t blen = sizeof bound;
  if (getsockname(fd, (struct sockaddr *)&bound, &blen) < 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, "E_NATIVE", "getsockname", e);
  }
  sock_t *s = calloc(1, sizeof *s);
  if (!s) {
    close(fd);
    return throw_errno(env, "E_NATIVE", "dnsBind", ENOMEM);
  }
  s->srv = srv;
  s->fd = fd;
  s->evfd = -1;
  s->last_error = -1e9;
  s->index = srv->nsocks;
  srv->socks[srv->nsocks++] = s;
  uint16_t got = ntohs(bound.ss_family == AF_INET ? ((struct sockaddr_in *)&bound)->sin_port : ((struct sockaddr_in6 *)&bound)->sin6_port);
  napi_value out, v;
  NAPI_OK(napi_create_array_with_length(env, 2, &out));
  NAPI_OK(napi_create_int32(env, s->index, &v));
  NAPI_OK(napi_set_element(env, out, 0, v));
  NAPI_OK(napi_create_uint32(env, got, &v));
  NAPI_OK(napi_set_element(env, out, 1, v));
  return out;
not_literal:
  napi_throw_error(env, "E_NATIVE_ADDR", "dnsBind: not an IP address literal");
  return NULL;
}

// dnsStart(handle, index): starts the socket's thread.
static napi_value DnsStart(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  server_t *srv = argc == 2 ? get_server(env, argv[0], 1) : NULL;
  if (!srv) return NULL;
  sock_t *s = get_sock(env, srv, argv[1]);
  if (!s) return NULL;
  if (s->started) return NULL;
  if (!s->in) s->in = malloc((size_t)BATCH * SLOT_SIZE);  // untouched pages cost no memory
  if (!s->out) s->out = malloc((size_t)BATCH * OUT_SIZE);
  if (s->evfd < 0) s->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (!s->in || !s->out) return throw_errno(env, "E_NATIVE", "dnsStart", ENOMEM);
  if (s->evfd < 0) return throw_errno(env, "E_NATIVE", "dnsStart: eventfd", errno);
  int err = pthread_create(&s->thread, NULL, sock_main, s);
  if (err != 0) return throw_errno(env, "E_NATIVE", "dnsStart: pthread_create", err);
  s->started = 1;
  return NULL;
}

// dnsCloseSocket(handle, index): stops and closes one socket (the others go on).
static napi_value DnsCloseSocket(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  server_t *srv = argc == 2 ? get_server(env, argv[0], 0) : NULL;
  if (!srv || srv->closed) return NULL;
  sock_t *s = get_sock(env, srv, argv[1]);
  if (!s) return NULL;
  srv->socks[s->index] = NULL;
  sock_close(s);
  return NULL;
}

// dnsSend(handle, index, bytes, sockaddr): 0, or the errno of a failed send (never blocks).
static napi_value DnsSend(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  server_t *srv = argc == 4 ? get_server(env, argv[0], 0) : NULL;
  if (!srv) return NULL;
  int32_t i = -1;
  void *data = NULL, *sa = NULL;
  size_t len = 0, salen = 0;
  if (napi_get_value_int32(env, argv[1], &i) != napi_ok || napi_get_buffer_info(env, argv[2], &data, &len) != napi_ok ||
      napi_get_buffer_info(env, argv[3], &sa, &salen) != napi_ok || salen > sizeof(struct sockaddr_storage)) {
    napi_throw_type_error(env, "E_NATIVE", "dnsSend(handle, index, bytes: Buffer, sockaddr: Buffer)");
    return NULL;
  }
  int err = EBADF;  // closed meanwhile (a forward finishing after close): nothing to send on
  if (!srv->closed && i >= 0 && i < srv->nsocks && srv->socks[i] != NULL) {
    struct sockaddr_storage to;
    memset(&to, 0, sizeof to);
    memcpy(&to, sa, salen);
    ssize_t n = sendto(srv->socks[i]->fd, data, len, MSG_DONTWAIT, (struct sockaddr *)&to, (socklen_t)salen);
    err = n < 0 ? errno : 0;
    if (err) atomic_fetch_add_explicit(&srv->send_errors, 1, memory_order_relaxed);
  }
  napi_value out;
  NAPI_OK(napi_create_int32(env, err, &out));
  return out;
}

// dnsSetTable(handle, encoded): adopts a new table (throws, keeping the old one, if it is invalid).
static napi_value DnsSetTable(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  server_t *srv = argc == 2 ? get_server(env, argv[0], 1) : NULL;
  if (!srv) return NULL;
  void *data = NULL;
  size_t len = 0;
  if (napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok) {
    napi_throw_type_error(env, "E_NATIVE", "dnsSetTable(handle, table: Buffer)");
    return NULL;
  }
  const char *why = "invalid";
  table_t *t = table_parse(data, len, &why);
  if (!t) {
    char msg[128];
    snprintf(msg, sizeof msg, "dnsSetTable: %s", why);
    napi_throw_range_error(env, "E_NATIVE", msg);
    return NULL;
  }
  pthread_rwlock_wrlock(&srv->tlock);
  table_t *old = srv->table;
  srv->table = t;
  pthread_rwlock_unlock(&srv->tlock);
  table_free(old);
  return NULL;
}

// dnsSetRateLimit(handle, rate, maxKeys): fresh buckets at `rate` queries/s per client (0: off).
static napi_value DnsSetRateLimit(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  server_t *srv = argc == 3 ? get_server(env, argv[0], 1) : NULL;
  if (!srv) return NULL;
  double rate = 0;
  uint32_t max_keys = 0;
  if (napi_get_value_double(env, argv[1], &rate) != napi_ok || napi_get_value_uint32(env, argv[2], &max_keys) != napi_ok ||
      !(rate >= 0) || rate > 1e9 || (rate > 0 && rate < 1) || max_keys < 1 || max_keys > (1u << 24)) {
    napi_throw_range_error(env, "E_NATIVE", "dnsSetRateLimit(handle, rate: 0 or 1..1e9, maxKeys: 1..16777216)");
    return NULL;
  }
  pthread_mutex_lock(&srv->lim.mu);
  lim_reset(&srv->lim);
  srv->lim.rate = rate;
  srv->lim.burst = rate;  // as server.ts builds TokenBuckets(rate, rate, ...)
  srv->lim.max_keys = max_keys;
  atomic_store_explicit(&srv->lim.on, rate > 0, memory_order_release);
  pthread_mutex_unlock(&srv->lim.mu);
  return NULL;
}

// dnsTake(handle, address): takes a token for a client (TCP queries); true when off.
static napi_value DnsTake(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  server_t *srv = argc == 2 ? get_server(env, argv[0], 0) : NULL;
  if (!srv) return NULL;
  char text[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
  size_t tl = 0;
  if (napi_get_value_string_utf8(env, argv[1], text, sizeof text, &tl) != napi_ok) {
    napi_throw_type_error(env, "E_NATIVE", "dnsTake(handle, address: string)");
    return NULL;
  }
  struct sockaddr_storage ss;
  ckey_t key;
  if (!parse_address(text, &ss)) {
    memset(&key, 0, sizeof key);  // not an address (never from Node): one shared bucket
    key.b[0] = 1;
  } else {
    key_of(&ss, &key);
  }
  int ok = 1;
  if (atomic_load_explicit(&srv->lim.on, memory_order_acquire)) {
    pthread_mutex_lock(&srv->lim.mu);
    if (srv->lim.rate > 0) ok = lim_take(&srv->lim, &key, now_ms());
    pthread_mutex_unlock(&srv->lim.mu);
  }
  napi_value out;
  NAPI_OK(napi_get_boolean(env, ok, &out));
  return out;
}

// dnsDecide(handle, msg, address): the reply the fast path would send to this datagram from this
// client, or null when it would hand it to JS. The rate limit is not consulted. For tests.
static napi_value DnsDecide(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  server_t *srv = argc == 3 ? get_server(env, argv[0], 0) : NULL;
  if (!srv) return NULL;
  void *data = NULL;
  size_t len = 0;
  char text[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
  size_t tl = 0;
  if (napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok || napi_get_value_string_utf8(env, argv[2], text, sizeof text, &tl) != napi_ok) {
    napi_throw_type_error(env, "E_NATIVE", "dnsDecide(handle, msg: Buffer, address: string)");
    return NULL;
  }
  struct sockaddr_storage ss;
  uint8_t out[OUT_SIZE];
  size_t n = 0;
  int outcome = 0;
  uint32_t v4;
  pthread_rwlock_rdlock(&srv->tlock);
  const table_t *t = srv->table;
  if (t && t->answer && parse_address(text, &ss) && peer_v4(&ss, &v4) && acl_allows_v4(t, v4)) {
    n = fast_answer(t, data, len, out, &outcome);
  }
  pthread_rwlock_unlock(&srv->tlock);
  napi_value result;
  if (n == 0) NAPI_OK(napi_get_null(env, &result));
  else NAPI_OK(napi_create_buffer_copy(env, n, out, NULL, &result));
  return result;
}

static napi_status set_count(napi_env env, napi_value obj, const char *key, uint64_t v) {
  napi_value n;
  napi_status st = napi_create_double(env, (double)v, &n);
  return st == napi_ok ? napi_set_named_property(env, obj, key, n) : st;
}

// dnsStats(handle): counters since dnsCreate.
static napi_value DnsStats(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], obj;
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  server_t *srv = argc == 1 ? get_server(env, argv[0], 0) : NULL;
  if (!srv) return NULL;
  pthread_mutex_lock(&srv->lim.mu);
  uint64_t clients = srv->lim.rate > 0 ? srv->lim.n : 0;
  pthread_mutex_unlock(&srv->lim.mu);
  NAPI_OK(napi_create_object(env, &obj));
  NAPI_OK(set_count(env, obj, "queries", atomic_load(&srv->queries)));  // before handedToJs: see process_batch
  NAPI_OK(set_count(env, obj, "rateLimited", atomic_load(&srv->rate_limited)));
  NAPI_OK(set_count(env, obj, "handedToJs", atomic_load(&srv->handed)));
  NAPI_OK(set_count(env, obj, "handoffDropped", atomic_load(&srv->handoff_dropped)));
  NAPI_OK(set_count(env, obj, "sendErrors", atomic_load(&srv->send_errors)));
  NAPI_OK(set_count(env, obj, "courier", atomic_load(&srv->outcomes[OUT_COURIER])));
  NAPI_OK(set_count(env, obj, "nodata", atomic_load(&srv->outcomes[OUT_NODATA])));
  NAPI_OK(set_count(env, obj, "nxdomain", atomic_load(&srv->outcomes[OUT_NXDOMAIN])));
  NAPI_OK(set_count(env, obj, "rateLimitClients", clients));
  return obj;
}

// dnsClose(handle): stops every socket's thread and closes the sockets. Idempotent.
static napi_value DnsClose(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  server_t *srv = argc == 1 ? get_server(env, argv[0], 0) : NULL;
  if (!srv) return NULL;
  server_stop(srv);
  return NULL;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"dnsCreate", NULL, DnsCreate, NULL, NULL, NULL, napi_default, NULL},
      {"dnsBind", NULL, DnsBind, NULL, NULL, NULL, napi_default, NULL},
      {"dnsStart", NULL, DnsStart, NULL, NULL, NULL, napi_default, NULL},
      {"dnsCloseSocket", NULL, DnsCloseSocket, NULL, NULL, NULL, napi_default, NULL},
      {"dnsSend", NULL, DnsSend, NULL, NULL, NULL, napi_default, NULL},
      {"dnsSetTable", NULL, DnsSetTable, NULL, NULL, NULL, napi_default, NULL},
      {"dnsSetRateLimit", NULL, DnsSetRateLimit, NULL, NULL, NULL, napi_default, NULL},
      {"dnsTake", NULL, DnsTake, NULL, NULL, NULL, napi_default, NULL},
      {"dnsDecide", NULL, DnsDecide, NULL, NULL, NULL, napi_default, NULL},
      {"dnsStats", NULL, DnsStats, NULL, NULL, NULL, napi_default, NULL},
      {"dnsClose", NULL, DnsClose, NULL, NULL, NULL, napi_default, NULL},
  };
  NAPI_OK(napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
