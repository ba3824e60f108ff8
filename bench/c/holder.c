// bench/c/holder.c: opens N TCP connections from one source address (an APNs device each), waits
// for the server's one-byte greeting on every one (so the whole path, proxy included, is up), then
// holds them idle until told otherwise. At most --parallel connections are being set up at once.
//
//   holder --dst IP:PORT[,IP:PORT...] --count N [--src IP] [--parallel K] [--timeout-ms T] [--max-seconds S]
//
// stdout, one JSON line each:
//   after the opening phase      {"held":H,"failed":F,"errors":{"ECONNREFUSED":n,"TIMEOUT":n,...},"ms":M}
//   for every "check" on stdin   {"alive":A,"dropped":D,"noecho":E,"ms":M}
//        every held connection sends one byte and must get it echoed within 10 s; dropped = the peer
//        closed or reset it while it was held; noecho = still open but no echo in time
// "quit" on stdin, end of stdin, SIGTERM or --max-seconds (default 600): every socket is closed
// with RST (SO_LINGER 0), so neither side keeps TIME_WAIT, and the process exits.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
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

#include "load-common.h"

enum { FREE, CONNECTING, GREETING, HELD, CHECKING, DEAD };

typedef struct {
  int fd;
  uint8_t state;
  int64_t deadline;
} conn_t;

static conn_t *conns;
static int count;

static void kill_conn(int ep, conn_t *c) {
  if (c->fd >= 0) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
  }
  c->fd = -1;
  c->state = DEAD;
}

static void close_all_and_exit(int code) {
  for (int i = 0; i < count; i++) if (conns[i].fd >= 0) close(conns[i].fd);  // SO_LINGER 0: RST
  exit(code);
}

