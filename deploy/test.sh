#!/usr/bin/env bash
# Runs every test of the workspace against a real PostgreSQL and real NATS servers (started
# and installed when missing). Each test gets a fresh database (`#[sqlx::test]`) and each test
# that needs NATS its own private nats-server on a free port. Ends with one summary line.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. deploy/ensure-services.sh
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --all-targets --locked "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
