// apns-proxy native helper (Node-API, Linux only). Two things Node cannot do by itself:
//  1. listenTransparent(): a listening TCP socket with IP_TRANSPARENT, so TPROXY can hand it
//     connections addressed to any VIP (the accepted socket's local address is the original
//     destination). Node adopts the fd with server.listen({ fd }).
//  2. a relay thread: once both sockets of a fallback connection are connected, JS hands their
//     fds over and forgets them; one epoll thread moves bytes both ways with backpressure and
//     half-close. An idle connection then costs a small struct here, not two Node streams.
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>

#include "napi_errors.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SCRATCH_SIZE (256 * 1024)  // one buffer per relay thread, shared by all connections
#define SPLICE_CHUNK (1024 * 1024)  // asked per splice(); the pipe's capacity bounds what moves
#define POOL_MAX 64                 // empty pipes kept for reuse
#define PIPES_MAX 1024              // pipes in use at once; beyond it, connections copy through scratch
#define MAX_EVENTS 256

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

// ---------------------------------------------------------------------------------------------
// listenTransparent(host: string, port: number, backlog: number): number (fd)

static napi_value ListenTransparent(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char host[64];
  size_t hostlen = 0;
  uint32_t port = 0;
  int32_t backlog = 0;
  if (argc != 3 || napi_get_value_string_utf8(env, argv[0], host, sizeof host, &hostlen) != napi_ok ||
      napi_get_value_uint32(env, argv[1], &port) != napi_ok || napi_get_value_int32(env, argv[2], &backlog) != napi_ok) {
    napi_throw_type_error(env, "E_NATIVE", "listenTransparent(host: string, port: number, backlog: number)");
    return NULL;
  }
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (port == 0 || port > 65535 || inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
    char msg[128];
    snprintf(msg, sizeof msg, "listenTransparent: bad IPv4 address or port: %s:%u", host, port);
    napi_throw_range_error(env, "E_NATIVE", msg);
    return NULL;
  }
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "E_LISTEN", "socket", errno);
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, "E_LISTEN", "setsockopt(SO_REUSEADDR)", e);
  }
  // IP_TRANSPARENT needs CAP_NET_ADMIN: the accepted sockets may then own non-local addresses.
  if (setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof one) < 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, "E_LISTEN", "setsockopt(IP_TRANSPARENT) (needs CAP_NET_ADMIN)", e);
  }
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
    int e = errno;
    close(fd);
    char what[128];
    snprintf(what, sizeof what, "bind %s:%u", host, port);
    return throw_errno(env, "E_LISTEN", what, e);
  }
  if (listen(fd, backlog > 0 ? backlog : 511) < 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, "E_LISTEN", "listen", e);
  }
  napi_value out;
  if (napi_create_int32(env, fd, &out) != napi_ok) {
    close(fd);
    napi_throw_error(env, "E_NATIVE", "listenTransparent: Node-API call failed");
    return NULL;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The relay.

// Bytes read from one side and not yet written to the other. Data moves by splice(2) through a
// pipe borrowed from the thread's pool for as long as bytes sit in it (zero copy, and an idle
// connection holds no pipe); when no pipe can be had it is copied through the scratch buffer,
// and only what the peer could not take is kept in `data`.
typedef struct {
  char *data;  // malloc'd only while the peer cannot take what we copied (backpressure)
  size_t off, len;
  int pipe[2];      // borrowed pipe (read end, write end), -1 when none
  size_t in_pipe;   // bytes waiting in it
} pending_t;

struct conn;
typedef struct {
  struct conn *c;
  int i;  // 0 = client side, 1 = courier side
} side_t;

typedef struct conn {
  struct conn *prev, *next;
  int fd[2];
  pending_t pend[2];   // pend[i]: read from fd[i], waiting to be written to fd[1-i]
  uint8_t rd_eof[2];   // fd[i] returned EOF
  uint8_t wr_shut[2];  // shutdown(fd[i], SHUT_WR) done
  uint8_t dead;        // closed; freed after the current batch of events
  uint64_t bytes[2];   // bytes moved from fd[i] to fd[1-i]
  int64_t last;        // last activity, ms monotonic
  double id;
  side_t side[2];
} conn_t;

typedef struct {
  double id;
  double bytes_up, bytes_down;  // client → courier, courier → client
  const char *reason;           // static string
  int err;
} close_event_t;

typedef struct {
  int epfd, evfd;
  pthread_t thread;
  int thread_started;
  pthread_mutex_t mu;
  conn_t *incoming;  // handed over by JS, not yet registered (guarded by mu)
  atomic_int stop;
  conn_t *head;      // every live connection (relay thread only)
  conn_t *graveyard; // closed during this batch, freed after it
  _Atomic int64_t idle_ms;  // set by JS on a reload (relaySetIdleTimeout), read by the thread
  atomic_int retime;        // idle_ms changed: the thread reschedules its next sweep
  char *scratch;
  int pool[POOL_MAX][2];  // empty pipes ready for reuse
  int pooled;
  int pipes;              // pipes in existence (pooled or lent)
  int splice_off;         // splice refused (old kernel, odd socket): copy only
  napi_threadsafe_function tsfn;
  atomic_uint_fast64_t active, total, bytes;
  int closed;        // close() was called from JS
} relay_t;

static size_t waiting(const pending_t *p) {
  return p->len + p->in_pipe;
}

static void pipe_destroy(relay_t *r, int fds[2]) {
  close(fds[0]);
  close(fds[1]);
  r->pipes--;
}

// Lends a pipe to a direction: from the pool, else a new one, unless PIPES_MAX are out.
static int pipe_borrow(relay_t *r, pending_t *p) {
  if (r->splice_off) return 0;
  if (r->pooled > 0) {
    r->pooled--;
    p->pipe[0] = r->pool[r->pooled][0];
    p->pipe[1] = r->pool[r->pooled][1];
    return 1;
  }
  if (r->pipes >= PIPES_MAX || pipe2(p->pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
    p->pipe[0] = p->pipe[1] = -1;
    return 0;
  }
  // The default 64 KiB capacity, on purpose: bench/tput-ab measured 256 KiB pipes 7 % slower
  // (bigger bursts per wakeup, less overlap between reading one side and writing the other).
  r->pipes++;
  return 1;
}

// Gives a pipe back: to the pool when empty, else (bytes of a closed connection in it) destroyed.
static void pipe_return(relay_t *r, pending_t *p) {
  if (p->pipe[0] < 0) return;
  if (p->in_pipe == 0 && r->pooled < POOL_MAX) {
    r->pool[r->pooled][0] = p->pipe[0];
    r->pool[r->pooled][1] = p->pipe[1];
    r->pooled++;
  } else {
    pipe_destroy(r, p->pipe);
  }
  p->pipe[0] = p->pipe[1] = -1;
  p->in_pipe = 0;
}

static void notify_close(relay_t *r, conn_t *c, const char *reason, int err) {
  close_event_t *ev = malloc(sizeof *ev);
  if (!ev) return;
  ev->id = c->id;
  ev->bytes_up = (double)c->bytes[0];
  ev->bytes_down = (double)c->bytes[1];
  ev->reason = reason;
  ev->err = err;
  if (napi_call_threadsafe_function(r->tsfn, ev, napi_tsfn_nonblocking) != napi_ok) free(ev);
}

// Closes both sockets now; the struct is freed after the batch (a later event may still name it).
static void conn_close(relay_t *r, conn_t *c, const char *reason, int err, int abortive) {
  if (c->dead) return;
  c->dead = 1;
  for (int i = 0; i < 2; i++) {
    epoll_ctl(r->epfd, EPOLL_CTL_DEL, c->fd[i], NULL);
    if (abortive) {
      // One side failed: reset the other too, so its peer learns at once rather than by timeout.
      struct linger lg = {.l_onoff = 1, .l_linger = 0};
      setsockopt(c->fd[i], SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(c->fd[i]);
    free(c->pend[i].data);
    c->pend[i].data = NULL;
    pipe_return(r, &c->pend[i]);
  }
  if (c->prev) c->prev->next = c->next; else r->head = c->next;
  if (c->next) c->next->prev = c->prev;
  c->next = r->graveyard;
  r->graveyard = c;
  atomic_fetch_sub(&r->active, 1);
  notify_close(r, c, reason, err);
}

static void bury(relay_t *r) {
  while (r->graveyard) {
    conn_t *c = r->graveyard;
    r->graveyard = c->next;
    free(c);
  }
}

// Writes what waits in pend[from] to fd[1-from]. Returns 0 (done or would block), or an errno.
static int flush(relay_t *r, conn_t *c, int from) {
  pending_t *p = &c->pend[from];
  while (p->in_pipe > 0) {
    ssize_t n = splice(p->pipe[0], NULL, c->fd[1 - from], NULL, p->in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      return errno;
    }
    p->in_pipe -= (size_t)n;
    c->bytes[from] += (uint64_t)n;
    atomic_fetch_add(&r->bytes, (uint64_t)n);
  }
  if (p->pipe[0] >= 0) pipe_return(r, p);  // drained: an idle connection holds no pipe
  while (p->len > 0) {
    ssize_t n = send(c->fd[1 - from], p->data + p->off, p->len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      return errno;
    }
    p->off += (size_t)n;
    p->len -= (size_t)n;
    c->bytes[from] += (uint64_t)n;
    atomic_fetch_add(&r->bytes, (uint64_t)n);
  }
  free(p->data);
  p->data = NULL;
  p->off = 0;
  return 0;
}

// Moves bytes fd[from] → fd[1-from] until the source would block, ends, or the destination is
// full (then the rest waits in pend[from] and this side is not read again until it drained).
static int pump(relay_t *r, conn_t *c, int from) {
  int to = 1 - from;
  pending_t *p = &c->pend[from];
  while (!c->rd_eof[from] && waiting(p) == 0 && (p->pipe[0] >= 0 || pipe_borrow(r, p))) {
    ssize_t n = splice(c->fd[from], NULL, p->pipe[1], NULL, SPLICE_CHUNK, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        pipe_return(r, p);
        return 0;
      }
      if (errno == EINVAL || errno == ENOSYS) {  // cannot splice here: copy from now on
        r->splice_off = 1;
        pipe_return(r, p);
        break;
      }
      return errno;
    }
    if (n == 0) {
      c->rd_eof[from] = 1;
      pipe_return(r, p);
      return 0;
    }
    p->in_pipe = (size_t)n;
    int err = flush(r, c, from);  // what the destination cannot take stays in the pipe
    if (err) return err;
  }
  while (!c->rd_eof[from] && waiting(p) == 0) {
    ssize_t n = recv(c->fd[from], r->scratch, SCRATCH_SIZE, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      return errno;
    }
    if (n == 0) {
      c->rd_eof[from] = 1;
      return 0;
    }
    size_t off = 0;
    while (off < (size_t)n) {
      ssize_t w = send(c->fd[to], r->scratch + off, (size_t)n - off, MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        return errno;
      }
      off += (size_t)w;
    }
    c->bytes[from] += off;
    atomic_fetch_add(&r->bytes, off);
    if (off < (size_t)n) {
      size_t rest = (size_t)n - off;
      c->pend[from].data = malloc(rest);
      if (!c->pend[from].data) return ENOMEM;
      memcpy(c->pend[from].data, r->scratch + off, rest);
      c->pend[from].off = 0;
      c->pend[from].len = rest;
    }
  }
  return 0;
}

static const char *const READ_FAIL[2] = {"client read failed", "courier read failed"};
static const char *const WRITE_FAIL[2] = {"courier write failed", "client write failed"};  // indexed by source

// Edge-triggered: every event on either side re-runs both directions until nothing moves.
static void progress(relay_t *r, conn_t *c) {
  for (int from = 0; from < 2; from++) {
    int err;
    if (waiting(&c->pend[from]) > 0 && (err = flush(r, c, from)) != 0) return conn_close(r, c, WRITE_FAIL[from], err, 1);
    if ((err = pump(r, c, from)) != 0) {
      // a send failure inside pump is the destination's; a recv failure the source's
      return conn_close(r, c, err == EPIPE || err == ENOTCONN ? WRITE_FAIL[from] : READ_FAIL[from], err, 1);
    }
    // the source ended and all it sent was delivered: pass the FIN on (half-close)
    if (c->rd_eof[from] && waiting(&c->pend[from]) == 0 && !c->wr_shut[1 - from]) {
      shutdown(c->fd[1 - from], SHUT_WR);
      c->wr_shut[1 - from] = 1;
    }
  }
  if (c->rd_eof[0] && c->rd_eof[1] && waiting(&c->pend[0]) == 0 && waiting(&c->pend[1]) == 0) conn_close(r, c, "closed", 0, 0);
}

static void handle(relay_t *r, side_t *s, uint32_t revents) {
  conn_t *c = s->c;
  if (c->dead) return;
  c->last = now_ms();
  if (revents & EPOLLERR) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd[s->i], SOL_SOCKET, SO_ERROR, &err, &len);
    return conn_close(r, c, s->i == 0 ? "client error" : "courier error", err, 1);
  }
  progress(r, c);
}

static void register_incoming(relay_t *r) {
  uint64_t v;
  while (read(r->evfd, &v, sizeof v) > 0) {
  }
  pthread_mutex_lock(&r->mu);
  conn_t *list = r->incoming;
  r->incoming = NULL;
  pthread_mutex_unlock(&r->mu);
  while (list) {
    conn_t *c = list;
    list = c->next;
    c->prev = NULL;
    c->next = r->head;
    if (r->head) r->head->prev = c;
    r->head = c;
    int err = 0;
    for (int i = 0; i < 2 && !err; i++) {
      struct epoll_event e = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = &c->side[i]};
      if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, c->fd[i], &e) < 0) err = errno;
    }
    if (err) conn_close(r, c, "epoll registration failed", err, 1);
    else progress(r, c);  // bytes may already be waiting (the client spoke before the courier answered)
  }
}

