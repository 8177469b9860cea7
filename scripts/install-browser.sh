#!/usr/bin/env bash
# Install what the browser tests (tests/test_browser.py) need, from Debian's packages:
# Chromium, and a Chinese font so that pages and screenshots show 中文 rather than boxes.
# Nothing is downloaded by the tests themselves. Safe to run again: it does nothing when
# both are there. As root it installs; otherwise it prints the command to run (and exits 0,
# so `make test` goes on: the browser tests then skip, saying why).
set -euo pipefail

PACKAGES=(chromium fonts-wqy-microhei)
CHROMIUM="${NSDX_CHROMIUM:-/usr/bin/chromium}"

have_font() { command -v fc-list >/dev/null && [ -n "$(fc-list :lang=zh family 2>/dev/null)" ]; }

if [ -x "$CHROMIUM" ] && have_font; then
    echo "browser tests: $("$CHROMIUM" --version 2>/dev/null | head -n1) and a Chinese font are installed"
    exit 0
fi

CMD="apt-get update && apt-get install -y ${PACKAGES[*]}"
if [ "$(id -u)" -ne 0 ]; then
    echo "browser tests need Chromium and a Chinese font; install them with:" >&2
    echo "    sudo sh -c '$CMD'" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "no apt-get here: install Chromium and a CJK font with your system's packages," >&2
    echo "then set NSDX_CHROMIUM=/path/to/chromium if it is not at /usr/bin/chromium" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${PACKAGES[@]}" >/dev/null
echo "installed: $("$CHROMIUM" --version 2>/dev/null | head -n1)"
