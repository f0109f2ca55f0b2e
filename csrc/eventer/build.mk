# csrc/eventer: the event loop, eventer_aco, listener, http.
EVENTER_SRCS :=
EVENTER_HEADERS :=
EVENTER_TESTS := $(sort $(wildcard csrc/eventer/tests/test_*.c))
EVENTER_TSAN_TESTS :=