static void sweep_idle(relay_t *r) {
  int64_t now = now_ms();
  for (conn_t *c = r->head, *next; c; c = next) {
    next = c->next;
    if (now - c->last >= atomic_load(&r->idle_ms)) conn_close(r, c, "idle timeout", 0, 0);
  }
}

// How often idle connections are looked for: a quarter of the timeout, within 20 ms..5 s.
static int64_t sweep_interval(relay_t *r) {
  int64_t every = atomic_load(&r->idle_ms) / 4;
  return every > 5000 ? 5000 : every < 20 ? 20 : every;
}

static void *relay_main(void *arg) {
  relay_t *r = arg;
  struct epoll_event events[MAX_EVENTS];
  int64_t next_sweep = now_ms() + sweep_interval(r);
  while (!atomic_load(&r->stop)) {
    int64_t wait = next_sweep - now_ms();
    int n = epoll_wait(r->epfd, events, MAX_EVENTS, wait < 0 ? 0 : (int)wait);
    for (int k = 0; k < n; k++) {
      if (events[k].data.ptr == NULL) register_incoming(r);
      else handle(r, events[k].data.ptr, events[k].events);
    }
    // a plain load first: the locked exchange only on the rare wake-up that follows a reload
    if (atomic_load_explicit(&r->retime, memory_order_relaxed) && atomic_exchange(&r->retime, 0)) next_sweep = now_ms() + sweep_interval(r);
    if (now_ms() >= next_sweep) {
      sweep_idle(r);
      next_sweep = now_ms() + sweep_interval(r);
    }
    bury(r);
  }
  while (r->head) conn_close(r, r->head, "relay stopped", 0, 0);
  bury(r);
  return NULL;
}

