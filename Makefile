# tfm: a Transformer training framework in C11 + OpenMP.
#   make            build build/libtfm.a and build/tfm
#   make run        train the copy task and show its translations
#   make test       check-layers, then build and run every Check suite (tests/test_*.c)
#   make check-layers  fail on an #include that runs up the layer order of STYLE.md
#   make SANITIZE=1 test   the same with ASan + UBSan (objects in build/san)
#   make bench      benchmarks against the references in ../shared/bench
#   make fuzz       libFuzzer targets (clang), FUZZ_SECONDS each
CC      ?= cc
ifeq ($(CC),cc)
CC      := gcc
endif
OPT     ?= -O3 -march=native
CFLAGS  := -std=c11 $(OPT) -fopenmp -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE \
           -Iinclude $(EXTRA_CFLAGS)
LDLIBS  := -fopenmp -lm
BUILD   := build

ifeq ($(SANITIZE),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -g
LDLIBS  += -fsanitize=address,undefined
BUILD   := build/san
endif

CHECK_CFLAGS := $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS   := $(shell pkg-config --libs check 2>/dev/null || echo -lcheck -lsubunit -lrt -lpthread)

LIB_SRC   := $(sort $(wildcard src/*/*.c))
TRAIN_SRC := $(sort $(wildcard train/*.c))
TEST_SRC  := $(sort $(wildcard tests/test_*.c))
TUTIL_SRC := $(sort $(wildcard tests/util_*.c))

LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
TRAIN_OBJ := $(TRAIN_SRC:%.c=$(BUILD)/obj/%.o)
TUTIL_OBJ := $(TUTIL_SRC:%.c=$(BUILD)/obj/%.o)
TEST_BIN  := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

LIB := $(BUILD)/libtfm.a
BIN := $(BUILD)/tfm

.PHONY: all test run bench clean fuzz install check-layers
.SECONDARY:
all: $(LIB) $(BIN)

$(BUILD)/obj/%.o: %.c $(wildcard include/tfm/*.h) $(wildcard src/*/*.h) $(wildcard tests/*.h) \
                   $(wildcard train/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(if $(filter tests/%,$<),$(CHECK_CFLAGS)) -c $< -o $@

# The kernels call sqrtf in loops that must vectorize (Adam); without this GCC
# keeps a scalar sqrt plus a libm call for errno. Results are unchanged: IEEE
# sqrt is correctly rounded either way, only errno is not set.
$(BUILD)/obj/src/kernels/%.o: CFLAGS += -fno-math-errno

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(BIN): $(TRAIN_OBJ) $(LIB)
	$(CC) $(CFLAGS) -o $@ $(TRAIN_OBJ) $(LIB) $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(TUTIL_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(TUTIL_OBJ) $(LIB) $(CHECK_LIBS) $(LDLIBS)

check-layers:
	@bash tests/check_layers.sh

test: check-layers $(BIN) $(TEST_BIN)
	@TFM_BIN=$(abspath $(BIN)) TFM_ROOT=$(CURDIR) bash tests/run_tests.sh $(TEST_BIN)

run: $(BIN)
	rm -rf runs/copy
	$(BIN) train --task copy --save runs/copy

bench: $(BIN)
	bash train/bench.sh

FUZZ_SECONDS ?= 60
fuzz:
	bash tests/fuzz/run.sh $(FUZZ_SECONDS)

PREFIX ?= /usr/local
install: $(LIB) $(BIN)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/tfm
	install -m 755 $(BIN) $(DESTDIR)$(PREFIX)/bin/tfm
	install -m 644 $(LIB) $(DESTDIR)$(PREFIX)/lib/libtfm.a
	install -m 644 include/tfm/*.h $(DESTDIR)$(PREFIX)/include/tfm/

clean:
	rm -rf build
