#!/usr/bin/env bash
# Debian packages a part of the suite needs, installed when one of its commands is missing
# (downloads at run time do not work offline; Debian's registry does). Quick when present.
#   scripts/install_debian.sh "WHAT FOR" "COMMAND ..." PACKAGE ...
set -euo pipefail
purpose=$1
commands=$2
shift 2
missing=0
for command in $commands; do
    command -v "$command" >/dev/null 2>&1 || missing=1
done
if [ "$missing" = 0 ]; then
    exit 0
fi
if [ "$(id -u)" = 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    echo "error: $purpose needs $*; install them (apt-get install $*) or run as root" >&2
    exit 1
fi
echo "setup: installing $* with apt-get"
"${as_root[@]}" apt-get update -qq
# policy-rc.d keeps a package's service stopped where there is one; the tests start their own
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq "$@" >/dev/null
