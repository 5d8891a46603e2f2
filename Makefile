# Makefile - the quick start: `make demo` and `make test`. It wraps CMake.
BUILD ?= build
JOBS  ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all deps demo test test-asan test-tsan test-all fuzz bench install clean

# Plain `make` builds with what is installed; demo, test and deps install
# what is missing first.
all:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j$(JOBS)

deps:
	@tools/deps.sh build

# Build and run the seed scenarios, then the smaller examples.
DEMOS = urls metrics backpressure failfast deadlock cpu files map serial
demo:
	@tools/deps.sh demo
	@$(MAKE) --no-print-directory all >/dev/null
	@for e in $(DEMOS); do echo; $(BUILD)/examples/example_$$e || exit 1; done
	@echo; tools/fprun_demo.sh $(BUILD)/cli/fprun/fprun
	@if [ -x $(BUILD)/examples/example_mpi ]; then echo; \
	  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 \
	  mpirun -n 3 $(BUILD)/examples/example_mpi; fi

# Build and run the whole suite.
test: deps
	@$(MAKE) --no-print-directory all
	ctest --test-dir $(BUILD) --output-on-failure -j$(JOBS)

# The suite under AddressSanitizer + UndefinedBehaviorSanitizer, and under
# ThreadSanitizer (CI runs all three).
test-asan: deps
	cmake -S . -B $(BUILD)-asan -DCMAKE_BUILD_TYPE=Debug -DFP_SANITIZE=address -DFP_BUILD_EXAMPLES=OFF
	cmake --build $(BUILD)-asan -j$(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir $(BUILD)-asan --output-on-failure -j$(JOBS)

test-tsan: deps
	cmake -S . -B $(BUILD)-tsan -DCMAKE_BUILD_TYPE=Debug -DFP_SANITIZE=thread -DFP_BUILD_EXAMPLES=OFF
	cmake --build $(BUILD)-tsan -j$(JOBS)
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	  ctest --test-dir $(BUILD)-tsan --output-on-failure -j$(JOBS)

test-all: test test-asan test-tsan

# fprun's template and option parsers under libFuzzer (clang), with ASan
# and UBSan, FUZZ_SECONDS each (CI runs this).
FUZZ_SECONDS ?= 30
fuzz: deps
	cmake -S . -B $(BUILD)-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DFP_SANITIZE=address \
	  -DFP_BUILD_FUZZ=ON -DFP_BUILD_TESTS=OFF -DFP_BUILD_EXAMPLES=OFF -DFP_FUZZ_SECONDS=$(FUZZ_SECONDS)
	cmake --build $(BUILD)-fuzz -j$(JOBS)
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir $(BUILD)-fuzz --output-on-failure -j$(JOBS) -L fuzz

bench:
	@tools/deps.sh bench
	cmake -S . -B $(BUILD)-bench -DCMAKE_BUILD_TYPE=Release -DFP_BUILD_BENCH=ON -DFP_BUILD_TESTS=OFF -DFP_BUILD_EXAMPLES=OFF
	cmake --build $(BUILD)-bench -j$(JOBS)
	@for b in $(BUILD)-bench/bench/bench_*; do echo "==> $$b"; $$b || exit 1; done

PREFIX ?= /usr/local
install: all
	cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD) $(BUILD)-asan $(BUILD)-tsan $(BUILD)-bench $(BUILD)-fuzz
