# ferroflow's two set-up commands: `make demo` and `make test`. Both create or refresh .venv,
# build the Rust extension into it and install what they need; nothing else is required
# beyond Python 3.11+ and a Rust toolchain.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Keep every cargo invocation (maturin's too) on one target dir, so builds are shared.
export CARGO_TARGET_DIR ?= $(CURDIR)/target

# Wheels: exactly what .github/workflows/wheels.yml publishes for Linux (tests/test_package.py checks
# that both give maturin the same arguments and targets): manylinux2014 (glibc 2.17), linked with
# zig, so no container is needed (maturin finds zig as `python -m ziglang` of the venv on PATH);
# for aarch64 too, cross-compiled (`rustup target add aarch64-unknown-linux-gnu` first). The dist
# profile (fat LTO) builds in target/<triple>/dist, kept between runs.
WHEEL_ARGS := --profile dist --zig --compatibility manylinux2014 --out dist
WHEEL_TARGETS := x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu
WHEEL_TARGET ?= x86_64-unknown-linux-gnu

.PHONY: help venv build wheel wheel-aarch64 test-wheel test test-rust test-python stubtest typecheck lint lint-python lint-rust demo bench bench-rust clean

# pip's output for the dependencies already installed ("Requirement already satisfied", one line
# each) says nothing; maturin develop runs pip too, so the setting goes through the environment.
export PIP_QUIET := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

# What the extension is built from: a change to any of these (or to the interpreter, or to
# pyproject.toml through the venv's stamp) rebuilds it; otherwise `make build` does nothing.
RUST_SOURCES := Cargo.toml Cargo.lock $(wildcard rust/*/Cargo.toml) $(shell find rust -name '*.rs')
BUILT := $(VENV)/.built

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

# The venv is refreshed whenever pyproject.toml changes (new dependencies).
$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "ferroflow needs Python 3.11+ (set PYTHON=python3.X)")'
	@command -v cargo >/dev/null || { echo "cargo not found: install a Rust toolchain (https://rustup.rs)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade 'pip>=25.1'
	$(PIP) install --group dev
	touch $@

venv: $(VENV)/.installed ## create/refresh .venv with build, test and bench dependencies

build: $(BUILT) ## build the extension (release) into .venv, installed editable, when its sources changed

# The interpreter behind .venv/bin/python (resolved when make starts): a new one rebuilds too.
# PIP_QUIET keeps the dependency check maturin develop runs through pip quiet.
$(BUILT): $(RUST_SOURCES) $(VENV)/.installed $(realpath $(PY))
	VIRTUAL_ENV=$(abspath $(VENV)) nice $(VENV)/bin/maturin develop --release --quiet
	touch $@

test: build test-rust test-python stubtest typecheck lint test-wheel ## run every test: cargo, pytest, stub and type checks, linters, the wheel

test-rust:
	cargo test --release -p ferroflow-core

lint-rust: ## check the Rust code's formatting and lints (rustfmt, clippy with warnings as errors)
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

test-python: build
	$(PY) -m pytest

stubtest: build ## check python/ferroflow/_core.pyi against the compiled module
	$(PY) -m mypy.stubtest ferroflow._core

typecheck: build ## type-check the package with mypy
	$(PY) -m mypy python/ferroflow

lint: lint-python lint-rust ## linters: ruff (lint and format), the import contracts, rustfmt and clippy

lint-python: venv
	$(VENV)/bin/ruff check python tests benches examples
	$(VENV)/bin/ruff format --check python tests benches examples
	$(VENV)/bin/lint-imports

demo: build ## run the example pipeline (its runs, cache and results go to .demo/)
	$(PY) examples/demo.py

wheel: venv ## build the release wheel the workflow publishes (manylinux2014; WHEEL_TARGET, x86_64 by default) into dist/ and check it with auditwheel
	rm -f dist/ferroflow-*-$(subst -unknown-linux-gnu,,$(WHEEL_TARGET)).whl
	PATH="$(abspath $(VENV))/bin:$$PATH" nice $(VENV)/bin/maturin build $(WHEEL_ARGS) --target $(WHEEL_TARGET)
	$(VENV)/bin/auditwheel show dist/ferroflow-*-manylinux*$(subst -unknown-linux-gnu,,$(WHEEL_TARGET)).whl

# Cross-compiled, so it cannot be installed and run here: not part of `make test` (several CPU minutes).
wheel-aarch64: ## build and check the aarch64 release wheel (as `make wheel WHEEL_TARGET=aarch64-unknown-linux-gnu`)
	$(MAKE) wheel WHEEL_TARGET=aarch64-unknown-linux-gnu

test-wheel: wheel ## install the wheel into a fresh venv with no Rust on PATH and run the README's quick start there
	FERROFLOW_TEST_WHEEL="$$(ls $(CURDIR)/dist/ferroflow-*-manylinux*$(subst -unknown-linux-gnu,,$(WHEEL_TARGET)).whl)" \
		$(PY) -m pytest -q -p no:cacheprovider tests/test_wheel.py

bench: build ## run the benchmarks in benches/ and write their figures to .bench/summary.md
	$(PY) benches/summary.py --out .bench/summary.md

bench-rust: ## run the core's criterion benchmarks (no Python involved)
	cargo bench -p ferroflow-core

clean:
	rm -rf $(VENV) target dist .pytest_cache .hypothesis
