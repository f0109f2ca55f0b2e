/*
 * conformance.h - the C driver of the cross-language conformance
 * scenarios (testdata/conformance): runs a scenario's steps in a C
 * coroutine and records each result as text, for the Go test to compare
 * with the Go driver's trace and the expected one.
 */
#ifndef ACOEVENTER_CGO_CONFORMANCE_H
#define ACOEVENTER_CGO_CONFORMANCE_H

enum {
  EV_CF_PAIR = 1, EV_CF_TCP, EV_CF_WRITE, EV_CF_READ, EV_CF_PEER_WRITE,
  EV_CF_PEER_CLOSE, EV_CF_PEER_RESET, EV_CF_SLEEP, EV_CF_YIELD,
  EV_CF_ASYNCH, EV_CF_CANCEL, EV_CF_CLOSE, EV_CF_CONNECT_REFUSED,
  EV_CF_ACCEPT
};

typedef struct {
  int cmd;
  int n;            /* read size, sleep/asynch ms */
  int timeout_ms;   /* -1: none */
  char text[64];    /* write / peer_write data */
} ev_cf_step_t;

#define EV_CF_RESULT_LEN 96

/* Starts a C coroutine (call on a loop thread) that runs steps[0..n) and
 * writes each result into results[i * EV_CF_RESULT_LEN]; *done becomes 1
 * at the end. */
int ev_cf_run(const ev_cf_step_t *steps, int n, char *results, int *done);

/* The symbolic name of an errno ("ETIMEDOUT"), as the scenarios use. */
const char *ev_cf_errname(int err);

#endif
