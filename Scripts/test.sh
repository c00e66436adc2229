#!/usr/bin/env bash
# Sets up and runs every test: unit and integration tests (swift test), the VPN lab's
# own unit tests, and the end-to-end tests in network namespaces (pytest). Run as root.
# Fails if any test failed or was skipped, or if an expected suite did not run at all.
set -euo pipefail
cd "$(dirname "$0")/.."
Scripts/setup.sh
[ "$(id -u)" = 0 ] || { echo "test.sh: run as root (the end-to-end tests use network namespaces)" >&2; exit 1; }
LOGS=.build/test-logs
mkdir -p "$LOGS"

echo "== build"
swift build --build-tests

echo "== swift test"
set +e
swift test --skip-build 2>&1 | tee "$LOGS/swift-test.log"
rc=${PIPESTATUS[0]}
set -e
[ "$rc" = 0 ] || { echo "test.sh: swift test failed" >&2; exit 1; }
if grep -qE "Test Case .* skipped|with [1-9][0-9]* tests? skipped" "$LOGS/swift-test.log"; then
  echo "test.sh: some XCTest cases were skipped; skips are failures here" >&2; exit 1
fi
executed=$(grep -E "^\s*Executed [0-9]+ tests?" "$LOGS/swift-test.log" | tail -1 | awk '{print $2}')
[ "${executed:-0}" -ge 150 ] || { echo "test.sh: only ${executed:-0} XCTest cases ran; expected the full suite" >&2; exit 1; }

echo "== lab unit tests"
python3 -m unittest discover -s Scripts/lab -p 'test_*.py'

echo "== end-to-end tests (network namespaces)"
python3 -m pytest Tests/e2e -v -p no:cacheprovider --junitxml="$LOGS/e2e.xml" -o junit_family=xunit2
python3 - "$LOGS/e2e.xml" <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root)
total = sum(int(s.get("tests", 0)) for s in suites)
skipped = sum(int(s.get("skipped", 0)) for s in suites)
failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
print(f"end-to-end: {total} tests, {failed} failed, {skipped} skipped")
if skipped or failed or total < 10:
    sys.exit("test.sh: end-to-end tests failed, were skipped, or did not run")
PY
echo "== all tests passed"
