// bench/c/httpd.c: the smallest HTTP/1.1 server that keeps up with wrk, for the courier side of
// the benchmarks. Every request gets "200 ok" (2-byte body); "Connection: close" (or HTTP/1.0
// without keep-alive) closes the connection right after the answer, so the server, not the
// client, holds TIME_WAIT. T threads, each with its own SO_REUSEPORT listener per port and epoll.
//
//   httpd --port P [--port P2 ...] [--threads T] [--max-seconds S]
//
// Bounded: exits by itself after --max-seconds (default 3600), and on SIGTERM/SIGINT.
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_PORTS 8
#define BUF 2048

typedef struct {
  int len;
  char buf[BUF];
} conn_t;

static int ports[MAX_PORTS], nports;
static conn_t **conns;  // indexed by fd
static int maxfd;

static const char RESP_KA[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok";
static const char RESP_CLOSE[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nok";

static int listener(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port), .sin_addr.s_addr = htonl(INADDR_ANY)};
  if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 4096) < 0) {
    perror("httpd: bind/listen");
    exit(1);
  }
  return fd;
}

// Frees the state before close(): once the fd is closed another thread may get the same number.
static void drop(int ep, int fd) {
  conn_t *c = conns[fd];
  conns[fd] = NULL;
  free(c);
  epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
  close(fd);
}

// Answers every complete request in the buffer; returns 0 to keep the connection, -1 to close it.
static int serve(int fd, conn_t *c) {
  for (;;) {
    c->buf[c->len] = 0;
    char *end = strstr(c->buf, "\r\n\r\n");
    if (!end) return c->len >= BUF - 1 ? -1 : 0;
    int reqlen = (int)(end + 4 - c->buf);
    *end = 0;
    int close_it = strcasestr(c->buf, "\nconnection: close") != NULL ||
                   (strstr(c->buf, "HTTP/1.0") != NULL && strcasestr(c->buf, "\nconnection: keep-alive") == NULL);
    const char *r = close_it ? RESP_CLOSE : RESP_KA;
    size_t rl = close_it ? sizeof RESP_CLOSE - 1 : sizeof RESP_KA - 1;
    if (send(fd, r, rl, MSG_NOSIGNAL) != (ssize_t)rl) return -1;  // tiny answers: a short write is a dead peer
    if (close_it) return -1;
    memmove(c->buf, c->buf + reqlen, (size_t)(c->len - reqlen));
    c->len -= reqlen;
  }
}

static void *worker(void *arg) {
  int *lfd = arg;
  int ep = epoll_create1(EPOLL_CLOEXEC);
  for (int i = 0; i < nports; i++) {
    struct epoll_event e = {.events = EPOLLIN, .data.fd = lfd[i]};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd[i], &e);
  }
  struct epoll_event evs[256];
  for (;;) {
    int n = epoll_wait(ep, evs, 256, -1);
    for (int k = 0; k < n; k++) {
      int fd = evs[k].data.fd;
      int is_listener = 0;
      for (int i = 0; i < nports; i++) is_listener |= (fd == lfd[i]);
      if (is_listener) {
        for (int burst = 0; burst < 64; burst++) {
          int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) break;
          if (c >= maxfd) { close(c); continue; }
          int one = 1;
          setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          conns[c] = calloc(1, sizeof(conn_t));
          struct epoll_event e = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = c};
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &e);
        }
        continue;
      }
      conn_t *c = conns[fd];
      if (!c) continue;
      int dead = 0;
      for (;;) {
        ssize_t r = recv(fd, c->buf + c->len, (size_t)(BUF - 1 - c->len), 0);
        if (r > 0) {
          c->len += (int)r;
          if (serve(fd, c) < 0) { dead = 1; break; }
          continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) break;
        dead = 1;  // EOF or error
        break;
      }
      if (dead) drop(ep, fd);
    }
  }
  return NULL;
}

static void on_alarm(int sig) {
  (void)sig;
  static const char msg[] = "httpd: --max-seconds reached, exiting\n";
  if (write(2, msg, sizeof msg - 1) < 0) { /* nothing to do */ }
  _exit(0);
}

int main(int argc, char **argv) {
  int threads = 2;
  unsigned max_seconds = 3600;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--port") && i + 1 < argc && nports < MAX_PORTS) ports[nports++] = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--max-seconds") && i + 1 < argc) max_seconds = (unsigned)atoi(argv[++i]);
    else { fprintf(stderr, "usage: httpd --port P [--port P2] [--threads T] [--max-seconds S]\n"); return 2; }
  }
  if (nports == 0 || threads < 1 || threads > 16 || max_seconds < 1) { fprintf(stderr, "httpd: bad arguments\n"); return 2; }
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  maxfd = (int)rl.rlim_cur;
  conns = calloc((size_t)maxfd, sizeof *conns);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGALRM, on_alarm);
  alarm(max_seconds);
  pthread_t t[16];
  static int lfds[16][MAX_PORTS];
  for (int i = 0; i < threads; i++)
    for (int j = 0; j < nports; j++) lfds[i][j] = listener(ports[j]);
  for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, worker, lfds[i]);
  printf("listening");
  for (int i = 0; i < nports; i++) printf(" %d", ports[i]);
  printf("\n");
  fflush(stdout);
  for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
  return 0;
}
