# facegate: the README's two commands are `make run` and `make test`.
.PHONY: setup web-setup build run test lint bench

setup: ## fetch and verify the models and ONNX Runtime (idempotent)
	bash scripts/fetch-models.sh

web-setup: ## Chromium and playwright-core for the browser test (idempotent)
	bash scripts/install-browser.sh

build: setup
	cargo build --release -p facegate

run: build ## start the server on its defaults
	./target/release/facegate serve

test: setup web-setup ## the whole test suite (real models, real browser; dataset tests skip without ../shared)
	cargo test --workspace

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

bench: build
	./target/release/facegate bench
