#!/usr/bin/env bash
# Headless Chromium and its WebDriver for the dashboard's browser test (Debian's
# packages: browser downloads at run time do not work offline). Quick when present.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    echo "error: the browser test needs chromium and chromium-driver; install them (apt-get install chromium chromium-driver) or run as root" >&2
    exit 1
fi
echo "setup: installing chromium and chromium-driver with apt-get"
"${as_root[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq chromium chromium-driver >/dev/null
