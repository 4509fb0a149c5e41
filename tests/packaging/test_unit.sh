#!/usr/bin/env bash
# Checks of the systemd integration that need no package and no root: the unit passes
# `systemd-analyze verify`, carries the hardening the appliance promises, and its exposure
# score stays low; sysusers.d and tmpfiles.d parse; the maintainer scripts are valid sh.
# Usage: tests/packaging/test_unit.sh      (a second or two; needs systemd-analyze)
set -euo pipefail
cd "$(dirname "$0")/../.."
UNIT=packaging/systemd/gensetd.service
fail=0
ok() { printf 'ok   %s\n' "$*"; }
bad() { printf 'FAIL %s\n' "$*"; fail=1; }

command -v systemd-analyze >/dev/null || { echo "FAIL systemd-analyze not found (apt-get install systemd)"; exit 1; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT

# verify needs the ExecStart binary to exist: point the unit at a stand-in.
cp /bin/true "$T/gensetd"
sed "s#/usr/bin/gensetd#$T/gensetd#g" "$UNIT" > "$T/gensetd.service"
if out=$(systemd-analyze verify --man=no "$T/gensetd.service" 2>&1) && [ -z "$out" ]; then
  ok "systemd-analyze verify $UNIT"
else
  bad "systemd-analyze verify $UNIT: $out"
fi

for d in 'Type=notify' 'NotifyAccess=main' 'WatchdogSec=' 'TimeoutStopSec=' 'User=genset' \
         'ExecStartPre=/usr/bin/gensetd check-config --config /etc/genset/genset.toml' \
         'ExecReload=/usr/bin/gensetd check-config --config /etc/genset/genset.toml' \
         'ExecReload=/bin/kill -HUP $MAINPID' \
         'StateDirectory=genset' 'ConfigurationDirectory=genset' \
         'NoNewPrivileges=yes' 'ProtectSystem=strict' 'ProtectHome=yes' 'PrivateTmp=yes' \
         'CapabilityBoundingSet=' 'SystemCallFilter=@system-service' 'RestrictAddressFamilies=' \
         'DevicePolicy=closed' 'DeviceAllow=char-nvidia' '#LoadCredential=' '#LoadCredentialEncrypted='; do
  if grep -q -- "^$d" "$UNIT"; then ok "unit has $d"; else bad "unit lacks $d"; fi
done

score=$(systemd-analyze security --offline=yes "$T/gensetd.service" 2>/dev/null | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')
if [ -n "$score" ] && awk "BEGIN { exit !($score <= 2.5) }"; then
  ok "systemd-analyze security exposure $score (<= 2.5)"
else
  bad "systemd-analyze security exposure ${score:-unknown} (want <= 2.5)"
fi

# sysusers.d: a dry run into an empty root creates the genset user and group.
mkdir -p "$T/root/etc" "$T/root/usr/lib/sysusers.d"
: > "$T/root/etc/passwd"; : > "$T/root/etc/group"
cp packaging/systemd/sysusers.d/genset.conf "$T/root/usr/lib/sysusers.d/"
if systemd-sysusers --root="$T/root" >/dev/null 2>&1 \
   && grep -q '^genset:x:[0-9]*:[0-9]*:genset appliance daemon:/var/lib/genset:' "$T/root/etc/passwd"; then
  ok "sysusers.d/genset.conf creates the genset user"
else
  bad "sysusers.d/genset.conf: $(cat "$T/root/etc/passwd" 2>/dev/null)"
fi

# tmpfiles.d: every line names a path, mode and owner.
if awk '!/^#/ && NF { if (NF < 5 || $1 != "d") exit 1 }' packaging/systemd/tmpfiles.d/genset.conf; then
  ok "tmpfiles.d/genset.conf lines are well formed"
else
  bad "tmpfiles.d/genset.conf has a malformed line"
fi

for s in packaging/scripts/genset-setup packaging/debian/postinst packaging/debian/postrm packaging/rpm/*.sh; do
  if sh -n "$s"; then ok "sh -n $s"; else bad "sh -n $s"; fi
done
[ -x packaging/scripts/genset-setup ] && ok "genset-setup is executable" || bad "genset-setup is not executable"

exit $fail
