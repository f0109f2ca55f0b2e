# aco-eventer build.  `make test` is what CI runs (see README.md).
#
# C sources are built in several variants, each in its own object tree
# under build/<variant>/:
#   plain  - gcc -O2, the library that `make lib` installs
#   asan   - AddressSanitizer + UndefinedBehaviorSanitizer, -O1
#   asan-O2 - the same at -O2 (what users build: other inlining, other
#            frames for ASan to watch)
#   tsan   - ThreadSanitizer (multi-thread tests only)
#   arm64  - aarch64 cross build, run under qemu-aarch64-static
# valgrind runs the plain test binaries.
#
# Each csrc area describes itself in its own build.mk: its library sources
# (<AREA>_SRCS), its test programs (<AREA>_TESTS) and which of them also
# run under ThreadSanitizer (<AREA>_TSAN_TESTS).

SHELL := /bin/bash
.DEFAULT_GOAL := lib

# V=1 shows the full commands
ifeq ($(V),1)
Q :=
say =
else
Q := @
say = @echo "  $(1)"
endif

BUILD   := build
HOSTCC  ?= gcc
ARM64CC ?= aarch64-linux-gnu-gcc
QEMU    ?= qemu-aarch64-static
VALGRIND ?= valgrind

# libxml2's headers (csrc/conf): the same for every architecture
XML_CFLAGS := $(shell pkg-config --cflags libxml-2.0 2>/dev/null || echo -I/usr/include/libxml2)
INCDIRS := -Icsrc/libaco -Icsrc/eventer -Icsrc/conf -Icsrc/listener -Icsrc/http \
           -Icsrc/conformance -Icsrc/testing $(XML_CFLAGS)
WARN    := -Wall -Wextra -Werror
BASE_CFLAGS := -std=gnu11 -g -pthread -D_GNU_SOURCE -fstack-clash-protection $(WARN) $(INCDIRS) $(EXTRA_CFLAGS)
BASE_LDLIBS := -pthread -lm -lssl -lcrypto

# the build variants (each has its CC_, CFLAGS_, LDFLAGS_ and LDLIBS_ below);
# set before the parts' build.mk files, which may name them
VARIANTS := plain asan asan-O2 tsan arm64
include csrc/libaco/build.mk
include csrc/eventer/build.mk
include csrc/conf/build.mk
include csrc/listener/build.mk
include csrc/http/build.mk
include csrc/conformance/build.mk

LIB_SRCS   := $(LIBACO_SRCS) $(EVENTER_SRCS) $(CONF_SRCS) $(LISTENER_SRCS) \
              $(HTTP_SRCS) $(CONFORMANCE_SRCS)
C_TESTS    := $(LIBACO_TESTS) $(EVENTER_TESTS) $(CONF_TESTS) $(LISTENER_TESTS) \
              $(HTTP_TESTS) $(CONFORMANCE_TESTS)
TSAN_TESTS := $(LIBACO_TSAN_TESTS) $(EVENTER_TSAN_TESTS) $(CONF_TSAN_TESTS) \
              $(LISTENER_TSAN_TESTS) $(HTTP_TSAN_TESTS) $(CONFORMANCE_TSAN_TESTS)
PUBLIC_HEADERS := $(LIBACO_HEADERS) $(EVENTER_HEADERS) $(CONF_HEADERS) \
                  $(LISTENER_HEADERS) $(HTTP_HEADERS) $(CONFORMANCE_HEADERS) \
                  csrc/acoeventer.h
BASE_LDLIBS += $(HTTP_LDLIBS)
# Test programs that link libxml2 (see DYNAMIC_ARM64_TESTS below).
XML_TESTS := $(CONF_XML_TESTS) $(LISTENER_XML_TESTS) $(HTTP_XML_TESTS) \
             $(CONFORMANCE_XML_TESTS)

# ---- variants -------------------------------------------------------------

CC_plain     := $(HOSTCC)
CFLAGS_plain := -O2
LDFLAGS_plain :=
LDLIBS_plain := -lxml2

# asan-use-after-return is off: ASan's fake stacks would move coroutine
# locals off the shared stack, which breaks copy-stack semantics.
CC_asan      := $(HOSTCC)
CFLAGS_asan  := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
                -fno-sanitize-recover=all --param asan-use-after-return=0
LDFLAGS_asan := -fsanitize=address,undefined
LDLIBS_asan  := -lxml2

