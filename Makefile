# nsdx — two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install lint format bench clean samples docs messages

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

samples: $(STAMP)
	$(BIN)/nsdx samples generate --out data/samples

demo: $(STAMP)  # the steps are in scripts/demo.sh (tests/test_fresh_clone.py runs it in a clone)
	NSDX=$(BIN)/nsdx sh scripts/demo.sh

lint: $(STAMP)
	$(BIN)/ruff check --no-cache .
	$(BIN)/ruff format --no-cache --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: $(STAMP) lint
	bash scripts/install-axe.sh
	$(BIN)/python -m pytest -n 2 --dist loadgroup --durations=40

bench: $(STAMP)
	$(BIN)/python bench/bench_ingest.py
	$(BIN)/python bench/bench_storage.py
	$(BIN)/python bench/bench_search.py
	$(BIN)/python bench/bench_ledger.py
	$(BIN)/python bench/bench_witness.py
	$(BIN)/python bench/bench_witness_auto.py
	$(BIN)/python bench/bench_portal.py
	$(BIN)/python bench/bench_delivery.py
	$(BIN)/python bench/bench_validation.py  # builds and ingests a 2 GB CSV: minutes, ~5 GB of disk

clean:
	rm -rf .nsdx data/samples

docs: $(STAMP)
	$(BIN)/python scripts/gen_cli_docs.py
	$(BIN)/python scripts/gen_access_docs.py
	$(BIN)/python scripts/gen_reliability_docs.py

# portal message catalogues: re-extract the msgids and update nsdx/web/locale/*/messages.po
messages: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k N_ -k Np_:1c,2 -k pgettext:1c,2 -k Msg --no-location \
		--omit-header -o .nsdx-messages.pot .
	$(BIN)/pybabel update -i .nsdx-messages.pot -d nsdx/web/locale -D messages --no-wrap \
		--ignore-obsolete --no-fuzzy-matching
	rm -f .nsdx-messages.pot
