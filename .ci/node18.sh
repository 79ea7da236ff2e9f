#!/usr/bin/env bash
# Installs Debian 12's own Node 18 (what the relay host runs) into .cache/node18 without replacing the system node,
# so test/relay/node18.test.ts can start the bundle under it. Idempotent. Runs as root (it writes /usr/share/nodejs).
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.cache/node18
node18="$dest/usr/bin/node"
libdir="$dest/usr/lib/x86_64-linux-gnu"

if [ -x "$node18" ] && LD_LIBRARY_PATH="$libdir" "$node18" --version 2>/dev/null | grep -q '^v18\.'; then
  # Debian's node 18 loads builtins (undici, acorn, cjs-module-lexer) from this absolute path: restore it if missing.
  [ -d /usr/share/nodejs/undici ] || cp -a "$dest/usr/share/nodejs/." /usr/share/nodejs/
  echo "node18: already installed: $(LD_LIBRARY_PATH="$libdir" "$node18" --version)"
  exit 0
fi

# The 18.x version Debian's archive offers (not NodeSource's), e.g. 18.20.4+dfsg-1~deb12u3.
apt-get update -qq || true
version=$(apt-cache madison nodejs | awk -F'|' '{gsub(/ /,"",$2); print $2}' | grep -E '^18\.' | head -n1)
if [ -z "$version" ]; then
  echo "node18: Debian's archive offers no nodejs 18.x; falling back to 18.20.4+dfsg-1~deb12u3" >&2
  version="18.20.4+dfsg-1~deb12u3"
fi
echo "node18: nodejs=$version from Debian's archive into $dest"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download -qq "nodejs=$version" libnode108 libc-ares2 node-cjs-module-lexer node-acorn node-undici)
mkdir -p "$dest"
for deb in "$work"/*.deb; do dpkg -x "$deb" "$dest"; done
mkdir -p /usr/share/nodejs
cp -a "$dest/usr/share/nodejs/." /usr/share/nodejs/
LD_LIBRARY_PATH="$libdir" "$node18" --version
