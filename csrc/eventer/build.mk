# csrc/eventer: the event loop (libmtev's eventer API on epoll), its log
# streams and job queues.  Every .c is its own translation unit (here and
# in cgo's unity files): helpers are static, shared internals are ev_*.
EVENTER_SRCS := csrc/eventer/mtev_log.c csrc/eventer/eventer.c \
                csrc/eventer/eventer_callback.c \
                csrc/eventer/eventer_POSIX_fd_opset.c csrc/eventer/eventer_epoll.c \
                csrc/eventer/eventer_timer.c csrc/eventer/eventer_loop.c \
                csrc/eventer/eventer_jobq.c \
                csrc/eventer/eventer_aco.c csrc/eventer/eventer_aco_fd.c \
                csrc/eventer/eventer_aco_proxy.c \
                csrc/eventer/eventer_aco_sync.c \
                csrc/eventer/eventer_SSL_fd_opset.c csrc/eventer/eventer_ssl_mem.c \
                csrc/eventer/eventer_x25519.c csrc/eventer/eventer_x25519_prov.c \
                csrc/eventer/eventer_kdf_prov.c \
                csrc/eventer/eventer_thread.c
EVENTER_HEADERS := csrc/eventer/eventer.h csrc/eventer/mtev_log.h \
                   csrc/eventer/eventer_jobq.h csrc/eventer/eventer_aco_opset.h \
                   csrc/eventer/eventer_aco.h csrc/eventer/eventer_aco_proxy.h \
                   csrc/eventer/eventer_aco_sync.h \
                   csrc/eventer/eventer_SSL_fd_opset.h
EVENTER_TESTS := $(sort $(wildcard csrc/eventer/tests/test_*.c))
# test programs that use OpenSSL (the Makefile links them dynamically on arm64)
EVENTER_SSL_TESTS := $(sort $(wildcard csrc/eventer/tests/test_eventer_ssl*.c)) \
                     csrc/eventer/tests/test_eventer_x25519.c
# multi-thread test programs, also run under ThreadSanitizer
EVENTER_TSAN_TESTS := csrc/eventer/tests/test_eventer_threads.c \
                      csrc/eventer/tests/test_eventer_compat.c \
                      csrc/eventer/tests/test_eventer_aco_proxy.c \
                      csrc/eventer/tests/test_eventer_jobq.c \
                      csrc/eventer/tests/test_eventer_aco.c \
                      csrc/eventer/tests/test_eventer_aco_sync.c \
                      csrc/eventer/tests/test_eventer_ssl_threads.c \
                      csrc/eventer/tests/test_eventer_ssl_mem.c \
                      csrc/eventer/tests/test_eventer_ssl_x25519_threads.c \
                      csrc/eventer/tests/test_eventer_thread.c \
                      csrc/eventer/tests/test_eventer_wake.c
