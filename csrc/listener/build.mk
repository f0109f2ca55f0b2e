# csrc/listener: mtev_listener (binding, accepting, classic and aco
# dispatch).  mtev_listener_conf.c is the XML front end (mtev_listener_init);
# the rest does not need libxml2.
LISTENER_SRCS := csrc/listener/mtev_listener.c csrc/listener/mtev_listener_conf.c
LISTENER_HEADERS := csrc/listener/mtev_listener.h
LISTENER_TESTS := $(sort $(wildcard csrc/listener/tests/test_*.c))
# every listener test runs loop threads and an accept thread
LISTENER_TSAN_TESTS := $(LISTENER_TESTS)
# (test_listener_tls and test_listener_aco_read also use OpenSSL, and
# test_listener_fini's TLS client does: the XML tests link dynamically on
# arm64, as the OpenSSL ones must)
LISTENER_XML_TESTS := csrc/listener/tests/test_listener_conf.c \
                      csrc/listener/tests/test_listener_aco_read.c \
                      csrc/listener/tests/test_listener_tls.c \
                      csrc/listener/tests/test_listener_fini.c
