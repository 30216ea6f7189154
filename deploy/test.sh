#!/usr/bin/env bash
# Runs every test of the workspace against a real PostgreSQL and real NATS servers (started
# and installed when missing). Each test gets a fresh database (`#[sqlx::test]`) and each test
# that needs NATS its own private nats-server on a free port; the browser tests get their own
# ChromeDriver and headless Chromium (installed when missing). Ends with one summary line.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. deploy/ensure-services.sh
# The web inbox's browser tests drive headless Chromium through ChromeDriver.
command -v chromium >/dev/null || install_debian_package chromium
command -v chromedriver >/dev/null || install_debian_package chromium-driver
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --all-targets --locked --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
