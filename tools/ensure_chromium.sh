#!/usr/bin/env bash
# The browser tests drive Debian's headless Chromium; install it (and its driver) when missing.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "Chromium is missing: run 'sudo apt-get install chromium chromium-driver' (needed by tests/test_browser.py)" >&2
    exit 1
fi
echo "Installing Debian's chromium and chromium-driver for the browser tests..."
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
