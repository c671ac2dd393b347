# tfm: a Transformer training framework in C11 + OpenMP.
#   make            build build/libtfm.a and build/tfm
#   make run        train the copy task and show its translations
#   make test       check-layers, then build and run every Check suite (tests/test_*.c)
#   make check-layers  fail on an #include that runs up the layer order of STYLE.md
#   make SANITIZE=1 test   the same with ASan + UBSan + LSan (objects in build/san)
#   make MPI=1      build/tfm with mpicc: `mpirun -np N build/tfm train ...` trains one model
#                   data-parallel (src/train/dist_mpi.c, train/dist.c; the library is unchanged)
#   make MPI=1 test-mpi   only the multi-process tests (tests/test_mpi.c; make MPI=1 test runs them too)
#   make bench      benchmarks against the references in ../shared/bench
#   make fuzz       libFuzzer targets (clang), FUZZ_SECONDS each
#   make install PREFIX=/usr/local [DESTDIR=...]   (make uninstall with the same)
#                   tfm, tfm(1), bash completion, libtfm.so.MAJOR.MINOR, libtfm.a,
#                   include/tfm/, tfm.pc
CC      ?= cc
ifeq ($(CC),cc)
CC      := gcc
endif
# PORTABLE=1 (the Debian package): baseline x86-64-v2 code, with the kernels
# built for AVX-512, AVX2 and baseline CPUs and chosen at run time.
ifeq ($(PORTABLE),1)
OPT     ?= -O3 -march=x86-64-v2 -mtune=generic
else
OPT     ?= -O3 -march=native
endif
CFLAGS  := -std=c11 $(OPT) -fopenmp -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE \
           -Iinclude $(EXTRA_CFLAGS)
LDLIBS  := -fopenmp -lm
BUILD   := build

