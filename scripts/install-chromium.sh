#!/usr/bin/env bash
# Best effort: the browser test of report.html needs headless chromium. Where it cannot be
# installed (no root, no apt), that test skips and says why.
set -u
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "note: could not install chromium; browser tests will skip"
else
  echo "note: chromium not installed (needs root + apt-get); browser tests will skip"
fi
exit 0