static void call_js(napi_env env, napi_value js_cb, void *context, void *data) {
  close_event_t *ev = data;
  (void)context;
  if (env != NULL && js_cb != NULL) {
    napi_value obj, v, undef;
    napi_create_object(env, &obj);
    napi_create_double(env, ev->id, &v);
    napi_set_named_property(env, obj, "id", v);
    napi_create_double(env, ev->bytes_up, &v);
    napi_set_named_property(env, obj, "bytesUp", v);
    napi_create_double(env, ev->bytes_down, &v);
    napi_set_named_property(env, obj, "bytesDown", v);
    napi_create_string_utf8(env, ev->reason, NAPI_AUTO_LENGTH, &v);
    napi_set_named_property(env, obj, "reason", v);
    napi_create_string_utf8(env, ev->err ? strerror(ev->err) : "", NAPI_AUTO_LENGTH, &v);
    napi_set_named_property(env, obj, "error", v);
    napi_get_undefined(env, &undef);
    napi_call_function(env, undef, js_cb, 1, &obj, NULL);
  }
  free(ev);
}

static void relay_stop(relay_t *r) {
  if (r->closed) return;
  r->closed = 1;
  atomic_store(&r->stop, 1);
  uint64_t one = 1;
  if (write(r->evfd, &one, sizeof one) < 0) { /* the thread also wakes on its sweep timer */ }
  if (r->thread_started) pthread_join(r->thread, NULL);
  // connections handed over but never registered
  while (r->incoming) {
    conn_t *c = r->incoming;
    r->incoming = c->next;
    close(c->fd[0]);
    close(c->fd[1]);
    free(c);
  }
  if (r->epfd >= 0) close(r->epfd);
  if (r->evfd >= 0) close(r->evfd);
  while (r->pooled > 0) pipe_destroy(r, r->pool[--r->pooled]);
  free(r->scratch);
  r->scratch = NULL;
  if (r->tsfn) napi_release_threadsafe_function(r->tsfn, napi_tsfn_release);
}