ifeq ($(SANITIZE),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -g
LDLIBS  += -fsanitize=address,undefined
BUILD   := build/san
# Leak detection on, whatever the platform's default: a leak on any exit path
# (every error exit of tfm included) fails the test that ran it.
export ASAN_OPTIONS := detect_leaks=1$(if $(ASAN_OPTIONS),:$(ASAN_OPTIONS))
export UBSAN_OPTIONS := halt_on_error=1:print_stacktrace=1$(if $(UBSAN_OPTIONS),:$(UBSAN_OPTIONS))
endif
ifeq ($(PORTABLE),1)
BUILD   := $(BUILD)/portable
endif

# make test / make run first check (and as root on Debian/Ubuntu install)
# their prerequisites, so a fresh machine gets one line naming the command
# to run, not a compiler error.
ifeq ($(MAKELEVEL),0)
SETUP_GOAL := $(if $(filter test,$(MAKECMDGOALS)),test,$(if $(filter run,$(MAKECMDGOALS)),run))
ifneq ($(SETUP_GOAL),)
SETUP_FAIL := $(shell bash tests/setup.sh $(SETUP_GOAL) $(CC))
ifneq ($(SETUP_FAIL),)
$(error $(SETUP_FAIL))
endif
endif
endif

CHECK_CFLAGS := $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS   := $(shell pkg-config --libs check 2>/dev/null || echo -lcheck -lsubunit -lrt -lpthread)

# The kernels compiled once per CPU variant (see src/kernels/dispatch.h);
# dispatch.c picks one at run time. Each variant's flags: its -march alone,
# except "native", which is the build's own.
ISA_SRC   := $(addprefix src/kernels/,attention.c elementwise.c gemm.c loss.c norm.c variant.c)
ifeq ($(shell uname -m),x86_64)
ifeq ($(PORTABLE),1)
VARIANTS  := avx512 avx2 generic
else
VARIANTS  := native generic
endif
else
VARIANTS  := native
endif
VARIANT_ARCH_avx512  := -march=x86-64-v4 -mtune=generic
VARIANT_ARCH_avx2    := -march=x86-64-v3 -mtune=generic
VARIANT_ARCH_generic := -march=x86-64-v2 -mtune=generic
variant_cflags = $(if $(filter native,$(1)),$(CFLAGS),$(filter-out -march=% -mtune=%,$(CFLAGS)) \
                 $(VARIANT_ARCH_$(1))) -fno-math-errno -DTFM_ISA=$(1) -include src/kernels/dispatch.h

# MPI code: only in the program, only with MPI=1 (the library stays libc + libm + OpenMP)
MPI_SRC   := src/train/dist_mpi.c
LIB_SRC   := $(filter-out $(ISA_SRC) $(MPI_SRC),$(sort $(wildcard src/*/*.c)))
TRAIN_SRC := $(sort $(wildcard train/*.c))
TEST_SRC  := $(sort $(wildcard tests/test_*.c))
TUTIL_SRC := $(sort $(wildcard tests/util_*.c))
EX_SRC    := $(sort $(wildcard examples/*.c))

LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/obj/%.o) \
             $(foreach v,$(VARIANTS),$(ISA_SRC:%.c=$(BUILD)/obj/kv/$(v)/%.o))
TRAIN_OBJ := $(TRAIN_SRC:%.c=$(BUILD)/obj/%.o)
TUTIL_OBJ := $(TUTIL_SRC:%.c=$(BUILD)/obj/%.o)
TEST_BIN  := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
EX_BIN    := $(EX_SRC:examples/%.c=$(BUILD)/examples/%)

LIB := $(BUILD)/libtfm.a
BIN := $(BUILD)/tfm

# make MPI=1: train/dist.c (with TFM_MPI) and src/train/dist_mpi.c compiled with
# mpicc into $(BUILD)/obj/mpi/, and the program linked by mpicc; every other
# object is the same as without MPI. $(BUILD)/tfm.mpi remembers which kind
# build/tfm is, so switching relinks it.
MPI   ?= 0
MPICC ?= mpicc
ifeq ($(MPI),1)
ifeq ($(shell command -v $(MPICC)),)
$(error make MPI=1 needs $(MPICC) (Debian: apt-get install libopenmpi-dev openmpi-bin))
endif
BIN_OBJ := $(filter-out $(BUILD)/obj/train/dist.o,$(TRAIN_OBJ)) \
           $(BUILD)/obj/mpi/train/dist.o $(BUILD)/obj/mpi/$(MPI_SRC:.c=.o)
BIN_LD  := $(MPICC)
else
BIN_OBJ := $(TRAIN_OBJ)
BIN_LD  := $(CC)
endif
BIN_KIND := $(BUILD)/tfm.mpi
$(shell mkdir -p $(BUILD) && { [ "$$(cat $(BIN_KIND) 2>/dev/null)" = "$(MPI)" ] || echo "$(MPI)" > $(BIN_KIND); })

SHELL := bash
.PHONY: all test test-mpi run bench clean fuzz install check-layers check-isa-tests
.SECONDARY:
all: $(LIB) $(BIN) $(EX_BIN)

$(BUILD)/obj/%.o: %.c $(wildcard include/tfm/*.h) $(wildcard src/*/*.h) $(wildcard tests/*.h) \
                   $(wildcard train/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(if $(filter tests/%,$<),$(CHECK_CFLAGS)) -c $< -o $@

# The kernels call sqrtf in loops that must vectorize (Adam); without this GCC
# keeps a scalar sqrt plus a libm call for errno. Results are unchanged: IEEE
# sqrt is correctly rounded either way, only errno is not set.
$(BUILD)/obj/src/kernels/%.o: CFLAGS += -fno-math-errno

# One object per kernel source and variant: build/obj/kv/<variant>/src/...
define VARIANT_RULES
$(BUILD)/obj/kv/$(1)/%.o: %.c $(wildcard include/tfm/*.h) $(wildcard src/*/*.h)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(call variant_cflags,$(1)) -c $$< -o $$@
$(BUILD)/pic/kv/$(1)/%.o: %.c $(wildcard include/tfm/*.h) $(wildcard src/*/*.h)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(call variant_cflags,$(1)) -fPIC -fno-semantic-interposition -c $$< -o $$@
endef
$(foreach v,$(VARIANTS),$(eval $(call VARIANT_RULES,$(v))))
KERNEL_VARIANTS_DEF := -DTFM_KERNEL_VARIANTS="$(foreach v,$(VARIANTS),X($(v)))"
$(BUILD)/obj/src/kernels/dispatch.o $(BUILD)/pic/src/kernels/dispatch.o: CFLAGS += $(KERNEL_VARIANTS_DEF)

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(BIN): $(BIN_OBJ) $(LIB) $(BIN_KIND)
	$(BIN_LD) $(CFLAGS) $(LDFLAGS) -o $@ $(BIN_OBJ) $(LIB) $(LDLIBS)

$(BUILD)/obj/mpi/%.o: %.c $(wildcard include/tfm/*.h) $(wildcard train/*.h)
	@mkdir -p $(dir $@)
	$(MPICC) $(CFLAGS) -DTFM_MPI=1 -c $< -o $@

# examples/: programs that use only the public headers and libtfm.a
$(BUILD)/examples/%: $(BUILD)/obj/examples/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(TUTIL_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(TUTIL_OBJ) $(LIB) $(CHECK_LIBS) $(LDLIBS)

check-layers:
	@bash tests/check_layers.sh

# Test files with code for one instruction set compile, warnings as errors,
# for each x86-64 level, as the Debian package (x86-64-v2) and other CPUs
# build them; this build compiles them for its own CPU only.
ISA_TESTS := tests/test_kernels.c
check-isa-tests:
ifeq ($(shell uname -m),x86_64)
	@for a in x86-64-v2 x86-64-v3 x86-64-v4; do for f in $(ISA_TESTS); do \
	    $(CC) $(filter-out -O% -march=% -mtune=%,$(CFLAGS)) -O3 -march=$$a -mtune=generic $(CHECK_CFLAGS) \
	        -c $$f -o /dev/null || { echo "$$f does not compile for -march=$$a"; exit 1; }; \
	done; done
endif

test: check-layers check-isa-tests $(BIN) $(TEST_BIN) $(EX_BIN) $(BUILD)/tests/runner_selftest
	@bash tests/run_tests.sh --self-test $(BUILD)/tests/runner_selftest
	@TFM_MPI_BUILD=$(MPI) TFM_BIN=$(abspath $(BIN)) TFM_ROOT=$(CURDIR) bash tests/run_tests.sh $(TEST_BIN)
	@echo "kernel tests again with the portable kernels (TFM_KERNELS=portable):"
	@TFM_KERNELS=portable TFM_BIN=$(abspath $(BIN)) TFM_ROOT=$(CURDIR) bash tests/run_tests.sh \
	    $(BUILD)/tests/test_gemm $(BUILD)/tests/test_kernels

# the multi-process tests alone (they skip unless MPI=1 and mpirun exists)
test-mpi: $(BIN) $(BUILD)/tests/test_mpi
	@TFM_MPI_BUILD=$(MPI) TFM_BIN=$(abspath $(BIN)) TFM_ROOT=$(CURDIR) bash tests/run_tests.sh \
	    $(BUILD)/tests/test_mpi

run: $(BIN)
	rm -rf runs/copy
	$(BIN) train --task copy --save runs/copy

bench: $(BIN)
	bash train/bench.sh

FUZZ_SECONDS ?= 60
fuzz:
	bash tests/fuzz/run.sh $(FUZZ_SECONDS)

# ---- shared library, man page, pkg-config, install ---------------------------
# The version comes from include/tfm/base.h (tfm_version() returns it too).
VERSION_PART = $(shell sed -n 's/^\#define TFM_VERSION_$(1) \([0-9]*\).*/\1/p' include/tfm/base.h)
MAJOR   := $(call VERSION_PART,MAJOR)
MINOR   := $(call VERSION_PART,MINOR)
VERSION := $(MAJOR).$(MINOR).$(call VERSION_PART,PATCH)
SONAME  := libtfm.so.$(MAJOR)
SO      := $(BUILD)/libtfm.so.$(MAJOR).$(MINOR)
# The shared library's objects are position-independent (a separate set, so
# the default build is unchanged); calls inside the library stay direct.
PIC_OBJ := $(LIB_SRC:%.c=$(BUILD)/pic/%.o) \
           $(foreach v,$(VARIANTS),$(ISA_SRC:%.c=$(BUILD)/pic/kv/$(v)/%.o))

$(BUILD)/pic/%.o: %.c $(wildcard include/tfm/*.h) $(wildcard src/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fPIC -fno-semantic-interposition -c $< -o $@
$(BUILD)/pic/src/kernels/%.o: CFLAGS += -fno-math-errno

# Exported: exactly the tfm_* names the public headers declare; every other
# symbol (internal helpers, the per-CPU kernel variants) is local.
$(BUILD)/libtfm.map: $(PIC_OBJ) $(wildcard include/tfm/*.h)
	{ echo '{ global:'; \
	  comm -12 <(nm -g --defined-only $(PIC_OBJ) | awk 'NF == 3 && $$3 ~ /^tfm_/ {print $$3}' | sort -u) \
	           <(grep -ohw 'tfm_[A-Za-z0-9_]*' include/tfm/*.h | sort -u) | sed 's/.*/    &;/'; \
	  echo '  local: *; };'; } > $@.tmp && mv $@.tmp $@

$(SO): $(PIC_OBJ) $(BUILD)/libtfm.map
	$(CC) $(CFLAGS) $(LDFLAGS) -shared -Wl,-soname,$(SONAME) -Wl,--version-script,$(BUILD)/libtfm.map \
	    -Wl,--no-undefined -o $@ $(PIC_OBJ) $(LDLIBS)
	ln -sf $(notdir $@) $(BUILD)/$(SONAME)
	ln -sf $(SONAME) $(BUILD)/libtfm.so

# tfm(1), generated by the program from its flag tables (tfm help --roff).
$(BUILD)/tfm.1: $(BIN)
	$(BIN) help --roff > $@.tmp && mv $@.tmp $@

PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR     ?= $(PREFIX)/share/man
COMPLDIR   ?= $(PREFIX)/share/bash-completion/completions

$(BUILD)/tfm.pc: Makefile include/tfm/base.h
	printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$(LIBDIR)' 'includedir=$(INCLUDEDIR)' '' \
	    'Name: tfm' 'Description: Transformer training framework in C11 + OpenMP' \
	    'Version: $(VERSION)' \
	    'Cflags: -I$${includedir}' 'Libs: -L$${libdir} -ltfm' 'Libs.private: -fopenmp -lm -lpthread' > $@
.PHONY: $(BUILD)/tfm.pc shared man uninstall check-install
shared: $(SO)
man: $(BUILD)/tfm.1

install: $(LIB) $(BIN) $(SO) $(BUILD)/tfm.1 $(BUILD)/tfm.pc
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR)/tfm \
	    $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(COMPLDIR)
	install -m 755 $(BIN) $(DESTDIR)$(BINDIR)/tfm
	install -m 644 $(LIB) $(DESTDIR)$(LIBDIR)/libtfm.a
	install -m 644 $(SO) $(DESTDIR)$(LIBDIR)/
	ln -sf $(notdir $(SO)) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libtfm.so
	install -m 644 include/tfm/*.h $(DESTDIR)$(INCLUDEDIR)/tfm/
	install -m 644 $(BUILD)/tfm.pc $(DESTDIR)$(LIBDIR)/pkgconfig/tfm.pc
	install -m 644 $(BUILD)/tfm.1 $(DESTDIR)$(MANDIR)/man1/tfm.1
	install -m 644 train/completion.bash $(DESTDIR)$(COMPLDIR)/tfm

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/tfm $(DESTDIR)$(LIBDIR)/libtfm.a $(DESTDIR)$(LIBDIR)/libtfm.so \
	    $(DESTDIR)$(LIBDIR)/$(SONAME) $(DESTDIR)$(LIBDIR)/libtfm.so.$(MAJOR).$(MINOR) \
	    $(DESTDIR)$(LIBDIR)/pkgconfig/tfm.pc $(DESTDIR)$(MANDIR)/man1/tfm.1 $(DESTDIR)$(COMPLDIR)/tfm
	rm -f $(addprefix $(DESTDIR)$(INCLUDEDIR)/tfm/,$(notdir $(wildcard include/tfm/*.h)))
	-rmdir $(DESTDIR)$(INCLUDEDIR)/tfm 2>/dev/null

# Installs into a temporary DESTDIR and checks what a C user gets there.
check-install: $(LIB) $(BIN) $(SO) $(BUILD)/tfm.1
	bash tests/install_check.sh

clean:
	rm -rf build
