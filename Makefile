# gpu-estate: set-up, the sandbox main job and the tests. Everything lands in .venv and the
# Pulumi build cache (~/.cache/gpu-estate); nothing is downloaded but packages from the registries.
PY      ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
PULUMI_BIN := $(shell bash -c 'echo $${GPU_ESTATE_CACHE:-$$HOME/.cache/gpu-estate}')/pulumi-v3.259.0/bin

.PHONY: setup sandbox test test-fast preview clean

$(VPY): requirements.txt policy/requirements.txt
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -r requirements.txt -r policy/requirements.txt
	touch $(VPY)

# The real LiteLLM proxy, in a venv of its own (its pins differ from the program's), for the gateway tests.
$(VENV)-gateway/bin/litellm: requirements-gateway.txt
	$(PY) -m venv $(VENV)-gateway
	$(VENV)-gateway/bin/python -m pip install -q --upgrade pip
	$(VENV)-gateway/bin/python -m pip install -q -r requirements-gateway.txt
	touch $@

setup: $(VPY) $(VENV)-gateway/bin/litellm
	bash scripts/build-pulumi.sh
	bash scripts/build-actionlint.sh

# The main job: the estate up, checked, refreshed and destroyed on loopback GPU clouds.
sandbox: setup
	$(VPY) scripts/sandbox.py

test: setup
	PATH="$(PULUMI_BIN):$$PATH" $(VPY) -m pytest -q

# Unit, provider and policy tests only (no Pulumi CLI needed).
test-fast: $(VPY)
	$(VPY) -m pytest -q -m "not engine"

clean:
	rm -rf .estate
