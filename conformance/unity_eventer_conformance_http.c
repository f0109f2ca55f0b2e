/* unity file: the REST steps and handlers (csrc/conformance). */
#include "../csrc/conformance/eventer_conformance_http.c"
