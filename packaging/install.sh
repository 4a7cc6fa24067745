#!/usr/bin/env bash
# Install spoolca on the air-gapped host from this bundle, as root. No network is used:
# pip takes only the wheels beside this script (--no-index). Then follow
# docs/operator/systemd.md (also `man spoolca` and /usr/local/share/doc/spoolca/ once
# installed), from step 2: the CA, the credential, the unit.
#
#   ./install.sh            installs into /opt/spoolca (SPOOLCA_PREFIX to change it)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
prefix=${SPOOLCA_PREFIX:-/opt/spoolca}
python=${PYTHON:-/usr/bin/python3}
cd "$here"
sha256sum --quiet --strict -c SHA256SUMS   # a damaged or altered bundle stops here
"$python" -m venv "$prefix"
"$prefix/bin/pip" install --quiet --no-index --disable-pip-version-check \
  --find-links "$here/wheels" spoolca
ln -sf "$prefix/bin/spoolca" /usr/local/bin/spoolca
install -m 0644 systemd/spoolca.sysusers /usr/lib/sysusers.d/spoolca.conf
systemd-sysusers
install -m 0644 systemd/spoolca.service systemd/spoolca-media@.service /etc/systemd/system/
install -D -m 0644 systemd/99-spoolca-media.rules /etc/udev/rules.d/99-spoolca-media.rules
install -D -m 0644 docs/man/spoolca.1 /usr/local/share/man/man1/spoolca.1
install -D -m 0644 docs/man/spoolca.toml.5 /usr/local/share/man/man5/spoolca.toml.5
mkdir -p /usr/local/share/doc/spoolca
cp -r docs/. /usr/local/share/doc/spoolca/   # the guides, readable without a network
command -v mandb >/dev/null && mandb -q 2>/dev/null || true   # `man -k spoolca` finds it
# The running systemd learns of the units; an image being built in a chroot has none yet
# (appliance/build), and its systemd reads them at boot.
if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
echo "spoolca $("$prefix/bin/spoolca" --version | cut -d' ' -f2) installed in $prefix"
