#!/usr/bin/env bash
# The checks that need a GPU (an NVIDIA card with the CUDA toolkit):
# builds sqm with --features cuda and runs the ignored device tests
# (`on_cuda_*`). Run on the GPU machine from a checkout; prints the card,
# then the test results (Flux and Z-Image on CUDA against the CPU and the
# diffusers fixtures, in bf16 and GGUF). Exit status: that of the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
bash scripts/setup.sh
cargo test --release --locked --features cuda --test suite -- --ignored on_cuda --test-threads 1 --nocapture
