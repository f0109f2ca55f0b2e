# csrc/libaco: shared-stack coroutines.  Both switch files are always
# built; each assembles to nothing on the other architecture.
LIBACO_SRCS := csrc/libaco/aco.c csrc/libaco/acosw_amd64.S csrc/libaco/acosw_arm64.S
LIBACO_HEADERS := csrc/libaco/aco.h csrc/libaco/acosw_layout.h \
                  csrc/libaco/aco_assert_override.h
LIBACO_TESTS := $(sort $(wildcard csrc/libaco/tests/test_*.c))
LIBACO_TSAN_TESTS := csrc/libaco/tests/test_aco_threads.c
