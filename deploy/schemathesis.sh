#!/usr/bin/env bash
# Runs Schemathesis, with every check, against
# a running API, once as a caseworker and once as an admin, and fails on any finding.
# It starts nothing: start the API first (deploy/run.sh, or followupd in CI) and mint the tokens.
#
# Settings (environment):
#   FOLLOWUP_API_URL           the API's base URL, e.g. http://127.0.0.1:8080 (the document is
#                              served at $FOLLOWUP_API_URL/openapi.json, see services/api/src/ops.rs)
#   FOLLOWUP_CASEWORKER_TOKEN  a bearer token with the caseworker role
#   FOLLOWUP_ADMIN_TOKEN       a bearer token with the admin role
#   SCHEMATHESIS_MAX_TIME      seconds per run (default 120: two runs, about four minutes)
#   SCHEMATHESIS_SEED          a seed, to replay a run (default: random; the run prints it)
#
# Minting the tokens (HS256 with the server's FOLLOWUP_JWT_SECRET; followupctl reads it from the
# environment, or from .local/env when started in the repository; a token may live at most
# 24 hours, FOLLOWUP_TOKEN_MAX_LIFETIME):
#   export FOLLOWUP_CASEWORKER_TOKEN=$(followupctl token --sub schemathesis-caseworker --inst KP --team admissions --role caseworker --hours 1)
#   export FOLLOWUP_ADMIN_TOKEN=$(followupctl token --sub schemathesis-admin --inst KP --role admin --hours 1)
# (followupctl is target/release/followupctl after deploy/run.sh; `--role` replaces the default
# `caseworker`, so the admin token carries `admin` only, which is all the API looks at.)
set -euo pipefail

root_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state_dir="$root_dir/.local"
mkdir -p "$state_dir"

log() { printf '[schemathesis] %s\n' "$*" >&2; }

: "${FOLLOWUP_API_URL:?set FOLLOWUP_API_URL to the API base URL, e.g. http://127.0.0.1:8080}"
: "${FOLLOWUP_CASEWORKER_TOKEN:?set FOLLOWUP_CASEWORKER_TOKEN (see the top of this script)}"
: "${FOLLOWUP_ADMIN_TOKEN:?set FOLLOWUP_ADMIN_TOKEN (see the top of this script)}"
base_url="${FOLLOWUP_API_URL%/}"
max_time="${SCHEMATHESIS_MAX_TIME:-120}"

# --- Schemathesis, pinned, from PyPI into .local/schemathesis ----------------------------------
# 4.32.5 was the newest release when this was written (`pip index versions schemathesis`). The
# option names below are that version's (`schemathesis run --help`); check them when bumping it.
SCHEMATHESIS_VERSION=4.32.5
st_dir="$state_dir/schemathesis"
schemathesis() { PYTHONPATH="$st_dir" python3 "$st_dir/bin/schemathesis" "$@"; }
if [ "$(schemathesis --version 2>/dev/null)" != "schemathesis, version $SCHEMATHESIS_VERSION" ]; then
    python3 -m pip --version >/dev/null 2>&1 || { log "python3 -m pip is missing (Debian: apt-get install python3-pip)"; exit 1; }
    log "installing schemathesis $SCHEMATHESIS_VERSION (PyPI) into .local/schemathesis"
    rm -rf "$st_dir"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        --no-warn-script-location --target "$st_dir" "schemathesis==$SCHEMATHESIS_VERSION"
fi

out_dir="$state_dir/schemathesis-report"
rm -rf "$out_dir"
mkdir -p "$out_dir"

# --- Configuration ---------------------------------------------------------------------------
# Written per run; the token reaches Schemathesis through the environment, not the command line.
write_config() { # <file> <role>
    cat >"$1" <<'TOML'
# Seconds a request may take (the operations below with more or less say so).
request-timeout = 5

# The security scheme of the document is `bearer`; the token comes from the environment.
[auth.openapi.bearer]
bearer = "${SCHEMATHESIS_BEARER}"

# Warnings that mean the run proved nothing fail it too: a token the API refuses
# (missing_auth), a pattern Schemathesis cannot generate from, a filter below that matches no
# operation any more (an operation was renamed).
[warnings]
fail-on = ["missing_auth", "unused_openapi_auth", "unsupported_regex", "unmatched_filter"]

# Schema-valid requests this API answers correctly with more than Schemathesis' defaults:
# 412 when a (well-formed) If-Match names another version than the current one.
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "412", "429", "5xx"]

