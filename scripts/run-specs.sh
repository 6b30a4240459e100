#!/usr/bin/env bash
# Runs the compiled specs of the named suites (unit, integration, e2e) with Node's test runner.
# Node 20's runner does not pick up *.spec.js by itself, so the files are listed here.
set -euo pipefail
shopt -s globstar nullglob
cd "$(dirname "$0")/.."
files=()
for suite in "$@"; do
  for f in dist/spec/"$suite"/**/*.spec.js; do files+=("$f"); done
done
if [ ${#files[@]} -eq 0 ]; then
  echo "no spec files found for: $*" >&2
  exit 1
fi
exec node --test --test-concurrency="${SPEC_CONCURRENCY:-2}" "${files[@]}"
