#!/usr/bin/env bash
# ensure-packages.sh PKG... installs the Debian packages that are missing (as root), so every
# make target works on a fresh machine. Without root it names what is missing and goes on:
# the tests that need those tools skip loudly.
source "$(dirname "$0")/lib.sh"

if [ "$(id -u)" -ne 0 ]; then
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
      log "Debian package $p is missing (apt-get install $p as root); tests that need it will skip"
  done
  exit 0
fi
ensure_packages "$@"
