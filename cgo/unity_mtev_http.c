//go:build eventer_http

/* unity file: cgo compiles only this directory's files (see DESIGN.md 2).
 * The HTTP engine calls the listener's mtev_acceptor_closure_* functions;
 * it is built with -tags eventer_http until csrc/listener's unity files
 * are in this package too (without them the package would not link). */
#include "../csrc/http/mtev_http.c"
