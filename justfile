# Developer tasks. `just` lists them.

default:
    @just --list

# Build everything (debug).
build:
    cargo build --all-targets

# Run the test suite exactly as CI does.
test:
    bash scripts/setup.sh && cargo test --release --locked

# Format and lint.
lint:
    cargo fmt --check
    cargo clippy --all-targets -- -D warnings

# Regenerate committed completions and man pages after CLI changes.
docs:
    SQM_BLESS=1 cargo test --release --test suite docs::

# Benchmarks (release builds; print ratios against in-process baselines).
bench:
    cargo bench --bench interpret
    cargo bench --bench validate
    cargo bench --bench daemon
    cargo bench --bench embed
    cargo bench --bench render
    cargo bench --bench prerender
    cargo bench --bench audio
    cargo bench --bench compose

# Re-synthesise the example pack's audio and the narration corpus.
assets:
    python3 scripts/gen_audio.py
    python3 scripts/gen_corpus.py

# Check the example pack like a content author would.
validate:
    cargo run --quiet -- validate-pack examples/genre_packs
