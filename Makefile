# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv and installs what it needs first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: demo test bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev,semantic,ray]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/trajforge generate --config examples/demo.yaml
	$(BIN)/trajforge versions out/demo
	$(BIN)/trajforge export out/demo --to out/demo-hf --force --sharegpt \
		--chat-template qwen2.5 --chat-template qwen3 --chat-template llama3.1 --chat-template llama3.3 \
		--chat-template hermes --chat-template mistral --chat-template granite
	$(BIN)/trajforge report out/demo --to out/demo-report.html

test: $(STAMP)
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| echo "could not install Debian's chromium: the report's browser test will say it skipped"
	$(BIN)/ruff check .
	$(BIN)/pytest -q

bench: $(STAMP)
	@set -e; for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script; done

clean:
	rm -rf $(VENV) .prefect out
