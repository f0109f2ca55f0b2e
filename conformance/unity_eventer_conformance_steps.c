/* unity file: the built-in C steps (csrc/conformance) */
#include "../csrc/conformance/eventer_conformance_steps.c"
