# pbs-standby — the two commands of the README's quick start, and a few more.
SWIFT ?= swift
PORT ?= 8216

.PHONY: demo test build release deps test-deps bench-http bench-rpo bench-scrape load-test deb clean

## Run the service against the built-in simulator on 127.0.0.1:$(PORT).
demo: deps
	$(SWIFT) build -c release --product pbs-standby
	.build/release/pbs-standby demo --web.listen-address 127.0.0.1:$(PORT)

## Run every test: Swift Testing suites (loopback HTTP, SQLite, subprocesses, promtool, Prometheus).
test: test-deps
	$(SWIFT) build --build-tests
	scripts/run-tests.sh

deps:
	scripts/install-deps.sh

test-deps:
	scripts/install-deps.sh --test

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release --static-swift-stdlib

## HTTP benchmark: wrk against /metrics with 50 KB and 2 MB bodies (figures go to the README).
bench-http: test-deps
	Benchmarks/http-bench.sh

## Debian package (static release binary, unit, examples, alerts, dashboard) into out/.
deb: deps
	scripts/build-deb.sh

## RPO benchmark (full: 7 simulated days, about 10 minutes; QUICK=1 for about 2 minutes).
bench-rpo: deps
	$(SWIFT) run -c release rpo-bench $(if $(QUICK),--quick,)

## Scrape cost at 100 and 1000 guests; load test at 1000 guests.
bench-scrape: test-deps
	Benchmarks/scrape-bench.sh

load-test: test-deps
	Benchmarks/load-test.sh

clean:
	rm -rf .build
