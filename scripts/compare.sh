#!/usr/bin/env bash
# ktask against its peers: builds the C/C++ peers (scripts/build-peers.sh), then runs
# `ktask compare` with the arguments given, e.g. scripts/compare.sh --workload init --threads 1,2 --format json
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-peers.sh
swift build -c release --product ktask >&2
exec .build/release/ktask compare "$@"