static void relay_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  relay_t *r = data;
  relay_stop(r);
  pthread_mutex_destroy(&r->mu);
  free(r);
}

static relay_t *get_relay(napi_env env, napi_value v) {
  relay_t *r = NULL;
  if (napi_get_value_external(env, v, (void **)&r) != napi_ok || r == NULL) {
    napi_throw_type_error(env, "E_NATIVE", "expected a relay handle");
    return NULL;
  }
  if (r->closed) {
    napi_throw_error(env, "E_NATIVE", "relay is closed");
    return NULL;
  }
  return r;
}

// relayCreate(idleTimeoutMs: number, onClose: (event) => void): handle
static napi_value RelayCreate(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  double idle = 0;
  napi_valuetype t;
  if (argc != 2 || napi_get_value_double(env, argv[0], &idle) != napi_ok || !(idle >= 1) ||
      napi_typeof(env, argv[1], &t) != napi_ok || t != napi_function) {
    napi_throw_type_error(env, "E_NATIVE", "relayCreate(idleTimeoutMs >= 1, onClose: function)");
    return NULL;
  }
  relay_t *r = calloc(1, sizeof *r);
  if (!r) return throw_errno(env, "E_NATIVE", "relayCreate", ENOMEM);
  r->epfd = r->evfd = -1;  // not opened yet (0 from calloc is a valid fd)
  r->idle_ms = (int64_t)idle;
  pthread_mutex_init(&r->mu, NULL);
  // Every failure below goes to `fail`, which undoes all that was done (relay_finalize: stops the
  // thread if it runs, closes the fds, releases the threadsafe function, frees): nothing leaks.
  const char *what = "relayCreate";
  int err = 0;
  napi_value name, handle;
  r->scratch = malloc(SCRATCH_SIZE);
  if (!r->scratch) {
    err = ENOMEM;
    goto fail;
  }
  r->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (r->epfd < 0) {
    err = errno;
    what = "relayCreate: epoll_create1";
    goto fail;
  }
  r->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (r->evfd < 0) {
    err = errno;
    what = "relayCreate: eventfd";
    goto fail;
  }
  // the wake-up fd: without it the thread would never see new connections nor a stop
  struct epoll_event e = {.events = EPOLLIN, .data.ptr = NULL};
  if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->evfd, &e) < 0) {
    err = errno;
    what = "relayCreate: epoll_ctl";
    goto fail;
  }
  what = "relayCreate: Node-API call failed";
  if (napi_create_string_utf8(env, "apns-proxy relay", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_threadsafe_function(env, argv[1], NULL, name, 0, 1, NULL, NULL, NULL, call_js, &r->tsfn) != napi_ok) {
    r->tsfn = NULL;
    goto fail;
  }
  // close notifications must not keep the process alive on their own
  if (napi_unref_threadsafe_function(env, r->tsfn) != napi_ok) goto fail;
  // pthread_create returns its error; it does not set errno
  err = pthread_create(&r->thread, NULL, relay_main, r);
  if (err != 0) {
    what = "pthread_create";
    goto fail;
  }
  r->thread_started = 1;
  err = 0;
  if (napi_create_external(env, r, relay_finalize, NULL, &handle) != napi_ok) goto fail;
  return handle;
fail:
  relay_finalize(env, r, NULL);
  if (err) return throw_errno(env, "E_NATIVE", what, err);
  napi_throw_error(env, "E_NATIVE", what);
  return NULL;
}

