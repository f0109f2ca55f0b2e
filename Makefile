# aco-eventer build.  `make test` is what CI runs (see README.md).
#
# C sources are built in several variants, each in its own object tree
# under build/<variant>/:
#   plain  - gcc -O2, the library that `make lib` installs
#   asan   - AddressSanitizer + UndefinedBehaviorSanitizer
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

INCDIRS := -Icsrc/libaco -Icsrc/eventer -Icsrc/http -Icsrc/testing
WARN    := -Wall -Wextra -Werror
BASE_CFLAGS := -std=gnu11 -g -pthread -D_GNU_SOURCE -fstack-clash-protection $(WARN) $(INCDIRS) $(EXTRA_CFLAGS)
BASE_LDLIBS := -pthread -lm

include csrc/libaco/build.mk
include csrc/eventer/build.mk
include csrc/http/build.mk

LIB_SRCS   := $(LIBACO_SRCS) $(EVENTER_SRCS) $(HTTP_SRCS)
C_TESTS    := $(LIBACO_TESTS) $(EVENTER_TESTS) $(HTTP_TESTS)
TSAN_TESTS := $(LIBACO_TSAN_TESTS) $(EVENTER_TSAN_TESTS) $(HTTP_TSAN_TESTS)
PUBLIC_HEADERS := $(LIBACO_HEADERS) $(EVENTER_HEADERS) $(HTTP_HEADERS) csrc/acoeventer.h
BASE_LDLIBS += $(HTTP_LDLIBS)

# ---- variants -------------------------------------------------------------

CC_plain     := $(HOSTCC)
CFLAGS_plain := -O2
LDFLAGS_plain :=

# asan-use-after-return is off: ASan's fake stacks would move coroutine
# locals off the shared stack, which breaks copy-stack semantics.
CC_asan      := $(HOSTCC)
CFLAGS_asan  := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
                -fno-sanitize-recover=all --param asan-use-after-return=0
LDFLAGS_asan := -fsanitize=address,undefined

CC_tsan      := $(HOSTCC)
CFLAGS_tsan  := -O1 -fsanitize=thread
LDFLAGS_tsan := -fsanitize=thread

# aarch64 gcc probes big frames every 64 KiB by default, which can jump
# our 4 KiB guard page; probe every page instead.
CC_arm64     := $(ARM64CC)
CFLAGS_arm64 := -O2 --param stack-clash-protection-guard-size=12
LDFLAGS_arm64 := -static

VARIANTS := plain asan tsan arm64
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
	$(Q)$$(CC_$(1)) $$(LDFLAGS_$(1)) $$< $(BUILD)/$(1)/libacoeventer.a $$(BASE_LDLIBS) -o $$@

$(BUILD)/$(1)/.dir:
	@mkdir -p $$(@D) && touch $$@
endef
$(foreach v,$(VARIANTS),$(eval $(call variant_rules,$(v))))
$(foreach v,$(VARIANTS),$(eval $(call http_test_rules,$(v))))

# test program paths: csrc/libaco/tests/test_x.c -> build/V/tests/libaco/tests/test_x
test_bins = $(patsubst csrc/%.c,$(BUILD)/$(1)/tests/%,$(2))

# ---- the library a C user links -------------------------------------------

.PHONY: lib
lib: $(BUILD)/lib/libacoeventer.a $(BUILD)/lib/pkgconfig/acoeventer.pc \
     $(patsubst %,$(BUILD)/include/%,$(notdir $(PUBLIC_HEADERS)))

$(BUILD)/lib/libacoeventer.a: $(BUILD)/plain/libacoeventer.a
	@mkdir -p $(@D)
	cp $< $@

$(BUILD)/include/%.h: csrc/libaco/%.h
	@mkdir -p $(@D) && cp $< $@
$(BUILD)/include/%.h: csrc/eventer/%.h
	@mkdir -p $(@D) && cp $< $@
$(BUILD)/include/%.h: csrc/http/%.h
	@mkdir -p $(@D) && cp $< $@
$(BUILD)/include/%.h: csrc/%.h
	@mkdir -p $(@D) && cp $< $@

$(BUILD)/lib/pkgconfig/acoeventer.pc: scripts/acoeventer.pc.in Makefile
	@mkdir -p $(@D)
	sed -e 's|@PREFIX@|$(abspath $(BUILD))|' $< > $@

# ---- tests -------------------------------------------------------------------

.PHONY: test deps test-c test-c-plain test-c-asan test-c-valgrind test-c-tsan \
        test-c-arm64 test-examples test-go bench clean run

test: deps lib test-c test-examples test-go

deps:
	@scripts/deps.sh

test-c: test-c-plain test-c-asan test-c-valgrind test-c-tsan test-c-arm64

test-c-plain: $(call test_bins,plain,$(C_TESTS))
	@scripts/run-tests.sh plain $^

test-c-asan: $(call test_bins,asan,$(C_TESTS))
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=0 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  scripts/run-tests.sh asan $^

test-c-valgrind: $(call test_bins,plain,$(C_TESTS))
	@ACO_TEST_VALGRIND=1 scripts/run-tests.sh valgrind-wrap $^

test-c-tsan: $(call test_bins,tsan,$(TSAN_TESTS))
	@TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 scripts/run-tests.sh tsan $^

test-c-arm64: $(call test_bins,arm64,$(C_TESTS))
	@scripts/run-tests.sh qemu $^

# The seed's C examples, built against the installed library exactly as a
# user would build them (pkg-config), then checked.
test-examples: lib
	@scripts/test-examples.sh

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
