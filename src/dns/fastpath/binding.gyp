{
  "targets": [
    {
      "target_name": "apns_proxy_fastpath",
      "sources": ["fastpath.c"],
      "include_dirs": ["../../fallback/relay"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
