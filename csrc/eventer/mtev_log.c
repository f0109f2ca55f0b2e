/*
 * mtev_log.c - log streams (see mtev_log.h).
 */
#include "mtev_log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct mtev_log_stream ls_stderr = {"stderr", 1};
static struct mtev_log_stream ls_error = {"error", 1};
static struct mtev_log_stream ls_notice = {"notice", 1};
static struct mtev_log_stream ls_debug = {"debug", 0};
static struct mtev_log_stream ls_eventer_err = {"error/eventer", 1};
static struct mtev_log_stream ls_eventer_deb = {"debug/eventer", 0};

mtev_log_stream_t mtev_stderr = &ls_stderr;
mtev_log_stream_t mtev_error = &ls_error;
mtev_log_stream_t mtev_notice = &ls_notice;
mtev_log_stream_t mtev_debug = &ls_debug;
mtev_log_stream_t eventer_err = &ls_eventer_err;
mtev_log_stream_t eventer_deb = &ls_eventer_deb;

static struct mtev_log_stream *const all_streams[] = {
    &ls_stderr, &ls_error, &ls_notice, &ls_debug, &ls_eventer_err,
    &ls_eventer_deb,
};

/* Serializes writers so lines from different threads never interleave and
 * the writer pointer/closure pair is read consistently. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static mtev_log_writer_t log_writer;
static void *log_writer_closure;

mtev_log_stream_t mtev_log_stream_find(const char *name) {
  if (name) {
    for (size_t i = 0; i < sizeof(all_streams) / sizeof(all_streams[0]); i++)
      if (!strcmp(all_streams[i]->name, name)) return all_streams[i];
  }
  errno = ENOENT;
  return NULL;
}

const char *mtev_log_stream_get_name(mtev_log_stream_t ls) {
  return ls ? ls->name : "";
}

int mtev_log_stream_set_enabled(mtev_log_stream_t ls, int on) {
  if (!ls) {
    errno = EINVAL;
    return -1;
  }
  __atomic_store_n(&ls->enabled, on ? 1 : 0, __ATOMIC_RELAXED);
  return 0;
}

int mtev_log_stream_is_enabled(mtev_log_stream_t ls) {
  return mtev_log_stream_on_(ls);
}

void mtev_log_init_env(void) {
  const char *v = getenv("EVENTER_DEBUG");
  if (v && !strcmp(v, "1")) mtev_log_stream_set_enabled(eventer_deb, 1);
}

void mtev_log_set_writer(mtev_log_writer_t fn, void *closure) {
  pthread_mutex_lock(&log_lock);
  log_writer = fn;
  log_writer_closure = closure;
  pthread_mutex_unlock(&log_lock);
}

/* Formats into a stack buffer, falling back to the heap for long lines so
 * a message is never truncated. */
static void emit(mtev_log_stream_t ls, int to_stderr_too, const char *fmt,
                 va_list ap) {
  char small[512];
  char *buf = small;
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(small, sizeof(small), fmt, ap2);
  va_end(ap2);
  if (n < 0) return;
  if ((size_t)n >= sizeof(small)) {
    buf = malloc((size_t)n + 1);
    if (!buf) {
      buf = small; /* out of memory: keep the truncated line */
      n = (int)sizeof(small) - 1;
    } else {
      vsnprintf(buf, (size_t)n + 1, fmt, ap);
    }
  }
  pthread_mutex_lock(&log_lock);
  if (log_writer) log_writer(ls, buf, (size_t)n, log_writer_closure);
  if (!log_writer || to_stderr_too)
    fprintf(stderr, "[%s] %.*s", ls ? ls->name : "?", n, buf);
  pthread_mutex_unlock(&log_lock);
  if (buf != small) free(buf);
}

void mtev_vlog(mtev_log_stream_t ls, const char *file, int line,
               const char *fmt, va_list ap) {
  (void)file;
  (void)line;
  if (!mtev_log_stream_on_(ls)) return;
  emit(ls, 0, fmt, ap);
}

void mtev_log(mtev_log_stream_t ls, const char *file, int line,
              const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  mtev_vlog(ls, file, line, fmt, ap);
  va_end(ap);
}

void mtev_log_fatal(mtev_log_stream_t ls, const char *file, int line,
                    const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  /* A fatal message must reach a human even when a custom writer swallows
   * it, so it is also written to stderr; the location helps when the
   * message itself is generic. */
  emit(ls, 1, fmt, ap);
  va_end(ap);
  fprintf(stderr, "[%s] fatal at %s:%d\n", ls ? ls->name : "?", file, line);
  fflush(stderr);
  abort();
}
