#!/usr/bin/env bash
# Prints the path of a Chromium the browser tests can drive (Debian's package, never a downloaded build).
# Installs it with apt when /usr/bin/chromium is missing and we are root. Exits non-zero without one.
set -euo pipefail
CHROMIUM=/usr/bin/chromium
if [ ! -x "$CHROMIUM" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "scripts/browser.sh: $CHROMIUM is missing and we are not root: install Debian's chromium package" >&2
    exit 1
  fi
  echo "scripts/browser.sh: installing Debian's chromium (apt-get)..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 || { echo "scripts/browser.sh: apt-get update failed" >&2; exit 1; }
  apt-get install -y -qq --no-install-recommends chromium >&2 \
    || { echo "scripts/browser.sh: apt-get install chromium failed" >&2; exit 1; }
  if [ ! -x "$CHROMIUM" ]; then
    echo "scripts/browser.sh: chromium installed but $CHROMIUM is missing" >&2
    exit 1
  fi
fi
echo "$CHROMIUM"
