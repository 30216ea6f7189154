#!/usr/bin/env bash
# Runs every test of the workspace against a real PostgreSQL and real NATS servers (started
# and installed when missing). Each test gets a fresh database (`#[sqlx::test]`) and each test
# that needs NATS its own private nats-server on a free port.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. deploy/ensure-services.sh
exec cargo test --workspace --locked "$@"
