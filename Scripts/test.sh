#!/usr/bin/env bash
# Sets up and runs every test: unit, integration and end-to-end (network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
Scripts/setup.sh
swift build --build-tests
swift test
