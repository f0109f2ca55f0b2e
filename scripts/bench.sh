#!/usr/bin/env bash
# Runs every benchmark: each bench/<area>/run.sh prints its figures next
# to the peer it is compared with, measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
for r in bench/*/run.sh; do
  [ -e "$r" ] || continue
  echo "== $r"
  bash "$r"
done
