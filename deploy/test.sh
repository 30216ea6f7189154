#!/usr/bin/env bash
# Runs every test of the workspace against a real PostgreSQL and real NATS servers (started
# and installed when missing). Each test gets a fresh database (`#[sqlx::test]`) and each test
# that needs NATS its own private nats-server on a free port; the browser tests get their own
# ChromeDriver and headless Chromium (installed when missing). Then schemathesis holds the
# running API to its OpenAPI document (deploy/api-check.sh), and the README's commands run as
# written against the demo system (deploy/readme-test.sh). Ends with the summary lines.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. deploy/ensure-services.sh
# The web inbox's browser tests drive headless Chromium through ChromeDriver.
command -v chromium >/dev/null || install_debian_package chromium
command -v chromedriver >/dev/null || install_debian_package chromium-driver
# The sign-in tests start a real OpenID provider (tests/oidc-provider) on Node.js.
command -v npm >/dev/null || install_debian_package npm
[ -d tests/oidc-provider/node_modules/oidc-provider ] ||
    npm ci --prefix tests/oidc-provider --no-audit --no-fund --loglevel=error
# The SCIM tests provision through a real SCIM client library (tests/scim-client), pinned.
SCIM_CLIENT_VERSION=0.13.2
[ -f "$state_dir/scim-client/scim2_client-$SCIM_CLIENT_VERSION.dist-info/METADATA" ] || {
    log "installing scim2-client $SCIM_CLIENT_VERSION (PyPI) into .local/scim-client"
    rm -rf "$state_dir/scim-client"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        --no-warn-script-location --target "$state_dir/scim-client" \
        "scim2-client[httpx2]==$SCIM_CLIENT_VERSION"
}
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
# Each test creates a database of its own: the tests connect as the local superuser.
# (The local system's owner role names the demo's database, not theirs.)
env -u FOLLOWUP_MIGRATE_DATABASE_URL DATABASE_URL="${FOLLOWUP_ADMIN_DATABASE_URL:-$DATABASE_URL}" \
    cargo test --workspace --all-targets --locked --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
# The README as a test: every command of its shell blocks, as written, against the demo
# system that its first command (deploy/run.sh) sets up. Only in a whole run: arguments
# (`deploy/test.sh -p followupctl`) choose some cargo tests.
readme=0
api=0
if [ "$#" -eq 0 ]; then
    # The API held to its OpenAPI document by schemathesis (deploy/api-check.sh).
    bash deploy/api-check.sh 2>&1 | tee -a "$log" || api=$?
    bash deploy/readme-test.sh 2>&1 | tee -a "$log" || readme=$?
fi
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
grep '^api-check:' "$log" | tail -n 1 || true
grep '^readme:' "$log" | tail -n 1 || true
[ "$status" = 0 ] || exit "$status"
[ "$api" = 0 ] || exit "$api"
exit "$readme"
