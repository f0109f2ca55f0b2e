# csrc/conf: libmtev's XML configuration (mtev_conf, on libxml2) and the
# small mtev_hash it hands key/value sets out in.
CONF_SRCS := csrc/conf/mtev_hash.c csrc/conf/mtev_conf.c
CONF_HEADERS := csrc/conf/mtev_hash.h csrc/conf/mtev_conf.h
CONF_TESTS := $(sort $(wildcard csrc/conf/tests/test_*.c))
CONF_TSAN_TESTS :=
# test programs that link libxml2 (see XML_TESTS in the Makefile)
CONF_XML_TESTS := csrc/conf/tests/test_conf.c
