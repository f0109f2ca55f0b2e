# csrc/http: the HTTP/1.1 engine (mtev_http), REST routing (mtev_rest) and
# the request parser they share (http_parse).  Links libpcre2-8 and zlib;
# the arm64 build links Debian's arm64 builds of both (libpcre2-dev:arm64,
# zlib1g-dev:arm64; scripts/deps.sh installs them).
# (mtev_http.c and mtev_rest.c are compiled as one unit, unit/http_engine.c:
# outside csrc/http/*.c, which the Go build compiles file by file)
HTTP_SRCS := csrc/http/http_parse.c csrc/http/unit/http_engine.c
HTTP_HEADERS := csrc/http/mtev_http.h csrc/http/mtev_rest.h
HTTP_LDLIBS := -lpcre2-8 -lz
# (the unit's object depends on the files it includes)
$(foreach v,$(VARIANTS),$(BUILD)/$(v)/obj/csrc/http/unit/http_engine.o): \
  csrc/http/mtev_http.c csrc/http/mtev_rest.c
HTTP_TESTS := $(sort $(wildcard csrc/http/tests/test_*.c))
# multi-thread test programs (job threads append to responses; pools)
HTTP_TSAN_TESTS := csrc/http/tests/test_http_server.c csrc/http/tests/test_http_abort.c \
                   csrc/http/tests/test_http_abort_reset.c
# the server tests read <rest><acl> from an XML configuration (the hostile
# ones link it through REST routing)
HTTP_XML_TESTS := csrc/http/tests/test_http_server.c csrc/http/tests/test_http_hostile.c \
                  csrc/http/tests/test_http_short_bodies.c csrc/http/tests/test_http_discard.c \
                  csrc/http/tests/test_http_abort.c csrc/http/tests/test_http_abort_reset.c

# curl (Debian's) against the engine: csrc/http/tests/curl_test.sh drives
# http_demo_server, plain and under ASan, over HTTP and HTTPS.
HTTP_DEMO = $(BUILD)/$(1)/tests/http/tests/http_demo_server
.PHONY: test-c-http-curl fuzz-http
test-c: test-c-http-curl
test-c-http-curl: $(call HTTP_DEMO,plain) $(call HTTP_DEMO,asan)
	@bash csrc/http/tests/curl_test.sh plain $(call HTTP_DEMO,plain)
	@bash csrc/http/tests/curl_test.sh plain $(call HTTP_DEMO,plain) tls
	@ASAN_OPTIONS=detect_leaks=1:detect_stack_use_after_return=0 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  bash csrc/http/tests/curl_test.sh asan $(call HTTP_DEMO,asan)
	@ASAN_OPTIONS=detect_leaks=1:detect_stack_use_after_return=0 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  bash csrc/http/tests/curl_test.sh asan $(call HTTP_DEMO,asan) tls

# A long libFuzzer run of the request parser under ASan+UBSan (clang):
#   make fuzz-http FUZZ_RUNS=10000000
# It starts from the seed requests in testdata/http/requests (read only:
# libFuzzer writes what it finds to the first directory, build/fuzz/corpus).
FUZZ_RUNS ?= 1000000
FUZZ_CC ?= clang
$(BUILD)/fuzz/fuzz_http_parse: csrc/http/fuzz/fuzz_http_parse.c csrc/http/http_parse.c csrc/http/http_parse.h
	@mkdir -p $(@D)
	$(FUZZ_CC) -std=gnu11 -g -O1 -D_GNU_SOURCE -Icsrc/http \
	  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	  csrc/http/fuzz/fuzz_http_parse.c csrc/http/http_parse.c -o $@
fuzz-http: $(BUILD)/fuzz/fuzz_http_parse
	@mkdir -p $(BUILD)/fuzz/corpus
	$(BUILD)/fuzz/fuzz_http_parse -runs=$(FUZZ_RUNS) -max_len=4096 \
	  -print_final_stats=1 $(BUILD)/fuzz/corpus testdata/http/requests
