// Error helpers shared by the two addons (relay.c here, src/dns/fastpath/fastpath.c): errors thrown with a stable code so
// JS can branch on it, and a guard for Node-API calls that should never fail.
#ifndef APNS_PROXY_NAPI_ERRORS_H
#define APNS_PROXY_NAPI_ERRORS_H

#include <node_api.h>
#include <stdio.h>
#include <string.h>

static inline napi_value throw_errno(napi_env env, const char *code, const char *what, int err) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_throw_error(env, code, msg);
  return NULL;
}

#define NAPI_OK(call)                                                  \
  do {                                                                 \
    if ((call) != napi_ok) {                                           \
      napi_throw_error(env, "E_NATIVE", "Node-API call failed: " #call); \
      return NULL;                                                     \
    }                                                                  \
  } while (0)

#endif
