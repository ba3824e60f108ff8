// What the load clients (churn.c, holder.c) share: the destination list, error counting by errno
// name and a monotonic clock (and proc-common.h). Each includes it once; nothing here
// is meant for any other program.
#ifndef APNS_PROXY_BENCH_LOAD_COMMON_H
#define APNS_PROXY_BENCH_LOAD_COMMON_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proc-common.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define MAX_DST 256
#define NERR 32

static struct sockaddr_in dsts[MAX_DST];
static int ndst;
static const char *err_names[NERR];
static long err_counts[NERR];
static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

// Counts one failure under its name (NERR names at most; the rest are not counted).
static void count_error(const char *name) {
  for (int i = 0; i < NERR; i++) {
    if (err_names[i] == NULL) err_names[i] = name;
    if (!strcmp(err_names[i], name)) { err_counts[i]++; return; }
  }
}

static const char *errname(int e) {
  const char *n = strerrorname_np(e);
  return n ? n : "EUNKNOWN";
}

// "IP:PORT[,IP:PORT...]" into dsts; -1 when a part is malformed or none is given.
static int parse_dst(char *list) {
  for (char *tok = strtok(list, ","); tok && ndst < MAX_DST; tok = strtok(NULL, ",")) {
    char *colon = strrchr(tok, ':');
    if (!colon) return -1;
    *colon = 0;
    dsts[ndst].sin_family = AF_INET;
    dsts[ndst].sin_port = htons((unsigned short)atoi(colon + 1));
    if (inet_pton(AF_INET, tok, &dsts[ndst].sin_addr) != 1) return -1;
    ndst++;
  }
  return ndst > 0 ? 0 : -1;
}

#endif
