/*
 * mtev_listener_conf.c - mtev_listener_init: the listeners of the loaded
 * configuration (the attributes are described in mtev_listener.h).
 *
 * Kept apart from mtev_listener.c so that a program using only the
 * programmatic API does not link libxml2.
 */
#include "mtev_listener_impl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mtev_conf.h"

#define EV_LC_MAX 256 /* listener stanzas in one configuration */

static void ev_lc_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void ev_lc_fail(char *err, size_t errlen, const char *fmt, ...) {
  char buf[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  mtevL(mtev_error, "mtev_listener: %s\n", buf);
  if (err && errlen) snprintf(err, errlen, "%s", buf);
}

/* The attribute `name` of the section or its nearest ancestor that has
 * it (malloc'd), or NULL. */
static char *ev_lc_attr(mtev_conf_section_t s, const char *name) {
  char path[128], *v = NULL;
  snprintf(path, sizeof(path), "ancestor-or-self::node()/@%s", name);
  return mtev_conf_get_string(s, path, &v) ? v : NULL;
}

static int ev_lc_bool(const char *v, int *out) {
  static const char *const yes[] = {"true", "on", "yes", "1"};
  static const char *const no[] = {"false", "off", "no", "0"};
  for (size_t i = 0; i < 4; i++) {
    if (!strcasecmp(v, yes[i])) return *out = 1, 1;
    if (!strcasecmp(v, no[i])) return *out = 0, 1;
  }
  return 0;
}

/* A whole decimal number in [lo, hi]. */
static int ev_lc_num(const char *v, long long lo, long long hi, long long *out) {
  char *end = NULL;
  if (!v || !*v || ((v[0] < '0' || v[0] > '9') && v[0] != '-')) return 0;
  errno = 0;
  long long n = strtoll(v, &end, 10);
  if (errno || !end || *end || n < lo || n > hi) return 0;
  *out = n;
  return 1;
}

typedef struct {
  char *type, *address, *port, *backlog, *fanout, *fanout_pool, *accept_thread,
      *reuseport, *max_connections, *ssl;
  mtev_hash_table *config, *sslconfig;
} ev_lc_attrs_t;

static void ev_lc_attrs_free(ev_lc_attrs_t *a) {
  free(a->type);
  free(a->address);
  free(a->port);
  free(a->backlog);
  free(a->fanout);
  free(a->fanout_pool);
  free(a->accept_thread);
  free(a->reuseport);
  free(a->max_connections);
  free(a->ssl);
  if (a->config) {
    mtev_hash_destroy(a->config, free, free);
    free(a->config);
  }
  if (a->sslconfig) {
    mtev_hash_destroy(a->sslconfig, free, free);
    free(a->sslconfig);
  }
  memset(a, 0, sizeof(*a));
}

/* Reads and checks one stanza into opts (pointing into a).  1: use it,
 * 0: skipped (require_env, mtev_listener_skip), -1: error in err. */
static int ev_lc_read(mtev_conf_section_t s, const char *loc, ev_lc_attrs_t *a,
                      mtev_listener_opts_t *o, char *err, size_t errlen) {
  memset(o, 0, sizeof(*o));
  if (mtev_conf_env_off(s, NULL)) {
    mtevL(mtev_debug, "mtev_listener: %s: skipped (require_env)\n", loc);
    return 0;
  }
  /* a misspelt attribute would silently take its default */
  char *unknown = NULL;
  if (mtev_conf_get_string(s, "name(@*[not(name()='type' or name()='address' or "
                           "name()='port' or name()='backlog' or name()='fanout' or "
                           "name()='fanout_pool' or name()='accept_thread' or "
                           "name()='reuseport' or name()='max_connections' or "
                           "name()='ssl' or name()='require_env' or name()='id')])",
                           &unknown) && unknown[0])
    mtevL(mtev_error, "mtev_listener: %s: ignoring unknown listener attribute "
          "\"%s\"\n", loc, unknown);
  free(unknown);
  a->type = ev_lc_attr(s, "type");
  a->address = ev_lc_attr(s, "address");
  a->port = ev_lc_attr(s, "port");
  a->backlog = ev_lc_attr(s, "backlog");
  a->fanout = ev_lc_attr(s, "fanout");
  a->fanout_pool = ev_lc_attr(s, "fanout_pool");
  a->accept_thread = ev_lc_attr(s, "accept_thread");
  a->reuseport = ev_lc_attr(s, "reuseport");
  a->max_connections = ev_lc_attr(s, "max_connections");
  a->ssl = ev_lc_attr(s, "ssl");
  a->config = mtev_conf_get_hash(s, "config");
  if (!a->type || !a->type[0]) {
    ev_lc_fail(err, errlen, "%s: listener without a type attribute (on it or "
               "an ancestor)", loc);
    return -1;
  }
  o->type = a->type;
  o->address = a->address && a->address[0] ? a->address : "*";
  int is_unix = o->address[0] == '/';
  long long n;
  if (!is_unix) {
    if (!a->port) {
      ev_lc_fail(err, errlen, "%s: listener %s: no port attribute", loc, o->address);
      return -1;
    }
    if (!ev_lc_num(a->port, 1, 65535, &n)) {
      ev_lc_fail(err, errlen, "%s: listener %s: port \"%s\" is not a number in "
                 "1..65535", loc, o->address, a->port);
      return -1;
    }
    o->port = (int)n;
  }
  if (ev_l_should_skip(o->address, o->port)) {
    mtevL(mtev_error, "mtev_listener: %s: skipping listener %s port %d "
          "(mtev_listener_skip)\n", loc, o->address, o->port);
    return 0;
  }
  o->backlog = 0;
  if (a->backlog) {
    if (!ev_lc_num(a->backlog, 1, 1 << 20, &n)) {
      ev_lc_fail(err, errlen, "%s: backlog \"%s\" is not a number in 1..%d",
                 loc, a->backlog, 1 << 20);
      return -1;
    }
    o->backlog = (int)n;
  }
  struct {
    const char *name, *value;
    mtev_boolean *out;
    int dflt;
  } bools[] = {{"fanout", a->fanout, &o->fanout, 0},
               {"accept_thread", a->accept_thread, &o->accept_in_loop, 1},
               {"reuseport", a->reuseport, &o->reuseport, 0}};
  for (size_t i = 0; i < sizeof(bools) / sizeof(bools[0]); i++) {
    int b = bools[i].dflt;
    if (bools[i].value && !ev_lc_bool(bools[i].value, &b)) {
      ev_lc_fail(err, errlen, "%s: %s=\"%s\" is not a boolean (on/off, "
                 "true/false, yes/no, 1/0)", loc, bools[i].name, bools[i].value);
      return -1;
    }
    *bools[i].out = b ? mtev_true : mtev_false;
  }
  o->accept_in_loop = o->accept_in_loop ? mtev_false : mtev_true; /* inverse */
  o->fanout_pool = a->fanout_pool;
  if (a->max_connections) {
    if (!ev_lc_num(a->max_connections, 0, UINT32_MAX, &n)) {
      ev_lc_fail(err, errlen, "%s: max_connections \"%s\" is not a number in "
                 "0..%u", loc, a->max_connections, UINT32_MAX);
      return -1;
    }
    o->max_connections = (uint32_t)n;
  }
  int ssl = 0;
  if (a->ssl && !ev_lc_bool(a->ssl, &ssl)) {
    ev_lc_fail(err, errlen, "%s: ssl=\"%s\" is not a boolean (on/off, "
               "true/false, yes/no, 1/0)", loc, a->ssl);
    return -1;
  }
  if (ssl) { /* <sslconfig> merged from the ancestors, as <config> */
    o->ssl = mtev_true;
    o->sslconfig = a->sslconfig = mtev_conf_get_hash(s, "sslconfig");
  }
  o->config = a->config;
  return 1;
}

int mtev_listener_init_ex(const char *toplevel, char *err, size_t errlen) {
  if (err && errlen) err[0] = 0;
  char path[512];
  const char *top = toplevel && *toplevel ? toplevel : "*";
  snprintf(path, sizeof(path), "/%s/listeners//listener|/%s/include/listeners//listener",
           top, top);
  int cnt = 0;
  mtev_conf_section_t *secs = mtev_conf_get_sections(MTEV_CONF_ROOT, path, &cnt);
  if (cnt > EV_LC_MAX) {
    ev_lc_fail(err, errlen, "%d listeners: at most %d are supported", cnt, EV_LC_MAX);
    mtev_conf_release_sections(secs, cnt);
    errno = EINVAL;
    return -1;
  }
  mtev_listener_t *bound[EV_LC_MAX];
  int nb = 0, rv = 0, started = 0;
  /* 1: every stanza is checked and bound; nothing accepts yet */
  for (int i = 0; i < cnt && rv == 0; i++) {
    char loc[512], why[1536];
    mtev_conf_section_location(secs[i], loc, sizeof(loc));
    ev_lc_attrs_t a = {0};
    mtev_listener_opts_t o;
    int use = ev_lc_read(secs[i], loc, &a, &o, err, errlen);
    if (use < 0) {
      rv = -1;
      errno = EINVAL;
    } else if (use > 0) {
      mtev_listener_t *l = ev_l_bind(&o, why, sizeof(why));
      if (!l) {
        int e = errno;
        ev_lc_fail(err, errlen, "%s: %s", loc, why);
        rv = -1;
        errno = e;
      } else {
        bound[nb++] = l;
      }
    }
    ev_lc_attrs_free(&a);
  }
  mtev_conf_release_sections(secs, cnt);
  /* 2: all of them start, or none stays */
  for (int i = 0; i < nb && rv == 0; i++) {
    char why[1536];
    if (ev_l_start(bound[i], why, sizeof(why)) != 0) {
      int e = errno;
      ev_lc_fail(err, errlen, "%s", why);
      bound[i] = NULL; /* ev_l_start unbound it */
      rv = -1;
      errno = e;
    } else {
      started = i + 1;
    }
  }
  int e = errno;
  for (int i = 0; i < nb; i++) {
    if (!bound[i]) continue;
    if (rv == 0) {
      ev_l_set_from_conf(bound[i]);
      mtev_listener_release(bound[i]); /* the list keeps it */
    } else if (i < started) {
      struct timeval now = {0, 0};
      mtev_listener_stop(bound[i], &now);
      mtev_listener_release(bound[i]);
    } else {
      ev_l_unbind(bound[i]);
    }
  }
  errno = e;
  if (rv == 0)
    mtevL(mtev_debug, "mtev_listener: %d listener%s started from %s\n", nb,
          nb == 1 ? "" : "s", path);
  return rv;
}

void mtev_listener_init(const char *toplevel) {
  (void)mtev_listener_init_ex(toplevel, NULL, 0);
}
