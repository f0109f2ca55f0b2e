//go:build eventer_http

/* unity file: the REST steps and handlers (csrc/conformance), built with
 * the HTTP engine (the eventer_http tag, as cgo's unity files of it). */
#include "../csrc/conformance/eventer_conformance_http.c"