// relayAdd(handle, clientFd, courierFd, id): takes over duplicates of both fds; the caller then
// destroys its own sockets without shutting them down.
static napi_value RelayAdd(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 4) {
    napi_throw_type_error(env, "E_NATIVE", "relayAdd(handle, clientFd, courierFd, id)");
    return NULL;
  }
  relay_t *r = get_relay(env, argv[0]);
  if (!r) return NULL;
  int32_t fds[2];
  double id;
  if (napi_get_value_int32(env, argv[1], &fds[0]) != napi_ok || napi_get_value_int32(env, argv[2], &fds[1]) != napi_ok ||
      napi_get_value_double(env, argv[3], &id) != napi_ok || fds[0] < 0 || fds[1] < 0) {
    napi_throw_type_error(env, "E_NATIVE", "relayAdd: fds must be non-negative integers and id a number");
    return NULL;
  }
  conn_t *c = calloc(1, sizeof *c);
  if (!c) return throw_errno(env, "E_NATIVE", "relayAdd", ENOMEM);
  for (int i = 0; i < 2; i++) {
    c->fd[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);
    if (c->fd[i] < 0) {
      int e = errno;
      if (i == 1) close(c->fd[0]);
      free(c);
      return throw_errno(env, "E_NATIVE", "relayAdd: dup", e);
    }
    int fl = fcntl(c->fd[i], F_GETFL);
    fcntl(c->fd[i], F_SETFL, fl | O_NONBLOCK);
    // a relay should not add Nagle's wait to what the peer already sent (HAProxy does the same)
    int nodelay = 1;
    setsockopt(c->fd[i], IPPROTO_TCP, TCP_NODELAY, &nodelay, sizeof nodelay);
    c->side[i].c = c;
    c->side[i].i = i;
    c->pend[i].pipe[0] = c->pend[i].pipe[1] = -1;
  }
  c->id = id;
  c->last = now_ms();
  atomic_fetch_add(&r->active, 1);
  atomic_fetch_add(&r->total, 1);
  pthread_mutex_lock(&r->mu);
  c->next = r->incoming;
  r->incoming = c;
  pthread_mutex_unlock(&r->mu);
  uint64_t one = 1;
  if (write(r->evfd, &one, sizeof one) < 0) { /* counter saturated: the thread is awake anyway */ }
  return NULL;
}

