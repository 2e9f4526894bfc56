# weft's build entry points. Every target covers the root module and any
# nested module (such as a test module that needs dependencies the library
# must not carry).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

GO ?= go
# staticcheck runs through `go run` at this pinned version, so lint needs no
# installed tool.
STATICCHECK_VERSION ?= v0.8.2
# Benchmarks: a regexp for -bench, and -benchtime.
BENCH ?= .
BENCHTIME ?= 1s
# How many times each benchmark runs; the guard wants three or more, so
# that every figure is a range.
BENCHCOUNT ?= 1
# make bench keeps its raw output here, for make bench-check and
# make bench-baseline.
BENCH_OUT ?= bench.out
# The figures make bench-check compares a run with (see
# internal/benchcheck for the bands and when to take a new one).
BENCH_BASELINE ?= bench/baseline.txt
# The control-plane scale benchmarks: make bench-scale runs them, make
# bench does not.
SCALE_BENCH ?= Scale
# Fuzzing: how long each fuzz target runs under `make fuzz`.
FUZZTIME ?= 30s
# Tests mostly wait on real servers and timers, not on the CPU, so more run
# at once than there are cores.
TESTFLAGS ?= -race -parallel 8
# The chart's test module renders templates with Helm's library and runs
# none of weft's concurrency: without the race detector its first build
# takes a minute, not ten.
CHART_TESTFLAGS ?= $(filter-out -race,$(TESTFLAGS))
# Debian's etcd 3.4 (package etcd-server). When installed, the etcd lease
# manager's suite runs a second time against it as a separate process;
# WEFT_REQUIRE_OLD_ETCD=1 (set by .ci/run) makes its absence an error.
OLD_ETCD ?= /usr/bin/etcd

# make image: the image's version, tag and source revision, and the time
# every file in it carries (the last commit's, so that a tree builds the
# same image on any machine).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
IMAGE ?= weft-flanneld:$(VERSION)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
# The platforms make image builds: all (flannel's six), or a comma
# separated list (amd64, arm64, arm/v7, ppc64le, s390x, riscv64).
ARCH ?= all

MODULES := $(shell find . -name go.mod -not -path './.git/*' -exec dirname {} \; | sort)

.PHONY: test bench bench-check bench-baseline bench-scale lint fuzz image image-local

## test: run every test with the race detector, in every module, then the
## etcd suites again against an old etcd server when one is installed.
## Every module runs even if one fails, and any failure fails the target.
test:
	@status=0; \
	for m in $(MODULES); do \
		flags="$(TESTFLAGS)"; \
		case $$m in ./examples/chart) flags="$(CHART_TESTFLAGS)";; esac; \
		echo "== go test $$flags $$m"; \
		(cd $$m && $(GO) test $$flags ./...) || status=1; \
	done; \
	if [ -x "$(OLD_ETCD)" ]; then \
		echo "== lease/etcd against $(OLD_ETCD): $$($(OLD_ETCD) --version | head -1)"; \
		WEFT_ETCD_BINARY=$(OLD_ETCD) $(GO) test $(TESTFLAGS) ./internal/etcdtest ./lease/etcd || status=1; \
	elif [ -n "$${WEFT_REQUIRE_OLD_ETCD:-}" ]; then \
		echo "WEFT_REQUIRE_OLD_ETCD is set but $(OLD_ETCD) is missing: apt-get install etcd-server"; \
		status=1; \
	else \
		echo "== skipping the etcd 3.4 pass: $(OLD_ETCD) is not installed (apt-get install etcd-server)"; \
	fi; \
	exit $$status

## bench: run the benchmarks of every module and print them as one table.
## The control-plane scale benchmarks, which take minutes, are left to
## bench-scale. The raw output is kept in $(BENCH_OUT).
bench:
	@for m in $(MODULES); do \
		(cd $$m && $(GO) test -run '^$$' -bench '$(BENCH)' -skip '$(SCALE_BENCH)' -benchtime $(BENCHTIME) -count $(BENCHCOUNT) -benchmem ./...); \
	done | tee $(BENCH_OUT) | $(GO) run ./internal/benchtable

## bench-check: run make bench and compare its figures with the baseline
## in $(BENCH_BASELINE), naming every figure past its noise band (peak RSS
## and bytes 10%, allocations 10%, kernel-bound times a factor of two); a
## figure worse than its band fails. BENCHCOUNT=3 gives each a range.
## BENCH_OUT=file compares an earlier run instead of running again.
bench-check:
	@if [ "$(origin BENCH_OUT)" != "command line" ] && [ "$(origin BENCH_OUT)" != "environment" ]; then \
		$(MAKE) --no-print-directory bench || echo "== make bench failed (above); comparing the figures it measured"; \
	fi
	@$(GO) run ./internal/benchcheck $(BENCH_BASELINE) $(BENCH_OUT)

