#!/usr/bin/env bash
# buf is run through npx (not a devDependency): its npm package lists optional binaries for
# platforms the registry here does not serve, which would break `npm ci`.
# Fails when the committed generated protobuf code differs from what `npm run proto` produces.
set -euo pipefail
cd "$(dirname "$0")/.."
npx --yes @bufbuild/buf@1.75.0 lint
npx --yes @bufbuild/buf@1.75.0 generate
if ! git diff --quiet --exit-code -- proto/gen || [ -n "$(git ls-files --others --exclude-standard proto/gen)" ]; then
  echo "proto/gen is stale: run 'npm run proto' and commit the result" >&2
  git --no-pager diff --stat -- proto/gen >&2
  exit 1
fi
echo "proto/gen is up to date"
