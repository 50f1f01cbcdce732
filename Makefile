# facegate: the README's two commands are `make run` and `make test`.
.PHONY: setup web-setup services api-tools python-reference build run test lint bench fuzz int8

setup: ## NASM for libjpeg-turbo's SIMD, then fetch and verify the models and ONNX Runtime (idempotent)
	bash scripts/install-build-tools.sh
	bash scripts/fetch-models.sh

web-setup: ## Chromium and playwright-core for the browser test (idempotent)
	bash scripts/install-browser.sh

services: ## PostgreSQL and nginx for the storage and multi-node tests (idempotent)
	bash scripts/install-services.sh

api-tools: ## schemathesis and openapi-python-client for the conformance test (idempotent)
	bash scripts/install-api-tools.sh

python-reference: ## the Python pipeline `facegate bench http --python-reference` measures against (benchmarks only)
	bash scripts/install-python-reference.sh

build: setup
	cargo build --release -p facegate

run: build ## start the server on its defaults
	./target/release/facegate serve

test: setup web-setup services api-tools ## the whole test suite (real models, real browser, real PostgreSQL; dataset tests skip without ../shared)
	cargo test --workspace
	# The server tests that touch storage, again on PostgreSQL (the storage
	# contract and the cluster tests run on it in the pass above already).
	FACEGATE_TEST_DATABASE=postgres cargo test -p facegate-server --test auth --test gallery --test session --test face_match --test operations
	# The fuzz targets are a workspace of their own, which the passes above do
	# not build: checked here so that a changed API cannot break them unseen.
	# Warnings fail it: its lock file holds newer dependencies than the
	# workspace's, so a deprecation shows here first (generic-array 0.14.9's).
	RUSTFLAGS="-D warnings" cargo check --manifest-path fuzz/Cargo.toml --locked --target-dir target/fuzz-check

fuzz: setup ## every cargo-fuzz target for FUZZ_SECONDS (60) each; needs `cargo install cargo-fuzz`
	bash scripts/fuzz.sh

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

int8: build ## the int8 SFace, calibrated on LFW (needs ../shared/datasets/lfw and ~24 GB of RAM)
	bash scripts/quantize-sface.sh

bench: build
	./target/release/facegate bench
