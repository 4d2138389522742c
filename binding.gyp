{
  "targets": [
    {
      "target_name": "peercred",
      "sources": ["agent/native/peercred.c"],
      "cflags": ["-O2", "-Wall"]
    },
    {
      "target_name": "ecdsa",
      "sources": ["ca/native/ecdsa.c"],
      "cflags": ["-O2", "-Wall"]
    }
  ]
}
