/* unity file: the tls step (csrc/conformance). */
#include "../csrc/conformance/eventer_conformance_tls.c"