CC_asan-O2     := $(HOSTCC)
CFLAGS_asan-O2 := -O2 $(filter-out -O1,$(CFLAGS_asan))
LDFLAGS_asan-O2 := $(LDFLAGS_asan)
LDLIBS_asan-O2 := $(LDLIBS_asan)

CC_tsan      := $(HOSTCC)
CFLAGS_tsan  := -O1 -fsanitize=thread
LDFLAGS_tsan := -fsanitize=thread
LDLIBS_tsan  := -lxml2

# aarch64 gcc probes big frames every 64 KiB by default, which can jump
# our 4 KiB guard page; probe every page instead.
CC_arm64     := $(ARM64CC)
CFLAGS_arm64 := -O2 --param stack-clash-protection-guard-size=12
LDFLAGS_arm64 := -static
LDLIBS_arm64 :=

ALL_HEADERS := $(wildcard csrc/*.h csrc/*/*.h csrc/*/tests/*.h)

# objects of variant $(1) for sources $(2)
objs = $(patsubst %,$(BUILD)/$(1)/obj/%.o,$(basename $(2)))

define variant_rules
$(BUILD)/$(1)/obj/%.o: %.c $(ALL_HEADERS) | $(BUILD)/$(1)/.dir
	@mkdir -p $$(@D)
	$$(call say,CC [$(1)] $$<)
	$(Q)$$(CC_$(1)) $$(BASE_CFLAGS) $$(CFLAGS_$(1)) -c $$< -o $$@

$(BUILD)/$(1)/obj/%.o: %.S $(ALL_HEADERS) | $(BUILD)/$(1)/.dir
	@mkdir -p $$(@D)
	$$(call say,AS [$(1)] $$<)
	$(Q)$$(CC_$(1)) $$(BASE_CFLAGS) $$(CFLAGS_$(1)) -c $$< -o $$@

$(BUILD)/$(1)/libacoeventer.a: $(call objs,$(1),$(LIB_SRCS))
	@rm -f $$@
	$$(call say,AR [$(1)] $$@)
	$(Q)$$(AR) rcs $$@ $$^

$(BUILD)/$(1)/tests/%: $(BUILD)/$(1)/obj/csrc/%.o $(BUILD)/$(1)/libacoeventer.a
	@mkdir -p $$(@D)
	$$(call say,LD [$(1)] $$@)
	$(Q)$$(CC_$(1)) $$(LDFLAGS_$(1)) $$< $(BUILD)/$(1)/libacoeventer.a $$(LDLIBS_$(1)) $$(BASE_LDLIBS) -o $$@

$(BUILD)/$(1)/.dir:
	@mkdir -p $$(@D) && touch $$@
endef
$(foreach v,$(VARIANTS),$(eval $(call variant_rules,$(v))))

# test program paths: csrc/libaco/tests/test_x.c -> build/V/tests/libaco/tests/test_x
test_bins = $(patsubst csrc/%.c,$(BUILD)/$(1)/tests/%,$(2))

# Test programs that use OpenSSL or libxml2 link dynamically on arm64 (the
# others statically): Debian's static libcrypto calls glibc's dlopen and
# getaddrinfo, which a static program can only use with the same glibc's
# shared objects present at run time anyway, and static libxml2 needs ICU
# and liblzma archives Debian does not ship for arm64.  qemu finds the
# arm64 libraries under / (run-tests.sh passes -L /; scripts/deps.sh
# installs the arm64 -dev packages through Debian multiarch).
DYNAMIC_ARM64_TESTS := $(EVENTER_SSL_TESTS) $(XML_TESTS)
$(call test_bins,arm64,$(DYNAMIC_ARM64_TESTS)): LDFLAGS_arm64 :=
$(call test_bins,arm64,$(XML_TESTS)): LDLIBS_arm64 := -lxml2

# ---- the library a C user links -------------------------------------------

# libmtev's include layout (<eventer/eventer.h>, ...): forwarding headers
LIBMTEV_FWD_HEADERS := $(patsubst %,$(BUILD)/include/eventer/%,eventer.h \
                       eventer_jobq.h eventer_aco_opset.h)

.PHONY: lib
lib: $(BUILD)/lib/libacoeventer.a $(BUILD)/lib/pkgconfig/acoeventer.pc \
     $(patsubst %,$(BUILD)/include/%,$(notdir $(PUBLIC_HEADERS))) \
     $(LIBMTEV_FWD_HEADERS)

$(BUILD)/lib/libacoeventer.a: $(BUILD)/plain/libacoeventer.a
	@mkdir -p $(@D)
	cp $< $@

$(BUILD)/include/%.h: csrc/libaco/%.h
	@mkdir -p $(@D) && cp $< $@
$(BUILD)/include/%.h: csrc/eventer/%.h
	@mkdir -p $(@D) && cp $< $@
$(BUILD)/include/%.h: csrc/conf/%.h
	@mkdir -p $(@D) && cp $< $@
$(BUILD)/include/%.h: csrc/listener/%.h
	@mkdir -p $(@D) && cp $< $@
$(BUILD)/include/%.h: csrc/http/%.h
	@mkdir -p $(@D) && cp $< $@
$(BUILD)/include/%.h: csrc/conformance/%.h
	@mkdir -p $(@D) && cp $< $@
$(BUILD)/include/%.h: csrc/%.h
	@mkdir -p $(@D) && cp $< $@
$(LIBMTEV_FWD_HEADERS): $(BUILD)/include/eventer/%.h: csrc/eventer/%.h
	@mkdir -p $(@D)
	@printf '/* libmtev include path <eventer/%s> */\n#include "../%s"\n' \
	  $(notdir $<) $(notdir $<) > $@

$(BUILD)/lib/pkgconfig/acoeventer.pc: scripts/acoeventer.pc.in Makefile
	@mkdir -p $(@D)
	sed -e 's|@PREFIX@|$(abspath $(BUILD))|' $< > $@

# ---- tests -------------------------------------------------------------------

.PHONY: test test-bins deps test-c test-c-plain test-c-asan test-c-valgrind test-c-tsan \
        test-c-arm64 test-libaco-compat test-examples test-compat-libmtev test-go bench clean run

# Every program the C suites run, built first with one job per CPU.  The
# suites then run one after another, except the valgrind and qemu ones,
# which run side by side: each runs one program at a time, and a program
# under valgrind never uses more than one CPU.
JOBS ?= $(shell nproc)
TEST_BINS := lib $(foreach v,plain asan asan-O2 arm64,$(call test_bins,$(v),$(C_TESTS))) \
             $(call test_bins,tsan,$(TSAN_TESTS)) \
             $(BUILD)/asan-O2/libacoeventer.a $(BUILD)/arm64/libacoeventer.a

test: deps
	@$(MAKE) --no-print-directory -j$(JOBS) test-bins
	@$(MAKE) --no-print-directory test-c-plain test-c-asan test-c-tsan
	@$(MAKE) --no-print-directory -j2 test-c-valgrind test-c-arm64
	@$(MAKE) --no-print-directory test-libaco-compat test-examples test-compat-libmtev test-go

test-bins: $(TEST_BINS)

deps:
	@scripts/deps.sh

test-c: test-c-plain test-c-asan test-c-valgrind test-c-tsan test-c-arm64 \
        test-libaco-compat

test-c-plain: $(call test_bins,plain,$(C_TESTS))
	@scripts/run-tests.sh plain $^

test-c-asan: $(call test_bins,asan,$(C_TESTS)) $(call test_bins,asan-O2,$(C_TESTS))
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=0 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  scripts/run-tests.sh asan $^

test-c-valgrind: $(call test_bins,plain,$(C_TESTS))
	@ACO_TEST_VALGRIND=1 scripts/run-tests.sh valgrind-wrap $^

test-c-tsan: $(call test_bins,tsan,$(TSAN_TESTS))
	@TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$(CURDIR)/csrc/testing/tsan.supp scripts/run-tests.sh tsan $^

test-c-arm64: $(call test_bins,arm64,$(C_TESTS))
	@scripts/run-tests.sh qemu $^

# Programs in the style of libaco's own, built against the installed
# headers at -O0 and -O2, plain, under ASan and for aarch64.
test-libaco-compat: lib $(BUILD)/asan-O2/libacoeventer.a $(BUILD)/arm64/libacoeventer.a
	@csrc/libaco/tests/compat/run.sh

# The seed's C examples, built against the installed library exactly as a
# user would build them (pkg-config), then checked.
test-examples: lib
	@scripts/test-examples.sh

# Programs written the way libmtev's own use its eventer, built against
# the installed headers (<eventer/eventer.h>) with pkg-config, then run.
test-compat-libmtev: lib
	@scripts/test-compat-libmtev.sh

test-go:
	@scripts/test-go.sh

bench: lib
	@scripts/bench.sh

run:
	@scripts/deps.sh run
	scripts/cgo-stamp.sh
	go run ./cmd/acod $(ARGS)

clean:
	rm -rf $(BUILD)

.SECONDARY:
