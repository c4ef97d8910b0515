# Kiln's two commands for a fresh clone: `make demo` and `make test`.
# Both install what they need: Rust crates via cargo; libtorch (torch==2.11.0
# from PyPI) and a Python venv for the interoperability tests and benchmarks,
# both once, in ~/.cache/kiln.

CARGO ?= cargo
DEMO  ?= data/demo
# Runs a command with libtorch where tch's build finds it (installs it once).
LIBTORCH = scripts/with-libtorch.sh
RELEASE_BINS = -p kiln-featurize -p kiln-monitor -p kiln-pipeline -p kiln-preheat -p kiln-split -p kiln-testkit -p kiln-train

.PHONY: all demo test lint fmt build python-env bench-split bench-train bench-monitor bench-preheat bench-featurize bench-pipeline clean-demo

all: build

build:
	$(LIBTORCH) $(CARGO) build --release $(RELEASE_BINS)

## demo: run pipelines/demo.yaml with kiln-pipeline: generate a small
## hydrology-like dataset, split it by key, train an LSTM on it, evaluate and
## predict; generate a kline dump, preheat it into a per-symbol cache
## (kiln-preheat), compute indicators (kiln-featurize) and train on them.
## Every stage runs under kiln-monitor; a second `make demo` skips them all.
demo: build
	KILN_DEMO_DATA=$(DEMO) ./target/release/kiln-pipeline run pipelines/demo.yaml
	@log=$$(ls -t .kiln/demo/logs/*/split.memory.jsonl 2>/dev/null | head -1); \
	if [ -n "$$log" ]; then ./target/release/kiln-monitor report "$$log" --png $(DEMO)/split-memory.png; fi
	./target/release/kiln-preheat info --out $(DEMO)/cache/kline
	./target/release/kiln-featurize info --out $(DEMO)/cache/features
	@echo
	@echo "demo: keyed dataset in $(DEMO)/split ($$(ls $(DEMO)/split | wc -l) files);"
	@echo "      index $(DEMO)/split/_index.parquet, manifest $(DEMO)/split/_dataset.json"
	@echo "      the split's memory over time: $(DEMO)/split-memory.png (kiln-monitor)"
	@echo "      trained run in $(DEMO)/run: model.safetensors, metrics.csv, loss.png;"
	@echo "      $(DEMO)/eval.csv (per key), $(DEMO)/predictions.parquet"
	@echo "      kline cache (kiln-preheat from a dump): $(DEMO)/cache/kline"
	@echo "      feature cache (kiln-featurize): $(DEMO)/cache/features; model on it: $(DEMO)/kline-run"
	@echo "      pipeline: kiln-pipeline status pipelines/demo.yaml; logs and run records in .kiln/demo/"

## test: formatting, lints (warnings are errors), and every test of the workspace
test: lint
	KILN_PYTHON="$$(scripts/python-env.sh test)" KILN_TORCH_PYTHON="$$(scripts/libtorch-env.sh)" \
		$(LIBTORCH) $(CARGO) test --workspace --all-targets

lint:
	$(CARGO) fmt --all -- --check
	$(LIBTORCH) $(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

python-env:
	scripts/python-env.sh bench

## bench-split: kiln-split vs pandas, DuckDB and Polars on a >=1 GB CSV
bench-split: build python-env
	bench/split/run.sh

## bench-preheat: kiln-preheat vs pandas read_sql, ConnectorX and a raw scan (MariaDB)
bench-preheat: build python-env
	bench/preheat/run.sh

## bench-featurize: kiln-featurize vs a pandas rolling/ewm loop and TA-Lib + pandas
bench-featurize: build python-env
	bench/featurize/run.sh

## bench-pipeline: kiln-pipeline's staleness check vs DVC and make on 5,000 files
bench-pipeline: build
	bench/pipeline/run.sh

## bench-monitor: kiln-monitor's CPU at 10 Hz and kill latency vs a psutil loop
bench-monitor: python-env
	bench/monitor/run.sh

## bench-train: kiln-train's loader vs a pandas iterator; full training RSS
bench-train: build python-env
	bench/train/run.sh

clean-demo:
	rm -rf $(DEMO)
