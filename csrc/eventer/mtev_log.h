/*
 * mtev_log.h - libmtev-style log streams, the small subset the eventer and
 * the layers above it need.
 *
 *   mtevL(mtev_error, "accept failed: %s\n", strerror(errno));
 *   mtevL(eventer_deb, "fd %d ready\n", fd);      // off unless switched on
 *   mtevFatal(mtev_error, "broken: %d\n", x);     // logs, then abort()
 *
 * A stream is a name and an on/off switch.  Built-in streams:
 *
 *   stream        name              default
 *   mtev_stderr   "stderr"          on
 *   mtev_error    "error"           on
 *   mtev_notice   "notice"          on
 *   mtev_debug    "debug"           off
 *   eventer_err   "error/eventer"   on
 *   eventer_deb   "debug/eventer"   off; on when the environment has
 *                                   EVENTER_DEBUG=1 (read by eventer_init
 *                                   and by mtev_log_init_env) or after
 *                                   mtev_log_stream_set_enabled(eventer_deb, 1)
 *
 * mtevL() evaluates its arguments only when the stream is on, so a debug
 * line costs one load when it is off.  Every line goes, whole, to the
 * current writer: stderr by default ("[name] message"), or a function
 * installed with mtev_log_set_writer() (the Go binding routes logs to
 * log/slog that way).  All functions here are thread-safe and usable
 * before eventer_init().
 */
#ifndef MTEV_LOG_H
#define MTEV_LOG_H

#include <stdarg.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* libmtev's boolean, used in the eventer API where libmtev uses it. */
#ifndef MTEV_BOOLEAN_DEFINED
#define MTEV_BOOLEAN_DEFINED
typedef enum { mtev_false = 0, mtev_true = 1 } mtev_boolean;
#endif

/* A log stream; the built-in ones are statically allocated and live for
 * the whole process.  Its fields are the library's: callers use the
 * functions below.  (The layout is here only so that mtevL tests
 * `enabled` inline: a call for the test cost about ten instructions on
 * paths that run for every request.) */
struct mtev_log_stream {
  const char *name;
  int enabled; /* read and written with __atomic: any thread may flip it */
};
typedef struct mtev_log_stream *mtev_log_stream_t;

extern mtev_log_stream_t mtev_stderr; /* always-on diagnostics */
extern mtev_log_stream_t mtev_error;  /* errors */
extern mtev_log_stream_t mtev_notice; /* notable, non-error events */
extern mtev_log_stream_t mtev_debug;  /* general debugging, off by default */
extern mtev_log_stream_t eventer_err; /* eventer errors */
extern mtev_log_stream_t eventer_deb; /* eventer tracing, off by default */

/* Returns the built-in stream named `name` ("error", "debug/eventer", ...)
 * or NULL (errno ENOENT). */
mtev_log_stream_t mtev_log_stream_find(const char *name);

/* The stream's name ("" for NULL). */
const char *mtev_log_stream_get_name(mtev_log_stream_t ls);

/* Switches a stream on (1) or off (0).  Returns 0, or -1/EINVAL for a NULL
 * stream. */
int mtev_log_stream_set_enabled(mtev_log_stream_t ls, int on);

/* 1 when the stream is on, 0 when it is off or NULL. */
int mtev_log_stream_is_enabled(mtev_log_stream_t ls);
/* The same, inline (what mtevL and N_L_S_ON use). */
static inline int mtev_log_stream_on_(mtev_log_stream_t ls) {
  return ls && __atomic_load_n(&ls->enabled, __ATOMIC_RELAXED);
}

/* Re-reads the environment: EVENTER_DEBUG=1 switches eventer_deb on, any
 * other value (or none) leaves it as it is.  eventer_init() calls this. */
void mtev_log_init_env(void);

/* A writer receives each formatted line (with its trailing newline, if the
 * format had one) and the stream it was logged to.  NULL restores the
 * default stderr writer.  The writer may be called from any thread, one
 * line at a time (calls are serialized). */
typedef void (*mtev_log_writer_t)(mtev_log_stream_t ls, const char *line,
                                  size_t len, void *closure);
void mtev_log_set_writer(mtev_log_writer_t fn, void *closure);

/* The functions behind the macros.  Use the macros. */
void mtev_log(mtev_log_stream_t ls, const char *file, int line,
              const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void mtev_vlog(mtev_log_stream_t ls, const char *file, int line,
               const char *fmt, va_list ap);
void mtev_log_fatal(mtev_log_stream_t ls, const char *file, int line,
                    const char *fmt, ...)
    __attribute__((format(printf, 4, 5), noreturn));

/* Logs to `ls` when it is on; the arguments are not evaluated otherwise. */
#define mtevL(ls, ...)                                                     \
  do {                                                                     \
    mtev_log_stream_t mtevL_ls_ = (ls);                                    \
    if (mtev_log_stream_on_(mtevL_ls_))                                    \
      mtev_log(mtevL_ls_, __FILE__, __LINE__, __VA_ARGS__);                \
  } while (0)

/* Logs to `ls` (even when it is off: a fatal message is never dropped),
 * then to stderr if a custom writer is installed, then aborts. */
#define mtevFatal(ls, ...) mtev_log_fatal((ls), __FILE__, __LINE__, __VA_ARGS__)

/* An assertion that is never compiled out (unlike assert(3) under NDEBUG). */
#define mtevAssert(cond)                                                   \
  do {                                                                     \
    if (!(cond))                                                           \
      mtev_log_fatal(mtev_error, __FILE__, __LINE__,                       \
                     "assertion failed: %s\n", #cond);                     \
  } while (0)

/* libmtev spells "is this stream on" as N_L_S_ON. */
#define N_L_S_ON(ls) mtev_log_stream_on_(ls)

#ifdef __cplusplus
}
#endif

#endif /* MTEV_LOG_H */
