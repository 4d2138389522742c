#!/usr/bin/env bash
# Fails when the committed generated protobuf code differs from what `npm run proto` produces.
set -euo pipefail
cd "$(dirname "$0")/.."
npx --no-install buf lint
npx --no-install buf generate
if ! git diff --quiet --exit-code -- proto/gen || [ -n "$(git ls-files --others --exclude-standard proto/gen)" ]; then
  echo "proto/gen is stale: run 'npm run proto' and commit the result" >&2
  git --no-pager diff --stat -- proto/gen >&2
  exit 1
fi
echo "proto/gen is up to date"
