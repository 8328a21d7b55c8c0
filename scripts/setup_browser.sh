#!/usr/bin/env bash
# Headless Chromium and its WebDriver for the dashboard's browser test (Debian's packages).
exec "$(dirname "$0")/install_debian.sh" "the browser test" "chromium chromedriver" \
    chromium chromium-driver
