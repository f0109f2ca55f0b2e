/*
 * acotest.h - the small test harness every C test program uses.
 *
 * A test program lists its cases and calls T_MAIN:
 *
 *   static void test_thing(void) { T_EQ(1 + 1, 2); }
 *   T_MAIN({"thing", test_thing})
 *
 * Each case prints "ok <name>" when it passes.  A failed check prints the
 * file, line, expression and values and exits 1 at once.  `prog NAME...`
 * runs only the named cases.
 *
 * Cases that must crash run in a child process: t_expect_death() forks,
 * runs the function with stderr captured, and checks that the child died
 * (signal or non-zero exit) and that its stderr contains the message.
 *
 * ACO_TEST_MODE (set by scripts/run-tests.sh) says how the program is run:
 * plain, asan, tsan, valgrind or qemu.  t_scale() shrinks loads for the
 * slow runners so the suite stays fast; it never turns a check off.
 */
#ifndef ACOTEST_H
#define ACOTEST_H

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define T_FAIL(...)                                                        \
  do {                                                                     \
    fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                   \
    fprintf(stderr, __VA_ARGS__);                                          \
    fprintf(stderr, "\n");                                                 \
    fflush(stderr);                                                        \
    exit(1);                                                               \
  } while (0)

#define T_CHECK(cond)                                                      \
  do {                                                                     \
    if (!(cond)) T_FAIL("check failed: %s", #cond);                        \
  } while (0)

#define T_CHECKF(cond, ...)                                                \
  do {                                                                     \
    if (!(cond)) {                                                         \
      fprintf(stderr, "FAIL %s:%d: check failed: %s: ", __FILE__, __LINE__,\
              #cond);                                                      \
      fprintf(stderr, __VA_ARGS__);                                        \
      fprintf(stderr, "\n");                                               \
      exit(1);                                                             \
    }                                                                      \
  } while (0)

#define T_EQ(a, b)                                                         \
  do {                                                                     \
    long long t_a_ = (long long)(a), t_b_ = (long long)(b);                \
    if (t_a_ != t_b_)                                                      \
      T_FAIL("%s == %s: %lld != %lld", #a, #b, t_a_, t_b_);                \
  } while (0)

#define T_NE(a, b)                                                         \
  do {                                                                     \
    long long t_a_ = (long long)(a), t_b_ = (long long)(b);                \
    if (t_a_ == t_b_) T_FAIL("%s != %s: both %lld", #a, #b, t_a_);         \
  } while (0)

#define T_LE(a, b)                                                         \
  do {                                                                     \
    long long t_a_ = (long long)(a), t_b_ = (long long)(b);                \
    if (!(t_a_ <= t_b_))                                                   \
      T_FAIL("%s <= %s: %lld > %lld", #a, #b, t_a_, t_b_);                 \
  } while (0)

#define T_GE(a, b) T_LE(b, a)

#define T_PTR_EQ(a, b)                                                     \
  do {                                                                     \
    const void *t_a_ = (const void *)(a), *t_b_ = (const void *)(b);       \
    if (t_a_ != t_b_) T_FAIL("%s == %s: %p != %p", #a, #b, t_a_, t_b_);    \
  } while (0)

#define T_STR_EQ(a, b)                                                     \
  do {                                                                     \
    const char *t_a_ = (a), *t_b_ = (b);                                   \
    if (strcmp(t_a_, t_b_) != 0)                                           \
      T_FAIL("%s == %s: \"%s\" != \"%s\"", #a, #b, t_a_, t_b_);            \
  } while (0)

/* A bound on how late something happened (a timer, a wake, a timeout)
 * when being late is the kernel's or the machine's doing as much as the
 * code's: a loaded machine can keep any thread off its CPU for longer
 * than the bound.  It does not stop the case; the case runs to its end
 * and then again, up to three times in all, and fails only if it was
 * late in every run (code that is late is late each time; a machine that
 * made it late once rarely does so three times in a row).  Every other
 * check stays strict in every run, so a case that uses this must be
 * able to run again in the same process. */
static int t_late_hits_;
static char t_late_msg_[512];
#define T_LE_LATE(a, b)                                                    \
  do {                                                                     \
    long long t_a_ = (long long)(a), t_b_ = (long long)(b);                \
    if (!(t_a_ <= t_b_) &&                                                 \
        __atomic_fetch_add(&t_late_hits_, 1, __ATOMIC_ACQ_REL) == 0)        \
      snprintf(t_late_msg_, sizeof(t_late_msg_), "%s:%d: %s <= %s: %lld > %lld", \
               __FILE__, __LINE__, #a, #b, t_a_, t_b_);                    \
  } while (0)

/* rv == -1 && errno == err */
#define T_ERRNO(expr, err)                                                 \
  do {                                                                     \
    errno = 0;                                                             \
    long long t_rv_ = (long long)(expr);                                   \
    int t_e_ = errno;                                                      \
    if (t_rv_ != -1 || t_e_ != (err))                                      \
      T_FAIL("%s: want -1/%s, got %lld/%s", #expr, strerror(err), t_rv_,   \
             strerror(t_e_));                                              \
  } while (0)

typedef struct {
  const char *name;
  void (*fn)(void);
} t_case_t;

static inline const char *t_mode(void) {
  const char *m = getenv("ACO_TEST_MODE");
  return m ? m : "plain";
}

/* true under valgrind or qemu, where everything runs 10-50x slower */
static inline int t_slow(void) {
  const char *m = t_mode();
  return !strcmp(m, "valgrind") || !strcmp(m, "qemu");
}

static inline int t_sanitized(void) {
  const char *m = t_mode();
  return !strcmp(m, "asan") || !strcmp(m, "tsan");
}

/* n for fast runners, n/div (at least 1) for slow ones */
static inline long t_scale(long n, long div) {
  if (!t_slow()) return n;
  return n / div > 0 ? n / div : 1;
}

static inline uint64_t t_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Runs fn(arg) in a child process with stderr captured.  Passes when the
 * child dies (by a signal, or exits non-zero) and its stderr contains
 * `expect`.  Returns the captured text (static buffer) for further checks. */
static inline const char *t_expect_death_(const char *file, int line,
                                          void (*fn)(void *), void *arg,
                                          const char *expect) {
  static char buf[16384];
  int p[2];
  if (pipe(p) != 0) T_FAIL("pipe: %s", strerror(errno));
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) T_FAIL("fork: %s", strerror(errno));
  if (pid == 0) {
    close(p[0]);
    dup2(p[1], 2);
    close(p[1]);
    fn(arg);
    fflush(stderr);
    _exit(0);
  }
  close(p[1]);
  size_t len = 0;
  ssize_t r;
  while (len < sizeof(buf) - 1 &&
         (r = read(p[0], buf + len, sizeof(buf) - 1 - len)) != 0) {
    if (r < 0) {
      if (errno == EINTR) continue;
      break;
    }
    len += (size_t)r;
  }
  buf[len] = 0;
  close(p[0]);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  int died = WIFSIGNALED(st) || (WIFEXITED(st) && WEXITSTATUS(st) != 0);
  if (!died) {
    fprintf(stderr, "FAIL %s:%d: child was expected to die but exited 0;"
            " stderr:\n%s\n", file, line, buf);
    exit(1);
  }
  if (expect && !strstr(buf, expect)) {
    fprintf(stderr, "FAIL %s:%d: child died without \"%s\" on stderr;"
            " stderr:\n%s\n", file, line, expect, buf);
    exit(1);
  }
  return buf;
}
#define t_expect_death(fn, arg, expect) \
  t_expect_death_(__FILE__, __LINE__, (fn), (arg), (expect))

static inline int t_main_(int argc, char **argv, const t_case_t *cases,
                          size_t n) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  size_t ran = 0;
  for (size_t i = 0; i < n; i++) {
    if (argc > 1) {
      int want = 0;
      for (int a = 1; a < argc; a++)
        if (!strcmp(argv[a], cases[i].name)) want = 1;
      if (!want) continue;
    }
    uint64_t t0 = t_now_us();
    for (int run = 1;; run++) {
      __atomic_store_n(&t_late_hits_, 0, __ATOMIC_RELEASE);
      cases[i].fn();
      if (__atomic_load_n(&t_late_hits_, __ATOMIC_ACQUIRE) == 0) break;
      if (run == 3) {
        fprintf(stderr, "FAIL %s: late in 3 runs of 3; last: %s\n",
                cases[i].name, t_late_msg_);
        exit(1);
      }
      fprintf(stderr, "note: %s was late (%s); running it again\n",
              cases[i].name, t_late_msg_);
    }
    printf("ok %s (%.1f ms)\n", cases[i].name,
           (double)(t_now_us() - t0) / 1000.0);
    ran++;
  }
  if (ran == 0) {
    fprintf(stderr, "no test case matched\n");
    return 1;
  }
  return 0;
}

#define T_MAIN(...)                                                        \
  int main(int argc, char **argv) {                                        \
    static const t_case_t t_cases_[] = {__VA_ARGS__};                      \
    return t_main_(argc, argv, t_cases_,                                   \
                   sizeof(t_cases_) / sizeof(t_cases_[0]));                \
  }

#endif /* ACOTEST_H */
