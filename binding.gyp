{
  "targets": [
    {
      "target_name": "peercred",
      "sources": ["agent/native/peercred.c"],
      "cflags": ["-O2", "-Wall"]
    }
  ]
}
