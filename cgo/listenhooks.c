//go:build eventer_testhooks

/* listenhooks.c - see listenhooks.h */
#include "listenhooks.h"

#include <stdio.h>
#include <string.h>

#include "eventer_aco.h"
#include "eventer_aco_impl.h"
#include "mtev_listener.h"

static void ev_lh_c_aco(void) {
  eventer_aco_t e = eventer_aco_arg();
  mtev_acceptor_closure_t *ac = eventer_aco_get_closure(e);
  const char *g = mtev_hash_dict_get(mtev_acceptor_closure_config(ac), "greeting");
  char buf[128], out[160];
  for (;;) {
    int n = eventer_aco_read(e, buf, sizeof(buf), NULL);
    if (n <= 0) break;
    int m = snprintf(out, sizeof(out), "c:%s\n", g ? g : "-");
    if (eventer_aco_write(e, out, (size_t)m, NULL) < 0) break;
  }
  eventer_aco_close(e);
  eventer_aco_free(e);
}

int ev_lh_register_c_aco(const char *name) {
  return mtev_listener_register_aco_function(name, ev_lh_c_aco);
}

int ev_lh_registration(uintptr_t ep, uint32_t *reg) {
  eventer_t e = (eventer_t)ep;
  *reg = e->reg_epoch;
  return __atomic_load_n(&e->state, __ATOMIC_ACQUIRE) == EV_ST_FD;
}
