/* unity file: the built-in C steps (csrc/conformance).  The REST steps
 * register themselves (http.go) in builds that have the HTTP engine. */
#define EV_CF_NO_HTTP 1
#include "../csrc/conformance/eventer_conformance_steps.c"
