#!/usr/bin/env bash
# Supply-chain check: audit Cargo.lock and fuzz/Cargo.lock with cargo-audit against the
# advisory snapshot in supply-chain/advisory-db, offline (no fetch of the advisory database).
# Vulnerabilities, unmaintained and unsound crates all fail the check. See docs/security.md.
#
#   scripts/supply-chain.sh                  # audit the project's lock files
#   scripts/supply-chain.sh path/Cargo.lock  # audit another lock file (e.g. an older one)
#
# cargo-audit is installed from crates.io at a pinned version the first time (292 crates,
# about 9 minutes of CPU time, which is why this is not part of .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

version=0.22.2
db=supply-chain/advisory-db

if ! cargo audit --version 2>/dev/null | grep -qx "cargo-audit-audit $version\|cargo-audit $version"; then
  # binary-scanning (auditing built executables) is not used: the lock files are audited.
  cargo install cargo-audit --locked --version "$version" --no-default-features
fi

locks=("$@")
[ ${#locks[@]} -gt 0 ] || locks=(Cargo.lock fuzz/Cargo.lock)

status=0
for lock in "${locks[@]}"; do
  echo "== $lock"
  # --no-fetch: use the snapshot as it is; --no-yanked: the yanked check asks crates.io.
  cargo audit --db "$db" --no-fetch --no-yanked --deny warnings --file "$lock" || status=1
done
exit $status
