# nginx-gdrive-worker
#
#   make            build build/ngx_http_gdrive_worker_module.so against
#                   Debian's nginx source tree (nginx-dev)
#   make run        build, start the local stack, run nginx in the foreground
#   make test       install what is missing, build, start the stack, prove
#   make stack / stack-down     the local services alone
#   make asan       the module with AddressSanitizer and UBSan
#   make fuzz / bench / soak

SHELL       := /bin/bash
NGX_SRC     ?= /usr/share/nginx/src
NGINX       ?= /usr/sbin/nginx
BUILD       := $(CURDIR)/build
MODULE      := ngx_http_gdrive_worker_module
SOURCES     := config $(wildcard src/*.c src/*.h)
PROVE_ARGS  ?= -r t/

UNIT_CFLAGS := -Wall -Wextra -Werror -g -O1 -fsanitize=address,undefined \
               -fno-omit-frame-pointer -Isrc -It/unit
UNIT_LIBS   := $(shell pkg-config --libs libcrypto jansson 2>/dev/null)
FUZZ_LIBS   := $(shell pkg-config --libs jansson libcrypto 2>/dev/null)
UNITS       := $(patsubst t/unit/%.c,$(BUILD)/unit/%,$(wildcard t/unit/test_*.c))
FUZZ_SECONDS ?= 60

.PHONY: all deps stack stack-down run test test-only test-asan unit asan fuzz bench soak clean

all: $(BUILD)/$(MODULE).so

# Debian's tree has no top-level Makefile: configure a private copy with the
# flags Debian's nginx was built with, so that the module is binary
# compatible with /usr/sbin/nginx.
$(BUILD)/nginx/objs/Makefile: config
	@test -f $(NGX_SRC)/configure || { echo "$(NGX_SRC) missing:" \
	    "apt-get install nginx-dev (or make deps)"; exit 1; }
	rm -rf $(BUILD)/nginx && mkdir -p $(BUILD) && cp -r $(NGX_SRC) $(BUILD)/nginx
	cd $(BUILD)/nginx && . ./conf_flags && \
	    ./configure "$${NGX_CONF_FLAGS[@]}" $(NGX_EXTRA_FLAGS) \
	        --add-dynamic-module=$(CURDIR) > $(BUILD)/configure.log 2>&1 \
	    || { tail -20 $(BUILD)/configure.log; exit 1; }

$(BUILD)/$(MODULE).so: $(BUILD)/nginx/objs/Makefile $(SOURCES)
	$(MAKE) -s -C $(BUILD)/nginx -f objs/Makefile modules
	cp $(BUILD)/nginx/objs/$(MODULE).so $@.tmp && mv -f $@.tmp $@

deps:
	bash t/stack/install-deps.sh

stack: all
	bash t/stack/stack.sh up

stack-down:
	bash t/stack/stack.sh down

run: all
	bash t/run.sh

# the README's test command: everything from a fresh Debian machine
test: deps
	$(MAKE) all
	bash t/stack/stack.sh up
	rc=0; $(MAKE) test-only || rc=$$?; bash t/stack/stack.sh down; exit $$rc

test-only:
	set -a && . $(BUILD)/stack.env && set +a && prove $(PROVE_ARGS)

# pure C parts, linked alone, under ASan and UBSan
unit: $(UNITS)

$(BUILD)/unit/test_%: t/unit/test_%.c src/ngx_gdrive_%.c src/ngx_gdrive_%.h t/unit/tap.h
	@mkdir -p $(dir $@)
	$(CC) $(UNIT_CFLAGS) -o $@ $< src/ngx_gdrive_$*.c $(UNIT_LIBS)

# trigger ids take their random bytes from the trace's pool
$(BUILD)/unit/test_message: t/unit/test_message.c src/ngx_gdrive_message.c src/ngx_gdrive_message.h src/ngx_gdrive_trace.c src/ngx_gdrive_trace.h t/unit/tap.h
	@mkdir -p $(dir $@)
	$(CC) $(UNIT_CFLAGS) -o $@ $< src/ngx_gdrive_message.c src/ngx_gdrive_trace.c $(UNIT_LIBS)

# the SigV4 signer end to end against the stack's S3 server (t/12-sigv4-s3.t)
$(BUILD)/unit/s3_e2e: t/unit/s3_e2e.c src/ngx_gdrive_sigv4.c src/ngx_gdrive_sigv4.h t/unit/tap.h
	@mkdir -p $(dir $@)
	$(CC) $(UNIT_CFLAGS) -o $@ $< src/ngx_gdrive_sigv4.c \
	    $(shell pkg-config --libs libcurl libcrypto 2>/dev/null)

# a test module that drives the S3 uploader of the built module (t/13-s3.t)
S3TEST := $(BUILD)/s3test/ngx_http_gdrive_s3_test_module.so

$(S3TEST): t/s3test/ngx_http_gdrive_s3_test_module.c t/s3test/build.mk $(BUILD)/$(MODULE).so
	@mkdir -p $(dir $@)
	$(MAKE) -s -C $(BUILD)/nginx -f objs/Makefile -f $(CURDIR)/t/s3test/build.mk \
	    S3TEST_SRC=$(CURDIR)/$< S3TEST_OUT=$@ s3test

# libFuzzer on the trigger validator for FUZZ_SECONDS
fuzz: $(BUILD)/fuzz/fuzz_message
	@mkdir -p $(BUILD)/fuzz/corpus
	$< -max_total_time=$(FUZZ_SECONDS) -max_len=70000 -timeout=10 \
	    -print_final_stats=1 $(BUILD)/fuzz/corpus t/fuzz/corpus

$(BUILD)/fuzz/fuzz_message: t/fuzz/fuzz_message.c src/ngx_gdrive_message.c src/ngx_gdrive_message.h src/ngx_gdrive_trace.c src/ngx_gdrive_trace.h
	@mkdir -p $(dir $@)
	clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc -o $@ \
	    t/fuzz/fuzz_message.c src/ngx_gdrive_message.c \
	    src/ngx_gdrive_trace.c $(FUZZ_LIBS)

# benchmarks against baselines measured in the same run (needs the stack)
bench: deps
	$(MAKE) all
	bash t/bench/trigger.sh
	bash t/bench/pipeline.sh

# the worker under load with faults for SOAK_SECONDS (600): nothing lost,
# memory bounded; the stack is started (services already up are reused)
# and left up
soak: deps
	$(MAKE) all
	bash t/stack/stack.sh up
	set -a && . $(BUILD)/stack.env && set +a && prove -v t/soak/soak.pl

asan:
	$(MAKE) BUILD=$(CURDIR)/build/asan \
	    NGX_EXTRA_FLAGS="--with-cc-opt='-fsanitize=address,undefined -fno-omit-frame-pointer' --with-ld-opt='-fsanitize=address,undefined'"

clean:
	rm -rf $(BUILD)

# the suite against the ASan/UBSan build of the module (nginx itself is
# not instrumented: the sanitizer runtimes are preloaded)
test-asan: asan
	set -a && . $(BUILD)/stack.env && set +a && \
	GDRIVE_MODULE=$(CURDIR)/build/asan/$(MODULE).so \
	GDRIVE_NGINX_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	prove $(PROVE_ARGS)
