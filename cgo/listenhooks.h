/*
 * listenhooks.h - a C aco function for the Go listener tests, so that one
 * configuration can name a C and a Go aco function.  Built only with the
 * build tag eventer_testhooks (listenhooks.c, listenhooks.go).
 */
#ifndef ACOEVENTER_CGO_LISTENHOOKS_H
#define ACOEVENTER_CGO_LISTENHOOKS_H

/* Registers, as listener type `name`, a C aco function that answers each
 * read with "c:" and the <config> value of "greeting" (or "-"), and ends
 * at EOF. */
int ev_lh_register_c_aco(const char *name);

#include <stdint.h>

/* Whether event e is registered with its loop for its fd (1) or not (0),
 * and the number of that registration in *reg (the loop numbers each
 * one: a removal and a new registration give a new number).  Loop thread
 * only. */
int ev_lh_registration(uintptr_t e, uint32_t *reg);

#endif
