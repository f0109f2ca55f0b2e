/* greet.c - the C implementation of the greet_serve step: one line in
 * ("NAME\n"), "hello, NAME\n" out. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "eventer_conformance.h"

static int greet_serve(eventer_conformance_call_t *c) {
  eventer_aco_t e = eventer_conformance_aco(c, 0);
  if (!e) return -1;
  struct timeval tv, *tmo = eventer_conformance_opt_tv(c, "timeout", &tv);
  char name[64];
  size_t n = 0;
  while (n == 0 || name[n - 1] != '\n') {
    if (n == sizeof(name)) {
      errno = EMSGSIZE; /* no line within 64 bytes */
      return -1;
    }
    int rv = eventer_aco_read(e, name + n, sizeof(name) - n, tmo);
    if (rv < 0) return -1; /* ETIMEDOUT, ECONNRESET, ... */
    if (rv == 0) {
      eventer_conformance_result(c, "eof");
      return 0;
    }
    n += (size_t)rv;
  }
  char out[80];
  int len = snprintf(out, sizeof(out), "hello, %.*s\n", (int)(n - 1), name);
  int rv = eventer_aco_write(e, out, (size_t)len, tmo);
  if (rv < 0) return -1;
  eventer_conformance_result(c, "n=%d", rv);
  return 0;
}

void greet_register(void) {
  eventer_conformance_register("greet_serve", "obj timeout=dur", greet_serve);
}