int main(int argc, char **argv) {
  char *dst = NULL, *src = NULL;
  int parallel = 256, timeout_ms = 10000;
  unsigned max_seconds = 600;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--dst") && i + 1 < argc) dst = argv[++i];
    else if (!strcmp(argv[i], "--src") && i + 1 < argc) src = argv[++i];
    else if (!strcmp(argv[i], "--count") && i + 1 < argc) count = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--parallel") && i + 1 < argc) parallel = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--timeout-ms") && i + 1 < argc) timeout_ms = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--max-seconds") && i + 1 < argc) max_seconds = (unsigned)atoi(argv[++i]);
    else { fprintf(stderr, "usage: holder --dst IP:PORT[,...] --count N [--src IP] [--parallel K] [--timeout-ms T] [--max-seconds S]\n"); return 2; }
  }
  if (!dst || parse_dst(dst) < 0 || count < 1 || count > 19000 || parallel < 1 || timeout_ms < 1 || max_seconds < 1) {
    fprintf(stderr, "holder: bad arguments (count 1..19000: one process stays under the 20000 open-file limit)\n");
    return 2;
  }
  struct sockaddr_in srcaddr = {.sin_family = AF_INET};
  if (src && inet_pton(AF_INET, src, &srcaddr.sin_addr) != 1) { fprintf(stderr, "holder: bad --src\n"); return 2; }
  rlim_t nofile = raise_nofile();
  if ((rlim_t)count + 16 > nofile) { fprintf(stderr, "holder: open-file limit %lu is too low for %d\n", (unsigned long)nofile, count); return 2; }
  stop_on_signals(1);
  alarm(max_seconds);

  conns = calloc((size_t)count, sizeof *conns);
  for (int i = 0; i < count; i++) conns[i].fd = -1;
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event se = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
  epoll_ctl(ep, EPOLL_CTL_ADD, 0, &se);

  int64_t t0 = now_ms(), next_scan = t0 + 100;
  int next = 0, inflight = 0, held = 0, failed = 0;
  int checking = 0, alive = 0, dropped = 0, noecho = 0;
  int64_t check_t0 = 0, check_deadline = 0;
  int phase = 0;  // 0 opening, 1 holding, 2 checking
  struct epoll_event evs[512];
  char buf[256];
  char line[256];
  size_t linelen = 0;

  while (!stop) {
    // open more while under the in-flight cap
    while (phase == 0 && next < count && inflight < parallel) {
      conn_t *c = &conns[next];
      const struct sockaddr_in *d = &dsts[next % ndst];
      next++;
      int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) { count_error(errname(errno)); failed++; c->state = DEAD; continue; }
      struct linger lg = {.l_onoff = 1, .l_linger = 0};
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
      if (src) {
        int one = 1;
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&srcaddr, sizeof srcaddr) < 0) { count_error(errname(errno)); failed++; close(fd); c->state = DEAD; continue; }
      }
      if (connect(fd, (const struct sockaddr *)d, sizeof *d) < 0 && errno != EINPROGRESS) {
        count_error(errname(errno)); failed++; close(fd); c->state = DEAD; continue;
      }
      c->fd = fd;
      c->state = CONNECTING;
      c->deadline = now_ms() + timeout_ms;
      struct epoll_event e = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)(c - conns)};
      epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
      inflight++;
    }
    if (phase == 0 && next >= count && inflight == 0) {
      phase = 1;
      printf("{\"held\":%d,\"failed\":%d,\"errors\":{", held, failed);
      for (int i = 0; i < NERR && err_names[i]; i++) printf("%s\"%s\":%ld", i ? "," : "", err_names[i], err_counts[i]);
      printf("},\"ms\":%ld}\n", (long)(now_ms() - t0));
      fflush(stdout);
    }
    if (phase == 2 && checking == 0) {
      phase = 1;
      printf("{\"alive\":%d,\"dropped\":%d,\"noecho\":%d,\"ms\":%ld}\n", alive, dropped, noecho, (long)(now_ms() - check_t0));
      fflush(stdout);
    }

    int n = epoll_wait(ep, evs, 512, 50);
    int64_t now = now_ms();
    for (int k = 0; k < n; k++) {
      uint32_t idx = evs[k].data.u32;
      if (idx == UINT32_MAX) {  // stdin: commands
        ssize_t r = read(0, line + linelen, sizeof line - 1 - linelen);
        if (r <= 0) close_all_and_exit(0);
        linelen += (size_t)r;
        char *nl;
        while ((nl = memchr(line, '\n', linelen)) != NULL) {
          *nl = 0;
          if (!strcmp(line, "quit")) close_all_and_exit(0);
          if (!strcmp(line, "check") && phase == 1) {
            phase = 2;
            alive = noecho = 0;
            dropped = 0;
            checking = 0;
            check_t0 = now;
            check_deadline = now + 10000;
            for (int i = 0; i < count; i++) {
              if (conns[i].state == DEAD && conns[i].fd == -2) dropped++;  // dropped while held
              if (conns[i].state != HELD) continue;
              if (send(conns[i].fd, "x", 1, MSG_NOSIGNAL) != 1) { kill_conn(ep, &conns[i]); conns[i].fd = -2; dropped++; continue; }
              conns[i].state = CHECKING;
              checking++;
            }
          }
          size_t used = (size_t)(nl - line) + 1;
          memmove(line, line + used, linelen - used);
          linelen -= used;
        }
        if (linelen >= sizeof line - 1) linelen = 0;
        continue;
      }
      conn_t *c = &conns[idx];
      uint32_t ev = evs[k].events;
      if (c->state == CONNECTING) {
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) continue;
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) { count_error(errname(err)); failed++; inflight--; kill_conn(ep, c); continue; }
        c->state = GREETING;
        struct epoll_event e = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = idx};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
        continue;
      }
      ssize_t r = recv(c->fd, buf, sizeof buf, 0);
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (c->state == GREETING) {
        inflight--;
        if (r > 0 && buf[0] == 'H') { c->state = HELD; held++; }
        else { count_error(r == 0 ? "EOF" : r > 0 ? "BADGREETING" : errname(errno)); failed++; kill_conn(ep, c); }
        continue;
      }
      if (r > 0 && c->state == CHECKING) { c->state = HELD; checking--; alive++; continue; }
      if (r > 0) continue;  // unsolicited bytes: ignore
      // the peer closed or reset a held connection
      if (c->state == CHECKING) { checking--; dropped++; }
      held--;
      kill_conn(ep, c);
      c->fd = -2;  // marks "dropped while held"
    }
    if (now >= next_scan) {
      next_scan = now + 100;
      if (phase == 0) {
        for (int i = 0; i < next; i++) {
          conn_t *c = &conns[i];
          if ((c->state == CONNECTING || c->state == GREETING) && now >= c->deadline) {
            count_error("TIMEOUT");
            failed++;
            inflight--;
            kill_conn(ep, c);
          }
        }
      }
      if (phase == 2 && now >= check_deadline) {
        for (int i = 0; i < count; i++) if (conns[i].state == CHECKING) { conns[i].state = HELD; noecho++; }
        checking = 0;
      }
    }
  }
  close_all_and_exit(0);
  return 0;
}
