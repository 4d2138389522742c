/*
 * peercred: read the kernel's credentials for the peer of a connected Unix socket.
 *
 * No maintained npm package reads SO_PEERCRED (sockopt reads integers only), so
 * this is the one native piece of Brevis. It exports one function:
 *   peercred(fd) -> { pid, uid, gid, pidfd }  (pidfd is -1 when the kernel lacks SO_PEERPIDFD)
 * and pidfdAlive(pidfd) -> boolean, plus closeFd(fd).
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

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "peercred", NULL, Peercred, NULL, NULL, NULL, napi_default, NULL },
    { "pidfdAlive", NULL, PidfdAlive, NULL, NULL, NULL, napi_default, NULL },
    { "closeFd", NULL, CloseFd, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, 3, props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
