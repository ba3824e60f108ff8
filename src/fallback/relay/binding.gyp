{
  "targets": [
    {
      "target_name": "apns_proxy_native",
      "sources": ["src/fallback/native/relay.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    },
    {
      "target_name": "apns_proxy_dns",
      "sources": ["src/fallback/native/dnsfast.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