// relayStats(handle): { active, total, bytes }
static napi_value RelayStats(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], obj, v;
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  relay_t *r = get_relay(env, argv[0]);
  if (!r) return NULL;
  NAPI_OK(napi_create_object(env, &obj));
  NAPI_OK(napi_create_double(env, (double)atomic_load(&r->active), &v));
  NAPI_OK(napi_set_named_property(env, obj, "active", v));
  NAPI_OK(napi_create_double(env, (double)atomic_load(&r->total), &v));
  NAPI_OK(napi_set_named_property(env, obj, "total", v));
  NAPI_OK(napi_create_double(env, (double)atomic_load(&r->bytes), &v));
  NAPI_OK(napi_set_named_property(env, obj, "bytes", v));
  return obj;
}

// relaySetIdleTimeout(handle, ms): a new idle timeout for every connection, current ones included;
// the thread is woken to reschedule its sweeps for it.
static napi_value RelaySetIdleTimeout(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  relay_t *r = argc == 2 ? get_relay(env, argv[0]) : NULL;
  if (!r) return NULL;
  double idle = 0;
  if (napi_get_value_double(env, argv[1], &idle) != napi_ok || !(idle >= 1) || idle > 9e15) {
    napi_throw_range_error(env, "E_NATIVE", "relaySetIdleTimeout(handle, idleTimeoutMs >= 1)");
    return NULL;
  }
  atomic_store(&r->idle_ms, (int64_t)idle);
  atomic_store(&r->retime, 1);
  uint64_t one = 1;
  if (write(r->evfd, &one, sizeof one) < 0) { /* counter saturated: the thread is awake anyway */ }
  return NULL;
}

// relayClose(handle): closes every relayed connection and stops the thread.
static napi_value RelayClose(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  relay_t *r = NULL;
  if (napi_get_value_external(env, argv[0], (void **)&r) != napi_ok || r == NULL) {
    napi_throw_type_error(env, "E_NATIVE", "expected a relay handle");
    return NULL;
  }
  relay_stop(r);
  return NULL;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"listenTransparent", NULL, ListenTransparent, NULL, NULL, NULL, napi_default, NULL},
      {"relayCreate", NULL, RelayCreate, NULL, NULL, NULL, napi_default, NULL},
      {"relayAdd", NULL, RelayAdd, NULL, NULL, NULL, napi_default, NULL},
      {"relayStats", NULL, RelayStats, NULL, NULL, NULL, napi_default, NULL},
      {"relaySetIdleTimeout", NULL, RelaySetIdleTimeout, NULL, NULL, NULL, napi_default, NULL},
      {"relayClose", NULL, RelayClose, NULL, NULL, NULL, napi_default, NULL},
  };
  NAPI_OK(napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
