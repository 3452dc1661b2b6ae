# Developer entry points. `make test` and `make demo` call the scripts; `make bench` runs the
# performance harness (bench/, results in docs/performance.md); `make bench-quick` is its
# smoke test (1/5 corpus, 1 run, results in bench/work/performance-quick.md).
PYTHON ?= .venv/bin/python
BENCH_ARGS ?=

.PHONY: test demo bench bench-quick

test:
	bash scripts/test.sh

demo:
	bash scripts/demo.sh

bench:
	$(PYTHON) -m bench.run $(BENCH_ARGS)

bench-quick:
	$(PYTHON) -m bench.run --quick $(BENCH_ARGS)
