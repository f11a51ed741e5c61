# talos-csr-signer: a thin wrapper over CMake and the test suites.
# `make run` and `make test` are the two commands a newcomer needs; see README.md.

BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_TSAN ?= build-tsan
BUILD_FUZZ ?= build-fuzz
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
BIN        := $(BUILD)/talos-csr-signer
DEV        ?= .dev
RUN_PORT   ?= 50001
RUN_HTTP   ?= 127.0.0.1:8081
FUZZ_TIME  ?= 60

.PHONY: help deps deps-build build build-daemon test test-unit test-asan test-tsan test-interop test-ops \
	test-keeper test-e2e test-runbook test-faults test-soak test-chart test-image test-abuse test-cluster run lint fuzz fuzz-smoke bench clean version

help: ## Show the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

deps: ## Install every build and test dependency (Debian 12, idempotent)
	hack/deps.sh test

deps-build:
	hack/deps.sh build

build: deps ## Build the daemon and the unit tests into ./build (installs the test packages)
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTS=ON
	cmake --build $(BUILD) -j $(JOBS)

# What `make run` needs: the build packages and the daemon, nothing of the tests
# (a fresh Debian 12 has no Criterion and no Go). An existing ./build is reused
# as configured; a new one is configured without the unit tests.
build-daemon: deps-build
	@test -f $(BUILD)/CMakeCache.txt || \
		cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTS=OFF
	cmake --build $(BUILD) -j $(JOBS) --target talos-csr-signer

test: ## Run every suite as named stages (hack/stages.sh: build, unit, asan, tsan, interop, ops, abuse, keeper, e2e, runbook, faults, soak, chart, image, cluster)
	MAKE="$(MAKE)" hack/stages.sh
	@echo "make test: all suites passed"

test-unit: build ## Criterion unit tests
	cd $(BUILD) && ctest --output-on-failure -L unit

test-asan: ## Unit tests and one interop pass under AddressSanitizer + UBSan
	cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DENABLE_SANITIZERS=ON -DBUILD_TESTS=ON
	cmake --build $(BUILD_ASAN) -j $(JOBS)
	@# One job: with --jobs=2 Criterion's own runner process sometimes leaks a
	@# 48-byte record (third-party); a suppression matching it would hide ours too.
	cd $(BUILD_ASAN) && for t in ./test_*; do \
		ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0 \
		LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp \
		UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 $$t --jobs=1 >asan-$${t#./}.out 2>&1 || \
		{ grep -v '^{' asan-$${t#./}.out | tail -40; echo "$$t failed under ASan/UBSan"; exit 1; }; \
		grep -a Synthesis asan-$${t#./}.out | sed "s|^|$$t |"; done
	TCS_BIN=$(BUILD_ASAN)/talos-csr-signer TCS_SANITIZED=1 \
		ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0 \
		LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp INTEROP_SECTIONS="matrix neg ipv6" VALGRIND=0 \
		tests/interop/run.sh

test-tsan: ## Credential store and concurrency stress under ThreadSanitizer
	cmake -S . -B $(BUILD_TSAN) -DCMAKE_BUILD_TYPE=Debug -DENABLE_TSAN=ON -DBUILD_TESTS=ON
	cmake --build $(BUILD_TSAN) -j $(JOBS) --target tsan_stress
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$(CURDIR)/tests/tsan.supp" \
		$(BUILD_TSAN)/tsan_stress

test-interop: build ## Real Talos client code (Go) and other gRPC clients against the daemon
	TCS_BIN=$(BIN) tests/interop/run.sh

test-ops: build ## Health/metrics endpoint, policy, rate limit, request and check
	TCS_BIN=$(BIN) tests/ops/run.sh

test-abuse: build ## Attacks of issue 10 (floods, rapid reset, slowloris...) on loopback, with a legitimate worker calling
	TCS_BIN=$(BIN) tests/abuse/run.sh

test-keeper: build ## The CA key only in the keeper process: memory scan, seccomp, kill either process, shutdown order
	TCS_BIN=$(BIN) tests/keeper/run.sh

test-e2e: build ## Against a real kube-apiserver and etcd (built once, cached)
	TCS_BIN=$(BIN) tests/e2e/run.sh

test-runbook: build ## The rotation runbooks of docs/operations.md, run as written against the real apiserver under load
	TCS_BIN=$(BIN) tests/runbook/run.sh

test-faults: build ## Faults under load against the real apiserver (kill, stop, 410, corrupt Secret)
	TCS_BIN=$(BIN) tests/faults/run.sh

test-soak: build ## Load while the CA and serving cert rotate (SOAK_SECONDS, 60 here, 600 by hand)
	SOAK_SECONDS=$${SOAK_SECONDS:-60} TCS_BIN=$(BIN) tests/soak/run.sh

test-chart: build ## helm lint/template, server-side dry-run, chart RBAC, docs in step with --help
	TCS_BIN=$(BIN) tests/chart/run.sh

run: build-daemon ## Serve on 127.0.0.1:$(RUN_PORT) with a throwaway development PKI
	@test -f $(DEV)/pki/token || hack/dev-pki.sh $(DEV)/pki --ip 127.0.0.1 --ip ::1
	@echo
	@echo "Serving on 127.0.0.1:$(RUN_PORT) with the development PKI in $(DEV)/pki."
	@echo "Ask it for a certificate the way a Talos worker does, from another terminal:"
	@echo
	@echo "  $(BIN) request --endpoint 127.0.0.1:$(RUN_PORT) --ca $(DEV)/pki/ca.crt --token-file $(DEV)/pki/token --cn worker-1 --ip 10.0.0.5"
	@echo
	@echo "Ctrl-C stops it; 'kill -HUP' reloads the credentials."
	@echo
	CA_CERT_PATH=$(DEV)/pki/ca.crt CA_KEY_PATH=$(DEV)/pki/ca.key \
	TLS_CERT_PATH=$(DEV)/pki/server.crt TLS_KEY_PATH=$(DEV)/pki/server.key \
	TOKEN_PATH=$(DEV)/pki/token LISTEN_ADDRESS=127.0.0.1 PORT=$(RUN_PORT) \
	HTTP_ADDR=$(RUN_HTTP) LOG_FORMAT=text exec $(BIN)

test-image: ## Build the distroless image for amd64 and arm64 with buildah, check size/contents/SBOM, serve a Certificate call (arm64 under qemu)
	hack/image/build.sh

test-cluster: ## The chart in a real single-node Kubernetes with the real cert-manager (root; see tests/cluster/README.md)
	tests/cluster/run.sh

lint: deps ## clang-format check, clang-tidy and cppcheck with the committed configurations
	hack/lint.sh $(BUILD)

fuzz: ## Build the libFuzzer targets with clang and run each for FUZZ_TIME seconds
	CC=clang cmake -S . -B $(BUILD_FUZZ) -DBUILD_FUZZERS=ON -DBUILD_TESTS=OFF
	cmake --build $(BUILD_FUZZ) -j $(JOBS)
	fuzz/run.sh $(BUILD_FUZZ) $(FUZZ_TIME)

fuzz-smoke: ## A few seconds of every fuzz target (what CI runs)
	$(MAKE) fuzz FUZZ_TIME=$${FUZZ_SMOKE_TIME:-5}

bench: build ## Benchmarks against the crypto floor (figures under results/)
	bench/run.sh $(BIN)

version: ## Show the version and the libraries in use
	@$(BIN) --version 2>/dev/null || ($(MAKE) --no-print-directory build-daemon >/dev/null && $(BIN) --version)

clean: ## Remove build trees and the development PKI
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_TSAN) $(BUILD_FUZZ) $(DEV) results
