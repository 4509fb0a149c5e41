#!/usr/bin/env bash
# Static checks of a built .rpm with rpm(8): file list, metadata, scriptlets, config files.
# Usage: tests/packaging/test_rpm.sh [PATH.rpm]   (default: the newest target/packages/genset-*.rpm)
# Needs `rpm` (apt-get install rpm).
set -euo pipefail
cd "$(dirname "$0")/../.."
RPM=${1:-$(ls -t target/packages/genset-*.rpm 2>/dev/null | head -n 1)}
[ -n "$RPM" ] && [ -f "$RPM" ] || { echo "FAIL no .rpm given and none in target/packages (run packaging/build.sh)"; exit 1; }
command -v rpm >/dev/null || { echo "FAIL rpm not found (apt-get install rpm)"; exit 1; }
fail=0
ok() { printf 'ok   %s\n' "$*"; }
bad() { printf 'FAIL %s\n' "$*"; fail=1; }
echo "checking $RPM"

files=$(rpm -qp --qf '[%{FILEMODES:perms} %{FILENAMES}\n]' "$RPM" 2>/dev/null)
has() { if grep -qx -- "$1 $2" <<<"$files"; then ok "$2 ($1)"; else bad "$2 with mode $1: $(grep -- " $2\$" <<<"$files" || echo missing)"; fi; }
has -rwxr-xr-x /usr/bin/gensetd
has -rwxr-xr-x /usr/bin/gensetctl
has -rwxr-xr-x /usr/lib/genset/genset-setup
has -rw-r--r-- /etc/genset/genset.toml
has -rw-r--r-- /usr/lib/systemd/system/gensetd.service
has -rw-r--r-- /usr/lib/sysusers.d/genset.conf
has -rw-r--r-- /usr/lib/tmpfiles.d/genset.conf
has -rw-r--r-- /usr/share/man/man8/gensetd.8.gz
has -rw-r--r-- /usr/share/man/man1/gensetctl.1.gz
has -rw-r--r-- /usr/share/bash-completion/completions/gensetctl
has -rw-r--r-- /usr/share/zsh/site-functions/_gensetctl
has -rw-r--r-- /usr/share/fish/vendor_completions.d/gensetctl.fish
has -rw-r--r-- /usr/share/doc/genset/packaging.md
has -rw-r--r-- /usr/share/doc/genset/third-party-licenses.txt

if rpm -qpc "$RPM" 2>/dev/null | grep -qx /etc/genset/genset.toml; then ok "config file: /etc/genset/genset.toml"; else bad "genset.toml is not a config file"; fi
if rpm -qp --qf '[%{FILENAMES} %{FILEFLAGS:fflags}\n]' "$RPM" 2>/dev/null | grep -q '^/etc/genset/genset.toml c.*n'; then ok "genset.toml is %config(noreplace)"; else bad "genset.toml is not noreplace"; fi
info=$(rpm -qpi "$RPM" 2>/dev/null)
grep -q '^Name *: genset' <<<"$info" && ok "Name: genset" || bad "Name: $(grep '^Name' <<<"$info")"
grep -q '^License *: Apache-2.0' <<<"$info" && ok "License: Apache-2.0" || bad "License"
req=$(rpm -qpR "$RPM" 2>/dev/null)
grep -q '^openssl' <<<"$req" && ok "Requires openssl" || bad "Requires lacks openssl: $req"
grep -q '^ca-certificates' <<<"$req" && ok "Requires ca-certificates" || bad "Requires lacks ca-certificates: $req"
grep -q '^libc.so.6' <<<"$req" && ok "Requires libc.so.6 (glibc: $(grep -o 'GLIBC_[0-9.]*' <<<"$req" | sort -V | tail -n 1))" || bad "Requires lacks libc.so.6"
scripts=$(rpm -qp --scripts "$RPM" 2>/dev/null)
grep -q '/usr/lib/genset/genset-setup' <<<"$scripts" && ok "%post runs genset-setup" || bad "%post does not run genset-setup"
grep -q 'disable --now gensetd.service' <<<"$scripts" && ok "%preun stops the service on erase" || bad "%preun"
grep -q 'try-restart gensetd.service' <<<"$scripts" && ok "%postun restarts the service after an upgrade" || bad "%postun"
exit $fail