# 422 for rules that depend on the follow-up's current state, not on the request's shape:
# `not_shared` (unshare of someone without a share), `share_with_owner`, and
# `not_a_notification` (read/dismiss of a task or exception). See docs/decisions.md.
[[operations]]
include-name = [
    "POST /v1/followups/{id}/shares",
    "DELETE /v1/followups/{id}/shares/{principal}",
    "POST /v1/notifications/{id}/read",
    "POST /v1/notifications/{id}/dismiss",
]
[operations.checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "412", "422", "429", "5xx"]

# Page cursors are sealed (an HMAC the API adds): only a cursor the API handed out is valid,
# which no pattern can say, so a made-up cursor that matches the documented form is a correct
# 400 `bad_cursor` on the two lists.
[[operations]]
include-name = ["GET /v1/followups", "GET /v1/notifications"]
[operations.checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx"]

# An erasure waits for the relay (up to 10 s) and reads the outbound and dead-letter streams
# through to purge them, which after minutes of fuzzing hold thousands of messages: seconds on
# a debug build beside the fuzzer, so more than the 5 s every other request gets.
[[operations]]
include-name = "POST /v1/erasures"
request-timeout = 30
[operations.checks]
max_response_time = 30

# The live stream never ends on its own: Schemathesis reads it until 20 events or the request
# timeout, so each case costs that timeout. Few and short.
[[operations]]
include-name = "GET /v1/stream"
request-timeout = 2
[operations.generation]
max-examples = 3
TOML
}

run_as() { # <role> <token>
    local role=$1 config="$out_dir/$1.toml"
    write_config "$config" "$role"
    local seed=() exclude=()
    [ -n "${SCHEMATHESIS_SEED:-}" ] && seed=(--seed "$SCHEMATHESIS_SEED")
    # A caseworker may create a follow-up owned by another user or team (a hand-over at
    # creation) and then, by the access rules, no longer sees it: the GET after the POST
    # answers 404 on purpose, which `ensure_resource_availability` would report. The admin
    # run keeps the check (an admin sees its whole institution).
    # The admins' operations (erasures, legal holds) answer a caseworker 403 and nothing else,
    # which Schemathesis reports as failed authentication: they are tested in the admin run.
    [ "$role" = caseworker ] && exclude=(--exclude-checks ensure_resource_availability
        --exclude-path-regex '^/v1/(erasures|followups/\{id\}/legal-hold)$')
    log "run as $role against $base_url/openapi.json (at most ${max_time}s)"
    # --checks all: every check; --phases: all four; --max-time bounds the run (fuzzing and
    # stateful repeat until it is spent); --max-examples per operation and fuzzing round;
    # --generation-database none: nothing written into the working directory; --workers 1:
    # two workers parse Hypothesis lambdas' source concurrently, which CPython 3.11 can fail
    # with "SystemError: AST constructor recursion depth mismatch" (python/cpython#106905),
    # and one core is left to the API and PostgreSQL anyway.
    SCHEMATHESIS_BEARER="$2" SCHEMATHESIS_HOOKS="$root_dir/deploy/schemathesis_hooks.py" \
        schemathesis --config-file "$config" run "$base_url/openapi.json" \
        --checks all "${exclude[@]}" \
        --phases examples,coverage,fuzzing,stateful \
        --max-time "$max_time" \
        --max-examples 20 \
        --workers 1 \
        --wait-for-schema 30 \
        --generation-database none \
        --report junit --report-dir "$out_dir/$role" \
        --no-color \
        "${seed[@]}"
}

status=0
run_as caseworker "$FOLLOWUP_CASEWORKER_TOKEN" || status=1
run_as admin "$FOLLOWUP_ADMIN_TOKEN" || status=1
if [ "$status" -ne 0 ]; then
    log "findings: see the output above and the JUnit reports in .local/schemathesis-report/"
else
    log "no findings"
fi
exit "$status"
