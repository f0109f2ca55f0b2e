/*
 * bench_util.h - helpers shared by the C benchmarks (header only, so that
 * bench/libaco/bench_aco.c also builds against the real libaco).
 * BENCH_NAME names the program in messages.
 */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A failed call (errno says why). */
static void die(const char *what) {
  fprintf(stderr, "%s: %s: %s\n", BENCH_NAME, what, strerror(errno));
  exit(1);
}

/* A failed check (no errno). */
static inline void fail(const char *what) {
  fprintf(stderr, "%s: %s\n", BENCH_NAME, what);
  exit(1);
}

static inline int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Pin to one CPU (BENCH_CPU, default the last one we may run on). */
static inline void pin_cpu(void) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return;
  int cpu = -1;
  const char *env = getenv("BENCH_CPU");
  if (env && *env) {
    cpu = atoi(env);
  } else {
    for (int i = 0; i < CPU_SETSIZE; i++)
      if (CPU_ISSET(i, &set)) cpu = i;
  }
  if (cpu < 0) return;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof(set), &set) != 0)
    fprintf(stderr, "%s: sched_setaffinity(%d): %s\n", BENCH_NAME, cpu,
            strerror(errno));
  printf("# pinned to cpu %d\n", cpu);
}

/* Resident set size of this process. */
static inline size_t rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f) die("/proc/self/statm");
  unsigned long size = 0, resident = 0;
  if (fscanf(f, "%lu %lu", &size, &resident) != 2) die("statm");
  fclose(f);
  return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

#endif /* BENCH_UTIL_H */
