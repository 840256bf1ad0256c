#!/usr/bin/env bash
# The whole test suite: installs what the tests need (apt), builds in Release, runs every test project,
# and ends with the failed tests (name and first lines of the message), if any, and then one line
# "N passed, N failed" (or, when the build fails, one line saying so). Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib/prereqs.sh
. scripts/lib/prereqs.sh
ensure_test_prereqs

results=$(mktemp -d "${TMPDIR:-/tmp}/zramd-test.XXXXXX")
trap 'rm -rf "$results"' EXIT

# Not left to set -e: the run would end on the compiler's output with no summary line (CI shows only the tail).
if ! dotnet build Zram.sln -c Release -warnaserror -nologo -v:q; then
  echo "build failed (errors above): no tests were run"
  exit 1
fi
status=0
# One run per test project, each with its own results file, so that the totals below are exact.
for proj in tests/*/*.csproj; do
  name=$(basename "$proj" .csproj)
  dotnet test "$proj" -c Release --no-build --nologo \
    --logger "trx;LogFileName=$name.trx" --logger "console;verbosity=normal" \
    --results-directory "$results" || status=$?
done

passed=0; failed=0; found=0
for trx in "$results"/*.trx; do
  [ -e "$trx" ] || continue
  found=$((found + 1))
  counters=$(grep -o '<Counters [^>]*>' "$trx" | head -n 1)
  p=$(sed -n 's/.* passed="\([0-9]*\)".*/\1/p' <<<"$counters")
  f=$(sed -n 's/.* failed="\([0-9]*\)".*/\1/p' <<<"$counters")
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
done

if [ "$found" -eq 0 ]; then
  echo "no test results were written" >&2
  failed=$((failed + 1))
else
  # Name the failed tests right above the summary: CI shows only the tail of the output.
  /usr/bin/python3 scripts/lib/trx-failures.py "$results"/*.trx || echo "could not list the failed tests" >&2
fi
echo "${passed} passed, ${failed} failed"
if [ "$status" -ne 0 ] || [ "$failed" -ne 0 ]; then
  exit 1
fi
