# The two set-up commands are `make run` and `make test`; everything else is a helper.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Strict editable installs link files one by one, so re-install when the module list changes.
SOURCES := $(shell find agent tools sandbox archive tasks prompts daedalus_pkg -type f \( -name '*.py' -o -name '*.j2' -o -name '*.toml' -o -name '*.ini' -o -name '*.mako' -o -name '*.html' -o -name '*.css' -o -name '*.js' -o -name '*.svg' -o -name 'Dockerfile*' -o -name '*.yaml' -o -name '*.json' -o -name '*.txt' -o -name '*.sh' \) 2>/dev/null | sort)
STAMP := $(VENV)/.stamp-$(shell echo "$(SOURCES)" | cat - pyproject.toml constraints.txt 2>/dev/null | sha1sum | cut -c1-12)
RUN_TASK ?= swish_scale
RUN_ARGS ?= --iterations 60 --time-limit 150 --compile-timeout 90
# An editable install leaves Daedalus's own modules without bytecode, and environments that
# set PYTHONDONTWRITEBYTECODE never write it: every start would compile ~150 modules again
# (0.3 s of CPU, in the agent and in the fork server). compileall skips what is up to date.
PACKAGES := agent tools sandbox archive tasks prompts daedalus_pkg
BYTECODE = $(BIN)/python -m compileall -q $(PACKAGES) >/dev/null

.PHONY: run test install lint typecheck bench clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@flock $(VENV)/.install.lock bash -c '\
	  $(BIN)/python -m pip install -q --upgrade pip >/dev/null && \
	  $(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]" --config-settings editable_mode=strict && \
	  rm -f $(VENV)/.stamp-* && touch $@'

install: $(STAMP)

run: install
	@$(BYTECODE)
	$(BIN)/daedalus run $(RUN_TASK) $(RUN_ARGS)

test: install
	@$(BYTECODE)
	$(BIN)/ruff check .
	$(BIN)/mypy .
	$(BIN)/python -m pytest -q -rs --durations=20

# ruff check is the lint gate; the code keeps its own compact layout, so ruff format is not
# enforced (it would re-wrap ~120 files and push several modules past 400 lines).
lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy .

bench: install
	@$(BYTECODE)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .daedalus build *.egg-info
