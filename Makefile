# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv and installs what it needs first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
# The real-model lane (vLLM's CPU build + SmolLM2-135M-Instruct, ~3.5 GB), built once and reused while current.
export TRAJFORGE_REAL_MODEL_CACHE ?= $(CURDIR)/.cache/real-model

.PHONY: demo test real-model mcp-servers bench lint clean

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

real-model: $(STAMP)
	$(BIN)/python tests/real_model/lane.py setup

# The reference MCP servers the tests start (npm, versions pinned by tests/mcp/package-lock.json), installed once.
MCP_SERVERS := tests/mcp/node_modules/.installed
$(MCP_SERVERS): tests/mcp/package.json tests/mcp/package-lock.json
	cd tests/mcp && npm ci --no-audit --no-fund --loglevel=error
	touch $(MCP_SERVERS)

mcp-servers: $(MCP_SERVERS)

test: $(STAMP) real-model $(MCP_SERVERS)
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| echo "could not install Debian's chromium: the browser tests (report, viewer) fail where apt-get could install it, and skip (saying why) only where it cannot"
	$(BIN)/ruff check .
	TRAJFORGE_REAL_MODEL_REQUIRED=1 TRAJFORGE_MCP_REQUIRED=1 $(BIN)/pytest -q

bench: $(STAMP)
	@set -e; for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script; done

clean:
	rm -rf $(VENV) .prefect out
