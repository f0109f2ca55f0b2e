//go:build eventer_http

package conformance

// #include "eventer_conformance_impl.h"
import "C"

// The REST steps and handlers of the C driver, in builds that have the
// HTTP engine.
func init() { C.ev_cf_http_register() }
