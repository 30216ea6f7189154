#!/usr/bin/env bash
# The API held to its OpenAPI document: starts `followupd all` on a database and port of its
# own (the application role, migrated by the owner role, as in production), mints a
# caseworker's and an admin's token, and runs deploy/schemathesis.sh against it: every check,
# both tokens, any finding fails. `deploy/test.sh` runs it after the cargo tests.
#
# Settings (environment): FOLLOWUPD and FOLLOWUPCTL, the binaries (default: the debug
# builds the cargo tests left in target/debug); SCHEMATHESIS_MAX_TIME, seconds per token
# (default 120).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. deploy/ensure-services.sh
followupd="${FOLLOWUPD:-target/debug/followupd}"
followupctl="${FOLLOWUPCTL:-target/debug/followupctl}"
[ -x "$followupd" ] && [ -x "$followupctl" ] || cargo build --locked --quiet -p followupd -p followupctl

db=followups_api_check
admin="${FOLLOWUP_ADMIN_DATABASE_URL:-$DATABASE_URL}"
psql "${admin%/*}/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
psql "${admin%/*}/postgres" -qc "CREATE DATABASE $db" >/dev/null
if [ -n "${FOLLOWUP_MIGRATE_DATABASE_URL:-}" ]; then
    psql "${admin%/*}/postgres" -qc "ALTER DATABASE $db OWNER TO followup_owner" >/dev/null
    export FOLLOWUP_MIGRATE_DATABASE_URL="${FOLLOWUP_MIGRATE_DATABASE_URL%/*}/$db"
fi
export DATABASE_URL="${DATABASE_URL%/*}/$db"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
export FOLLOWUP_HTTP_ADDR="127.0.0.1:$port"
export FOLLOWUP_JWT_SECRET="api-check-secret-0123456789abcdef0123456789"
export FOLLOWUP_ENV_FILE=/dev/null
export RUST_LOG="${RUST_LOG:-warn}"
# One JSON object per line (no colours), so that an error line can be found.
export FOLLOWUP_LOG_FORMAT=json
work="$(mktemp -d)"
# A nats-server of its own, so that nothing of this run reaches another system's streams.
nats_port=$(free_port)
nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$work/nats" >"$work/nats.log" 2>&1 &
nats=$!
export NATS_URL="nats://127.0.0.1:$nats_port"
"$followupd" all >"$work/followupd.log" 2>&1 &
server=$!
trap 'kill $server $nats 2>/dev/null; wait $server $nats 2>/dev/null; rm -rf "$work"' EXIT
log_file="$work/followupd.log"
for _ in $(seq 1 150); do
    curl -fsS "http://$FOLLOWUP_HTTP_ADDR/readyz" >/dev/null 2>&1 && break
    kill -0 "$server" 2>/dev/null || { cat "$log_file"; echo "followupd did not start"; exit 1; }
    sleep 0.2
done

export FOLLOWUP_API_URL="http://$FOLLOWUP_HTTP_ADDR"
export FOLLOWUP_CASEWORKER_TOKEN=$("$followupctl" token --sub schemathesis-caseworker --inst KP --team admissions --role caseworker --hours 1)
export FOLLOWUP_ADMIN_TOKEN=$("$followupctl" token --sub schemathesis-admin --inst KP --role admin --hours 1)
status=0
bash deploy/schemathesis.sh || status=$?
if grep -E '"level":"ERROR"|panicked at' "$log_file" >/dev/null; then
    echo "followupd logged errors during the run:"
    grep -E '"level":"ERROR"|panicked at' "$log_file" | head -n 20
    status=1
fi
if [ "$status" = 0 ]; then echo "api-check: passed"; else echo "api-check: FAILED"; fi
exit "$status"
