/* unity file: the C driver of the conformance kit (csrc/conformance),
 * compiled in this package so that only programs importing it carry it */
#include "../csrc/conformance/eventer_conformance.c"
