// bench/c/churn.c: new connections at a fixed rate (devices reconnecting), each checked end to end:
// connect, wait for the server's greeting byte "H" (holdd), send "x", wait for its echo, close.
// Used while the map changes under load: every connection that does not complete is counted.
//
//   churn --dst IP:PORT[,IP:PORT...] --rate R --seconds S [--src IP] [--timeout-ms T] [--max-inflight K]
//
// Stops starting connections after S seconds (or on SIGINT/SIGTERM), waits for those in flight
// (at most T ms), prints one JSON line and exits:
//   {"started":N,"ok":N,"failed":N,"skipped":N,"errors":{"ECONNREFUSED":n,"TIMEOUT":n,...},"ms":M}
// skipped: starts missed because K connections were already in flight.
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

enum { FREE, CONNECTING, GREETING, ECHO };
typedef struct {
  int fd;
  uint8_t state;
  int64_t deadline;
} slot_t;

int main(int argc, char **argv) {
  char *dst = NULL, *src = NULL;
  double rate = 0;
  int seconds = 0, timeout_ms = 5000, max_inflight = 1000;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--dst") && i + 1 < argc) dst = argv[++i];
    else if (!strcmp(argv[i], "--src") && i + 1 < argc) src = argv[++i];
    else if (!strcmp(argv[i], "--rate") && i + 1 < argc) rate = atof(argv[++i]);
    else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--timeout-ms") && i + 1 < argc) timeout_ms = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--max-inflight") && i + 1 < argc) max_inflight = atoi(argv[++i]);
    else { fprintf(stderr, "usage: churn --dst IP:PORT[,...] --rate R --seconds S [--src IP] [--timeout-ms T] [--max-inflight K]\n"); return 2; }
  }
  if (!dst || parse_dst(dst) < 0 || rate <= 0 || rate > 100000 || seconds < 1 || seconds > 3600 || timeout_ms < 1 ||
      max_inflight < 1 || max_inflight > 16000) {
    fprintf(stderr, "churn: bad arguments\n");
    return 2;
  }
  struct sockaddr_in srcaddr = {.sin_family = AF_INET};
  if (src && inet_pton(AF_INET, src, &srcaddr.sin_addr) != 1) { fprintf(stderr, "churn: bad --src\n"); return 2; }
  raise_nofile();
  stop_on_signals(0);
  alarm((unsigned)(seconds + timeout_ms / 1000 + 30));  // hard bound even if something hangs

  slot_t *slots = calloc((size_t)max_inflight, sizeof *slots);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  long started = 0, ok = 0, failed = 0, skipped = 0;
  int inflight = 0;
  int64_t t0 = now_ms(), end = t0 + (int64_t)seconds * 1000, next_scan = t0;
  struct epoll_event evs[512];
  char buf[64];

  for (;;) {
    int64_t now = now_ms();
    int starting = !stop && now < end;
    if (!starting && inflight == 0) break;
    if (starting) {
      long due = (long)((double)(now - t0) * rate / 1000.0);
      while (started + skipped < due) {
        if (inflight >= max_inflight) { skipped++; continue; }
        int k = 0;
        while (slots[k].state != FREE) k++;
        slot_t *s = &slots[k];
        const struct sockaddr_in *d = &dsts[(started + skipped) % ndst];
        started++;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) { count_error(errname(errno)); failed++; continue; }
        if (src) {
          int one = 1;
          setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
          if (bind(fd, (struct sockaddr *)&srcaddr, sizeof srcaddr) < 0) { count_error(errname(errno)); failed++; close(fd); continue; }
        }
        if (connect(fd, (const struct sockaddr *)d, sizeof *d) < 0 && errno != EINPROGRESS) {
          count_error(errname(errno)); failed++; close(fd); continue;
        }
        s->fd = fd;
        s->state = CONNECTING;
        s->deadline = now + timeout_ms;
        struct epoll_event e = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)k};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
        inflight++;
      }
    }
    int n = epoll_wait(ep, evs, 512, 5);
    for (int i = 0; i < n; i++) {
      slot_t *s = &slots[evs[i].data.u32];
      if (s->state == FREE) continue;
      int done = 0, err = 0;
      const char *why = NULL;
      if (s->state == CONNECTING) {
        if (!(evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) continue;
        socklen_t len = sizeof err;
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) { why = errname(err); done = 1; }
        else {
          s->state = GREETING;
          struct epoll_event e = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = evs[i].data.u32};
          epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &e);
        }
      } else {
        ssize_t r = recv(s->fd, buf, sizeof buf, 0);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (r <= 0) { why = r == 0 ? "EOF" : errname(errno); done = 1; }
        else if (s->state == GREETING) {
          if (buf[0] != 'H') { why = "BADGREETING"; done = 1; }
          else if (send(s->fd, "x", 1, MSG_NOSIGNAL) != 1) { why = errname(errno); done = 1; }
          else s->state = ECHO;
          if (!done && r > 1 && buf[1] == 'x') { done = 1; }  // greeting and echo in one read
        } else if (s->state == ECHO) {
          done = 1;  // the echo
        }
      }
      if (done) {
        if (why) { count_error(why); failed++; } else ok++;
        epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
        close(s->fd);
        s->state = FREE;
        inflight--;
      }
    }
    if (now >= next_scan) {
      next_scan = now + 50;
      for (int k = 0; k < max_inflight; k++) {
        slot_t *s = &slots[k];
        if (s->state != FREE && now >= s->deadline) {
          count_error("TIMEOUT");
          failed++;
          epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
          close(s->fd);
          s->state = FREE;
          inflight--;
        }
      }
    }
  }
  printf("{\"started\":%ld,\"ok\":%ld,\"failed\":%ld,\"skipped\":%ld,\"errors\":{", started, ok, failed, skipped);
  for (int i = 0; i < NERR && err_names[i]; i++) printf("%s\"%s\":%ld", i ? "," : "", err_names[i], err_counts[i]);
  printf("},\"ms\":%ld}\n", (long)(now_ms() - t0));
  return 0;
}
