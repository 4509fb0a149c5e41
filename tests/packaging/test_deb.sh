#!/usr/bin/env bash
# Static checks of a built .deb: what it contains, with which modes, its conffiles,
# dependencies and maintainer scripts. Builds nothing, installs nothing, needs no root.
# Usage: tests/packaging/test_deb.sh [PATH.deb]   (default: the newest target/packages/genset_*.deb)
set -euo pipefail
cd "$(dirname "$0")/../.."
DEB=${1:-$(ls -t target/packages/genset_*.deb 2>/dev/null | head -n 1)}
[ -n "$DEB" ] && [ -f "$DEB" ] || { echo "FAIL no .deb given and none in target/packages (run packaging/build.sh)"; exit 1; }
fail=0
ok() { printf 'ok   %s\n' "$*"; }
bad() { printf 'FAIL %s\n' "$*"; fail=1; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
echo "checking $DEB"

dpkg-deb -c "$DEB" | awk '{ print $1, $6 }' | sed 's#^\(\S*\) \./#\1 /#' > "$T/files"
has() { # MODE PATH
  if grep -qx -- "$1 $2" "$T/files"; then ok "$2 ($1)"; else bad "$2 with mode $1: $(grep -- " $2\$" "$T/files" || echo missing)"; fi
}
has -rwxr-xr-x /usr/bin/gensetd
has -rwxr-xr-x /usr/bin/gensetctl
has -rwxr-xr-x /usr/lib/genset/genset-setup
has -rw-r--r-- /etc/genset/genset.toml
has -rw-r--r-- /usr/lib/systemd/system/gensetd.service
has -rw-r--r-- /usr/lib/sysusers.d/genset.conf
has -rw-r--r-- /usr/lib/tmpfiles.d/genset.conf
has -rw-r--r-- /usr/share/man/man8/gensetd.8.gz
has -rw-r--r-- /usr/share/man/man1/gensetctl.1.gz
has -rw-r--r-- /usr/share/man/man1/gensetctl-provision.1.gz
has -rw-r--r-- /usr/share/bash-completion/completions/gensetctl
has -rw-r--r-- /usr/share/zsh/vendor-completions/_gensetctl
has -rw-r--r-- /usr/share/fish/vendor_completions.d/gensetctl.fish
has -rw-r--r-- /usr/share/doc/genset/copyright
has -rw-r--r-- /usr/share/doc/genset/README.md
has -rw-r--r-- /usr/share/doc/genset/packaging.md
has -rw-r--r-- /usr/share/doc/genset/provisioning.md
has -rw-r--r-- /usr/share/doc/genset/configuration.md
has -rw-r--r-- /usr/share/doc/genset/third-party-licenses.txt
has -rw-r--r-- /usr/share/doc/genset/examples/bundle/manifest.toml
if grep -q ' /var/lib/genset' "$T/files"; then bad "the package ships files in /var/lib/genset (state is created at install)"; else ok "no files in /var/lib/genset"; fi
if grep -q 'admin.token\|/etc/genset/tls/' "$T/files"; then bad "the package ships a token or TLS key"; else ok "no token or key in the package"; fi

dpkg-deb -e "$DEB" "$T/control"
if [ "$(cat "$T/control/conffiles")" = "/etc/genset/genset.toml" ]; then ok "conffiles: /etc/genset/genset.toml"; else bad "conffiles: $(cat "$T/control/conffiles")"; fi
dep=$(sed -n 's/^Depends: //p' "$T/control/control")
for d in libc6 openssl ca-certificates; do
  if echo "$dep" | grep -q "\b$d\b"; then ok "Depends on $d"; else bad "Depends lacks $d: $dep"; fi
done

# postinst: our setup, then the generated systemd snippets (enable, restart on upgrade).
p=$T/control/postinst
grep -q '^        /usr/lib/genset/genset-setup' "$p" && ok "postinst runs genset-setup" || bad "postinst does not run genset-setup"
grep -q 'deb-systemd-helper.*enable.*gensetd.service\|deb-systemd-helper unmask .gensetd.service' "$p" && ok "postinst enables gensetd.service" || bad "postinst does not enable gensetd.service"
grep -q '_dh_action=restart' "$p" && grep -q 'deb-systemd-invoke $_dh_action gensetd.service' "$p" && ok "postinst starts gensetd.service, restarts it on upgrade" || bad "postinst does not (re)start gensetd.service"
# cargo-deb's sysusers snippet calls systemd-sysusers: the package must depend on it.
if grep -q 'systemd-sysusers' "$p"; then
  echo "$dep" | grep -q 'systemd | systemd-standalone-sysusers' && ok "Depends provides systemd-sysusers for the postinst" || bad "postinst calls systemd-sysusers, Depends lacks it: $dep"
fi
r=$T/control/postrm
awk '/purge\)/,/;;/' "$r" | grep -q 'rm -rf /var/lib/genset' && ok "postrm purge removes /var/lib/genset" || bad "postrm purge keeps /var/lib/genset"
awk '/purge\)/,/;;/' "$r" | grep -q 'admin.token' && ok "postrm purge removes the admin token" || bad "postrm purge keeps the admin token"
if [ -f "$T/control/prerm" ] && grep -q 'deb-systemd-invoke stop' "$T/control/prerm" \
   && ! grep -B1 'deb-systemd-invoke stop' "$T/control/prerm" | head -n 1 | grep -q '"$1" = remove'; then
  bad "prerm stops the service on upgrade too (restart-after-upgrade wanted)"
else
  ok "prerm stops the service on remove only (an upgrade restarts it)"
fi
for s in "$T"/control/{postinst,postrm,prerm,preinst}; do
  [ -f "$s" ] || continue
  sh -n "$s" && ok "sh -n $(basename "$s")" || bad "sh -n $(basename "$s")"
done

# The binaries run and the man pages render.
dpkg-deb -x "$DEB" "$T/root"
"$T/root/usr/bin/gensetd" --version >/dev/null && ok "gensetd --version" || bad "gensetd --version"
"$T/root/usr/bin/gensetd" check-config --config "$T/root/etc/genset/genset.toml" 2>/dev/null && ok "the shipped genset.toml passes check-config" || bad "the shipped genset.toml fails check-config"
"$T/root/usr/bin/gensetctl" provision --help | grep -q -- '--dry-run' && ok "gensetctl provision --help" || bad "gensetctl provision --help"
zcat "$T/root/usr/share/man/man8/gensetd.8.gz" | grep -q '^\.TH GENSETD 8' && ok "gensetd.8 is a man page" || bad "gensetd.8"
exit $fail
