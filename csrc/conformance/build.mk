# csrc/conformance: the C side of the conformance kit (docs/conformance.md):
# the step registry, the built-in steps, and the driver that runs a
# scenario's coroutines.  Part of libacoeventer.a; a C program carries it
# only if it calls it.  The Go runner compiles it in package conformance.
CONFORMANCE_SRCS := csrc/conformance/eventer_conformance.c \
                    csrc/conformance/eventer_conformance_steps.c \
                    csrc/conformance/eventer_conformance_http.c \
                    csrc/conformance/eventer_conformance_tls.c
CONFORMANCE_HEADERS := csrc/conformance/eventer_conformance.h
CONFORMANCE_TESTS := $(sort $(wildcard csrc/conformance/tests/test_*.c))
# runs start coroutines on several loops
CONFORMANCE_TSAN_TESTS := $(CONFORMANCE_TESTS)
