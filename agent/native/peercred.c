/*
 * peercred: read the kernel's credentials for the peer of a connected Unix socket.
 *
 * No maintained npm package reads SO_PEERCRED (sockopt reads integers only), so
 * this is the agent's native piece. It exports
 *   peercred(fd) -> { pid, uid, gid, pidfd }  (pidfd is -1 when the kernel lacks SO_PEERPIDFD)
 * and pidfdAlive(pidfd) -> boolean, plus closeFd(fd);
 * and, unrelated to sockets, mallocTrim() -> boolean with mallocTrimSupported
 * (see MallocTrim below).
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/syscall.h>
#include <poll.h>
#include <unistd.h>
#include <errno.h>
#include <string.h>
#include <stdio.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_throw_error(env, NULL, msg);
  return NULL;
}

static int get_int_arg(napi_env env, napi_callback_info info, int32_t *out) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) return -1;
  if (napi_get_value_int32(env, argv[0], out) != napi_ok) return -1;
  return 0;
}

static napi_value set_int(napi_env env, napi_value obj, const char *name, int64_t v) {
  napi_value n;
  napi_create_int64(env, v, &n);
  napi_set_named_property(env, obj, name, n);
  return obj;
}

static napi_value Peercred(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (get_int_arg(env, info, &fd) != 0) {
    napi_throw_type_error(env, NULL, "peercred(fd): fd must be an integer");
    return NULL;
  }
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return throw_errno(env, "getsockopt(SO_PEERCRED)", errno);
  int pidfd = -1;
  socklen_t plen = sizeof pidfd;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &plen) != 0) pidfd = -1;
  napi_value obj;
  napi_create_object(env, &obj);
  set_int(env, obj, "pid", cred.pid);
  set_int(env, obj, "uid", cred.uid);
  set_int(env, obj, "gid", cred.gid);
  set_int(env, obj, "pidfd", pidfd);
  return obj;
}

/* A pidfd polls readable once its process has exited: alive means "not readable yet". */
static napi_value PidfdAlive(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (get_int_arg(env, info, &fd) != 0) {
    napi_throw_type_error(env, NULL, "pidfdAlive(fd): fd must be an integer");
    return NULL;
  }
  struct pollfd p = { .fd = fd, .events = POLLIN, .revents = 0 };
  int r = poll(&p, 1, 0);
  napi_value b;
  napi_get_boolean(env, r == 0, &b);
  return b;
}

static napi_value CloseFd(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (get_int_arg(env, info, &fd) == 0 && fd >= 0) close(fd);
  return NULL;
}

/*
 * Hands the C heap's free memory back to the kernel: glibc's malloc_trim(0).
 *
 * Minting thousands of workload SVIDs (OpenSSL key generation, CSR signing,
 * the certificates' parsing) allocates and frees many small native blocks on
 * the main thread and on libuv's pool threads. glibc keeps what was freed in
 * the arena of the thread that used it, and only returns the top of an arena
 * to the kernel, so after a large sync tens of megabytes of freed pages stay
 * resident. malloc_trim walks every arena and releases whole free pages
 * (madvise), wherever they are. It costs a few milliseconds with a large
 * heap, so the agent calls it after syncs that stored many SVIDs, never per
 * request (agent/memory/free-memory.ts). Returns true when memory was released; false (and
 * mallocTrimSupported false) with another C library, where it does nothing.
 *
 * No mallopt(M_ARENA_MAX) here: the addon is loaded by JavaScript, after
 * Node's own threads (V8's platform workers) have already made their
 * arenas, so a limit set now would not undo them. MALLOC_ARENA_MAX=2 in the
 * agent's environment is the way to cap arenas.
 */
static napi_value MallocTrim(napi_env env, napi_callback_info info) {
  int released = 0;
#ifdef __GLIBC__
  released = malloc_trim(0);
#endif
  napi_value b;
  napi_get_boolean(env, released != 0, &b);
  return b;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_value trim_supported;
#ifdef __GLIBC__
  napi_get_boolean(env, true, &trim_supported);
#else
  napi_get_boolean(env, false, &trim_supported);
#endif
  napi_property_descriptor props[] = {
    { "peercred", NULL, Peercred, NULL, NULL, NULL, napi_default, NULL },
    { "pidfdAlive", NULL, PidfdAlive, NULL, NULL, NULL, napi_default, NULL },
    { "closeFd", NULL, CloseFd, NULL, NULL, NULL, napi_default, NULL },
    { "mallocTrim", NULL, MallocTrim, NULL, NULL, NULL, napi_default, NULL },
    { "mallocTrimSupported", NULL, NULL, NULL, NULL, trim_supported, napi_enumerable, NULL },
  };
  napi_define_properties(env, exports, 5, props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
