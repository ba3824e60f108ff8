// bench/c/holdd.c: the courier side of the idle-connection benchmarks. Accepts connections on
// every given port (SO_REUSEPORT, so several processes share one port and each stays under the
// per-process open-file limit), greets each with one byte "H" (so the client knows the whole
// path, proxy included, is up), then echoes whatever arrives and otherwise sits idle.
//
//   holdd --port P [--port P2 ...] [--max-seconds S]
//
// stdout: "listening P ..." once ready; on exit (SIGTERM/SIGINT/--max-seconds) one JSON line
// {"accepted":N,"open":N,"refused":N} (refused: accept failed, e.g. EMFILE).
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proc-common.h"

#define MAX_PORTS 8

int main(int argc, char **argv) {
  int ports[MAX_PORTS], nports = 0;
  unsigned max_seconds = 3600;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--port") && i + 1 < argc && nports < MAX_PORTS) ports[nports++] = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--max-seconds") && i + 1 < argc) max_seconds = (unsigned)atoi(argv[++i]);
    else { fprintf(stderr, "usage: holdd --port P [--port P2] [--max-seconds S]\n"); return 2; }
  }
  if (nports == 0 || max_seconds < 1) { fprintf(stderr, "holdd: bad arguments\n"); return 2; }
  raise_nofile();
  stop_on_signals(1);
  alarm(max_seconds);

  int ep = epoll_create1(EPOLL_CLOEXEC);
  int lfd[MAX_PORTS];
  for (int i = 0; i < nports; i++) {
    lfd[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd[i], SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(lfd[i], SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)ports[i]), .sin_addr.s_addr = htonl(INADDR_ANY)};
    if (bind(lfd[i], (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd[i], 4096) < 0) { perror("holdd: bind/listen"); return 1; }
    struct epoll_event e = {.events = EPOLLIN, .data.fd = -1 - i};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd[i], &e);
  }
  printf("listening");
  for (int i = 0; i < nports; i++) printf(" %d", ports[i]);
  printf("\n");
  fflush(stdout);

  long accepted = 0, open_now = 0, refused = 0;
  struct epoll_event evs[512];
  char buf[512];
  while (!stop) {
    int n = epoll_wait(ep, evs, 512, 500);
    for (int k = 0; k < n; k++) {
      int fd = evs[k].data.fd;
      if (fd < 0) {
        int l = lfd[-1 - fd];
        for (int burst = 0; burst < 256; burst++) {
          int c = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) refused++;
            break;
          }
          accepted++;
          open_now++;
          if (send(c, "H", 1, MSG_NOSIGNAL) != 1) { close(c); open_now--; continue; }
          struct epoll_event e = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = c};
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &e);
        }
        continue;
      }
      ssize_t r = recv(fd, buf, sizeof buf, 0);
      if (r > 0) {
        if (send(fd, buf, (size_t)r, MSG_NOSIGNAL) < 0 && errno != EAGAIN) { close(fd); open_now--; }
      } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
        close(fd);  // close() also removes it from the epoll set
        open_now--;
      }
    }
  }
  printf("{\"accepted\":%ld,\"open\":%ld,\"refused\":%ld}\n", accepted, open_now, refused);
  return 0;
}