## bench-baseline: take $(BENCH_OUT) (run make bench first, with
## BENCHCOUNT=3 or more) as the new baseline, headed with the machine and
## the Go version. Take one when a change moves a figure on purpose, or
## the machine or Go changes; never to make a regression pass.
bench-baseline:
	@test -s $(BENCH_OUT) || { echo "no $(BENCH_OUT): run make bench BENCHCOUNT=3 first"; exit 1; }
	@mkdir -p $(dir $(BENCH_BASELINE))
	@{ echo "# make bench's figures: the baseline make bench-check compares a run with."; \
	   echo "# machine: $$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $$(nproc) cores, Linux $$(uname -r)"; \
	   echo "# go: $$($(GO) version)"; \
	   echo "# taken: $$(date -u +%Y-%m-%dT%H:%MZ) at commit $$(git rev-parse --short HEAD 2>/dev/null), load average $$(cut -d' ' -f1-3 /proc/loadavg)"; \
	   grep -E '^(goos|goarch|cpu|pkg):|^Benchmark' $(BENCH_OUT); } > $(BENCH_BASELINE)
	@echo "wrote $(BENCH_BASELINE)"

## bench-scale: the control-plane scale harness, as one table: N agents
## against one etcd (vxlan), churn for ten minutes, and N agents against
## one kube-apiserver (kube/apitest). WEFT_SCALE_AGENTS sizes them
## (default 1,000 for etcd, 500 for kube), WEFT_SCALE_FULL is how many of
## the etcd agents run a whole Network (default all), WEFT_SCALE_OUTAGE
## how long etcd is down, WEFT_SCALE_CHURN how long the churn lasts.
## See docs/sizing.md.
bench-scale:
	@( (cd vxlan && $(GO) test -run '^$$' -bench '$(SCALE_BENCH)' -benchtime 1x -timeout 2h .); \
	   (cd kube/apitest && $(GO) test -run '^$$' -bench '$(SCALE_BENCH)' -benchtime 1x -timeout 2h .) ) | $(GO) run ./internal/benchtable

## image: weft's container image as an OCI image tarball, weft-image.tar
## (static flanneld, weft-ipam, weft-announce, weftctl and
## weft-install-cni on an empty base), with no container runtime: one OCI
## image index of linux/amd64, arm64, arm/v7, ppc64le, s390x and riscv64
## (ARCH=all, the default), or ARCH's platforms alone (ARCH=arm64, or a
## comma separated list). Import it with ctr -n k8s.io images import
## [--all-platforms], skopeo copy --all oci-archive:weft-image.tar ..., or
## docker load -i (each platform under the tag with "-<arch>" appended;
## see docs/install.md). Reproducible: the same tree and Go release give
## the same bytes. See build/image.
image:
	cd build/image && SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(GO) run . -root ../.. -o ../../weft-image.tar \
		-tag '$(IMAGE)' -version '$(VERSION)' -revision '$(REVISION)' -arch '$(ARCH)'

## image-local: the image for this machine's architecture alone, quick to
## build, named as make image names it (docker load -i takes it as it is).
image-local:
	@$(MAKE) --no-print-directory image ARCH=$$($(GO) env GOARCH)

## lint: gofmt, go vet and staticcheck, in every module.
lint:
	@unformatted=$$(gofmt -l $(MODULES)); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	@echo "== the wire-type packages and weftctl build off Linux (GOOS=darwin)"
	@GOOS=darwin $(GO) build ./lease/... ./subnetenv ./localstate ./vxlan ./kube ./status ./examples/weftctl
	@for m in $(MODULES); do \
		echo "== vet and staticcheck $$m"; \
		(cd $$m && $(GO) vet ./... && $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...); \
	done

## fuzz: run each fuzz target of every module for FUZZTIME; a failing input
## is saved under the package's testdata/fuzz and then fails `make test`.
fuzz:
	@for m in $(MODULES); do \
		cd $(CURDIR)/$$m; \
		for pkg in $$($(GO) list ./...); do \
			listing=$$($(GO) test -list '^Fuzz' $$pkg); \
			for target in $$(grep '^Fuzz' <<<"$$listing" || true); do \
				echo "== $$pkg $$target"; \
				$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) $$pkg; \
			done; \
		done; \
	done
