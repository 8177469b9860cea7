#!/usr/bin/env bash
# Install axe-core (pinned in tests/axe/package.json) from the npm registry into
# tests/axe/node_modules, for the accessibility checks of the browser tests: they inject
# it into each page through the DevTools protocol. Safe to run again: it does nothing when
# the pinned version is there. Without npm it says how to get it and exits 0 (the axe
# checks then skip, saying why; under CI they fail).
set -euo pipefail
cd "$(dirname "$0")/../tests/axe"
WANT=$(sed -n 's/.*"axe-core": *"\([^"]*\)".*/\1/p' package.json)
HAVE=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' node_modules/axe-core/package.json 2>/dev/null | head -n1 || true)
if [ "$HAVE" = "$WANT" ] && [ -f node_modules/axe-core/axe.min.js ]; then
    echo "axe-core $HAVE is installed"
    exit 0
fi
if ! command -v npm >/dev/null; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq npm >/dev/null
    else
        echo "the accessibility checks need npm (Debian: apt-get install -y npm)" >&2
        exit 0
    fi
fi
if [ -f package-lock.json ]; then
    npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
else
    npm install --no-audit --no-fund --ignore-scripts --loglevel=error
fi
echo "installed axe-core $(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' node_modules/axe-core/package.json | head -n1)"
