# Director: build, demo and test entry points.
#
#   make demo    prepare the host, build release binaries, run the persistence demo (rr, PPC,
#                PCC, firewall-mark groups, templates, metrics) through the DR director
#   make test    prepare the host, build release binaries, run every test of the workspace
#   make bench   prepare the host, build release binaries, run the benchmarks (< 15 min;
#                BENCH_QUICK=1 < 3 min) -> target/bench/report.{json,md}, *.png (docs/benchmarks.md)
#   make synflood  SYN-flood benchmark (~1 min): legitimate clients and established connections
#                under a spoofed flood -> target/bench/synflood.{md,json} (docs/benchmarks.md)
#   make healthscale  10,000 TCP_CHECKs a second inside the real director while it forwards
#                (~1 min): forwarding Mpps without / with the checks, checks/s, checker CPU,
#                lbadm -L -n p50/p99 -> target/bench/healthscale.txt (docs/benchmarks.md)
#   make fuzz    coverage-guided fuzzing (AFL++ via cargo-afl) of every target for FUZZ_SECONDS
#                each (default 60) -> target/fuzz/out/report.md (fuzz/src/lib.rs; make test runs
#                a 13 s-per-target smoke, 91 s in all)
#   make build   release binaries only (target/release/director, target/release/lbadm and its
#                other name target/release/ipvsadm)
#   make install build, then install (PREFIX=/usr/local, SYSCONFDIR=/etc, DESTDIR): director,
#                lbadm, the ipvsadm link, the systemd unit, a default config (scripts/install.sh)
#   make setup   scripts/setup-host.sh only (packages, hugepages; needs root)
#   make clean   cargo clean
#
# The namespace tests find the binaries through DIRECTOR_BIN / LBADM_BIN, exported here.
# Everything runs as root (network namespaces, hugepages); CI runs `make test` via .ci/run.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

# cargo lives in ~/.cargo/bin (rustup) and may not be on a non-login shell's PATH.
export PATH := $(HOME)/.cargo/bin:$(PATH)

REPO       := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
CARGO      ?= cargo
TARGET_DIR := $(if $(CARGO_TARGET_DIR),$(abspath $(CARGO_TARGET_DIR)),$(REPO)/target)

export DIRECTOR_BIN ?= $(TARGET_DIR)/release/director
export LBADM_BIN    ?= $(TARGET_DIR)/release/lbadm

.PHONY: all setup build install demo test bench synflood healthscale fuzz soak ctlpressure clean

all: build

setup:
	bash $(REPO)/scripts/setup-host.sh

# `ipvsadm` is a name of lbadm (same program, same default socket), so operators' scripts
# that call ipvsadm run unchanged with target/release on PATH.
build: setup
	cd $(REPO) && $(CARGO) build --release
	ln -sf lbadm $(TARGET_DIR)/release/ipvsadm

# PREFIX, SYSCONFDIR and DESTDIR pass through the environment to scripts/install.sh.
install: build
	bash $(REPO)/scripts/install.sh

demo: build
	bash $(REPO)/scripts/demo.sh

# Optimised tests (profile test-ci: release without LTO, parallel codegen, so that two dozen
# test binaries build quickly): the integration tests drive the release binaries of `build`,
# and unit/property tests run faster optimised.
test: build
	cd $(REPO) && $(CARGO) test --workspace --profile test-ci

# Benchmarks are programs that print numbers, never tests (not part of `make test`).
bench: build
	cd $(REPO) && $(CARGO) build --release -p bench
	cd $(REPO) && $(TARGET_DIR)/release/director-bench all --out $(TARGET_DIR)/bench $(if $(filter-out 0,$(BENCH_QUICK)),--quick,)

# SYN flood against a wlc service with a 1 M-entry table, plain and persistent
# (SYNFLOOD_SECS of flood each, default 10).
synflood: build
	cd $(REPO) && $(CARGO) build --release -p bench
	cd $(REPO) && $(TARGET_DIR)/release/director-synflood --secs $(or $(SYNFLOOD_SECS),10) --out $(TARGET_DIR)/bench

# Health checks at scale: 10,000 real servers TCP_CHECKed every second by the director's own
# checker engine while its worker forwards (HEALTHSCALE_SECS per phase, default 10). Not in CI.
healthscale: build
	cd $(REPO) && $(CARGO) build --release -p bench
	mkdir -p $(TARGET_DIR)/bench
	cd $(REPO) && $(TARGET_DIR)/release/health_scale --secs $(or $(HEALTHSCALE_SECS),10) | tee $(TARGET_DIR)/bench/healthscale.txt

# Soak (not in CI): the director on a memif port fed by director-gen, 1,000 configuration
# edits/s and continuous listings for SOAK_SECS (default 1800), a reading every SOAK_INTERVAL
# seconds (default 60); fails if RSS, mbufs in use or table entries grew.
soak: build
	cd $(REPO) && $(CARGO) build --release -p bench
	cd $(REPO) && $(TARGET_DIR)/release/director-bench soak --secs $(or $(SOAK_SECS),1800) --interval $(or $(SOAK_INTERVAL),60)

# Control plane under pressure (not in CI): PRESSURE_CLIENTS (100) concurrent lbadm clients,
# every tenth listing the 1 M-entry table with -L -n -c, while the director forwards.
ctlpressure: build
	cd $(REPO) && $(CARGO) build --release -p bench
	cd $(REPO) && $(TARGET_DIR)/release/director-bench pressure --clients $(or $(PRESSURE_CLIENTS),100) --secs $(or $(PRESSURE_SECS),30)

# Coverage-guided fuzzing: every target for FUZZ_SECONDS (FUZZ_TARGETS to pick some).
fuzz: setup
	cd $(REPO) && $(CARGO) build --release -p fuzz
	bash $(REPO)/scripts/fuzz.sh

clean:
	cd $(REPO) && $(CARGO) clean
