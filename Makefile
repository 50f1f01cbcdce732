# facegate: the README's two commands are `make run` and `make test`.
.PHONY: setup build run test lint bench

setup: ## fetch and verify the models and ONNX Runtime (idempotent)
	bash scripts/fetch-models.sh

build: setup
	cargo build --release -p facegate

run: build ## start the server on its defaults
	./target/release/facegate serve

test: setup ## the whole test suite (real models; LFW tests skip without ../shared)
	cargo test --workspace

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

bench: build
	./target/release/facegate bench
