# gpu-estate: set-up, the sandbox main job and the tests. Everything lands in .venv and the
# Pulumi build cache (~/.cache/gpu-estate); nothing is downloaded but packages from the registries.
PY      ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
CACHE   := $(shell bash -c 'echo $${GPU_ESTATE_CACHE:-$$HOME/.cache/gpu-estate}')
# Where scripts/build-pulumi.sh put (or found) the CLI, the language host and the command plugin.
PULUMI_BIN = $$(cat $(CACHE)/pulumi-bin)

.PHONY: setup stack-setup sandbox test test-fast money preview clean

# The project's packages (core, providers, components, policy, loopback, scripts) go in editable, so
# every entry point imports them the same way, with no path juggling.
$(VPY): requirements.txt policy/requirements.txt pyproject.toml
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -r requirements.txt -r policy/requirements.txt
	$(VPY) -m pip install -q --no-deps -e .
	touch $(VPY)

# The real LiteLLM proxy, in a venv of its own (its pins differ from the program's), for the gateway tests.
$(VENV)-gateway/bin/litellm: requirements-gateway.txt
	$(PY) -m venv $(VENV)-gateway
	$(VENV)-gateway/bin/python -m pip install -q --upgrade pip
	$(VENV)-gateway/bin/python -m pip install -q -r requirements-gateway.txt
	touch $@

# The vendors' own clients and the MLflow tracking server, each in a venv of its own (their pins clash), for the
# contract and engine tests.
$(VENV)-%/bin/python: requirements-%.txt
	$(PY) -m venv $(VENV)-$*
	$(VENV)-$*/bin/python -m pip install -q --upgrade pip
	$(VENV)-$*/bin/python -m pip install -q -r requirements-$*.txt
	touch $@

# Mermaid's own parser, for the test that the estate's drawings parse (skipped where npm is missing).
scripts/mermaid/node_modules/.package-lock.json: scripts/mermaid/package-lock.json
	if command -v npm >/dev/null; then cd scripts/mermaid && npm ci --no-audit --no-fund --loglevel=error; fi

setup: $(VPY) $(VENV)-gateway/bin/litellm $(VENV)-runpod/bin/python $(VENV)-vastai/bin/python $(VENV)-mlflow/bin/python \
		scripts/mermaid/node_modules/.package-lock.json
	bash scripts/build-pulumi.sh
	bash scripts/build-actionlint.sh
	bash scripts/build-compose.sh
	bash scripts/build-ollama.sh
	bash scripts/build-registry.sh
	bash scripts/build-caddy.sh
	bash scripts/build-fake-gcs.sh
	bash scripts/build-fly-client.sh
	bash scripts/build-sandbox-image.sh
	bash scripts/build-trainer-image.sh

# What a stack of your own needs to be checked and previewed (README, Your first stack): the program's venv
# and the Pulumi CLI with its plugins, without the sandbox's images, servers and the tests' tools.
stack-setup: $(VPY)
	bash scripts/build-pulumi.sh

# The main job: the estate up, checked, refreshed and destroyed on loopback GPU clouds.
sandbox: setup
	$(VPY) -m sandbox

test: setup
	PATH="$(PULUMI_BIN):$$PATH" $(VPY) -m pytest -q

# Every everyday edit and fault that must cost nothing, and how many did.
money: setup
	PATH="$(PULUMI_BIN):$$PATH" $(VPY) scripts/money.py

# Unit, provider and policy tests only (no Pulumi CLI needed).
test-fast: $(VPY)
	$(VPY) -m pytest -q -m "not engine"

clean:
	rm -rf .estate
