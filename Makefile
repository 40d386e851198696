PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.demo-installed
DOCS_STAMP := $(VENV)/.docs-installed
# What the demos import: LangChain (with numpy, for its in-memory vector store), boto3, Strands and MCP.
DEMO_EXTRAS := langchain,aws,strands,mcp

.PHONY: demo test docs conformance bench soak clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The test install holds the demo's extras too: a venv that has it installs nothing more.
$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	if [ ! $(STAMP) -nt pyproject.toml ]; then $(BIN)/python -m pip install --quiet -e '.[$(DEMO_EXTRAS)]'; fi
	touch $(DEMO_STAMP)

$(DOCS_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[docs]'
	touch $(DOCS_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/python examples/demo.py
	$(BIN)/python examples/langchain_agent.py
	$(BIN)/python examples/rag_filtering.py
	$(BIN)/python examples/bedrock_agents/run.py
	$(BIN)/python examples/strands_agent.py
	$(BIN)/python examples/mcp/client.py
	$(BIN)/python examples/approvals.py
	$(BIN)/python examples/agentcore_gateway.py

test: $(STAMP)
	$(BIN)/python -m ruff check agentauthz tests examples
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest -q -p no:cacheprovider; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 1; fi; exit $$rc

# The documentation site with its API reference, in build/site; strict: any warning fails.
docs: $(DOCS_STAMP)
	$(BIN)/mkdocs build --strict

conformance: $(STAMP)
	AGENTAUTHZ_CORPUS_SAMPLE=all $(BIN)/python -m pytest -q tests/conformance

clean:
	rm -rf $(VENV) build dist *.egg-info

bench: $(STAMP)
	$(BIN)/python -m bench.run

# Bounded load test (about a minute, in-process, loopback only): threads and asyncio tasks deciding
# while the policies reload; fails on a wrong decision, a lost audit event or memory growth.
soak: $(STAMP)
	$(BIN)/python -m bench.soak
