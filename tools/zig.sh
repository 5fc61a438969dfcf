#!/usr/bin/env bash
# Runs the pinned Zig toolchain with the given arguments, from the repo root.
#
#   bash tools/zig.sh build -Doptimize=ReleaseFast   # -> zig-out/lib/libpma.so
#   bash tools/zig.sh build test                     # Zig unit tests beside the code
#
# The one place the Zig version is pinned (build.zig.zon's minimum_zig_version
# must say the same). Uses `zig` on PATH when its version is exactly the pinned
# one, otherwise PyPI's `ziglang` wheel installed into the ignored folder
# `.zig/ziglang` (`python3 -m pip install --target`), run as `python3 -m ziglang`.
set -euo pipefail

ZIG_VERSION="0.15.2"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

if command -v zig >/dev/null 2>&1 && [ "$(zig version 2>/dev/null)" = "$ZIG_VERSION" ]; then
  exec zig "$@"
fi

target=".zig/ziglang"
installed_version() {
  PYTHONPATH="$target" python3 -m ziglang version 2>/dev/null || true
}
if [ "$(installed_version)" != "$ZIG_VERSION" ]; then
  echo "tools/zig.sh: installing ziglang==$ZIG_VERSION into $target" >&2
  rm -rf "$target"
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-deps \
    --target "$target" "ziglang==$ZIG_VERSION" >&2
  actual="$(installed_version)"
  if [ "$actual" != "$ZIG_VERSION" ]; then
    echo "tools/zig.sh: expected Zig $ZIG_VERSION after install, found '$actual'" >&2
    exit 1
  fi
fi

PYTHONPATH="$target" exec python3 -m ziglang "$@"
