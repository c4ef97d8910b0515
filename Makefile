# Kiln's two commands for a fresh clone: `make demo` and `make test`.
# Both install what they need (Rust crates via cargo, a Python venv in
# ~/.cache/kiln for the interoperability tests and benchmarks).

CARGO ?= cargo
DEMO  ?= data/demo
RELEASE_BINS = -p kiln-split -p kiln-testkit

.PHONY: all demo test lint fmt build python-env bench-split clean-demo

all: build

build:
	$(CARGO) build --release $(RELEASE_BINS)

## demo: generate a small hydrology-like dataset and split it by key
demo: build
	@mkdir -p $(DEMO)
	./target/release/kiln-gen keyed --keys 200 --days 1095 --string-keys \
		--out $(DEMO)/daily.csv --attributes $(DEMO)/attributes.csv
	./target/release/kiln-split $(DEMO)/daily.csv --key COMID --date date \
		--out $(DEMO)/split --force
	@echo
	@echo "demo: keyed dataset in $(DEMO)/split ($$(ls $(DEMO)/split | wc -l) files);"
	@echo "      index $(DEMO)/split/_index.parquet, manifest $(DEMO)/split/_dataset.json"

## test: formatting, lints (warnings are errors), and every test of the workspace
test: lint
	KILN_PYTHON="$$(scripts/python-env.sh test)" $(CARGO) test --workspace --all-targets

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

python-env:
	scripts/python-env.sh bench

## bench-split: kiln-split vs pandas, DuckDB and Polars on a >=1 GB CSV
bench-split: build python-env
	bench/split/run.sh

clean-demo:
	rm -rf $(DEMO)
