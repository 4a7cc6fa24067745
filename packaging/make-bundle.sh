#!/usr/bin/env bash
# Build the offline installation bundle, on a machine WITH a network:
#
#   packaging/make-bundle.sh OUT_DIR [PYTHON]
#
# OUT_DIR gets: wheels/ (spoolca and every dependency, as wheels for PYTHON's version and
# this machine's platform), systemd/ (the units, udev rule, sysusers file), docs/ (the
# guides, and the man pages spoolca(1) and spoolca.toml(5)),
# spoolca.toml.example, install.sh, PLATFORM (what the wheels are for) and SHA256SUMS.
# Copy OUT_DIR to the air-gapped host and run install.sh there as root: it never uses a
# network. PYTHON defaults to python3; use the target host's Python version (the wheels
# of cryptography are per Python ABI and platform). For another platform, see
# docs/operator/install.md.
set -euo pipefail
out=${1:?usage: packaging/make-bundle.sh OUT_DIR [PYTHON]}
python=${2:-python3}
repo=$(cd "$(dirname "$0")/.." && pwd)
rm -rf "$out"
mkdir -p "$out/wheels"
# Built from a scratch copy of the sources: setuptools writes build/ and *.egg-info into
# the tree it builds, so two bundles built at once from one checkout would collide (and
# the checkout would be left with build debris).
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
cp -r "$repo/pyproject.toml" "$repo/README.md" "$repo/spoolca" "$src/"
find "$src" -name __pycache__ -prune -exec rm -rf {} +
"$python" -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$out/wheels" "$src"
cp -r "$repo/systemd" "$out/systemd"
cp "$repo/config/spoolca.toml" "$out/spoolca.toml.example"
cp -r "$repo/docs" "$out/docs"   # the guides and man pages: the host has no browser
install -m 0755 "$repo/packaging/install.sh" "$out/install.sh"
"$python" -c 'import platform, sys, sysconfig
print(f"python {sys.version_info.major}.{sys.version_info.minor} "
      f"({sys.implementation.cache_tag}), {sysconfig.get_platform()}, {platform.libc_ver()[0]} "
      f"{platform.libc_ver()[1]}")' > "$out/PLATFORM"
(cd "$out" && find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort \
  | xargs -d '\n' sha256sum > SHA256SUMS)
echo "bundle in $out: $(ls "$out/wheels" | wc -l) wheels for $(cat "$out/PLATFORM"), $(du -sh "$out" | cut -f1)"
