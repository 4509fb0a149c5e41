# genset %post ($1: 1 on install, 2 on upgrade): the user, directories, admin token and
# console TLS pair (see /usr/lib/genset/genset-setup), then systemd's view of the unit.
# RPM convention (%systemd_post): the unit is enabled on first install only when the
# system's presets say so; start it with `systemctl enable --now gensetd`.
/usr/lib/genset/genset-setup
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -eq 1 ]; then
        systemctl --no-reload preset gensetd.service >/dev/null 2>&1 || :
    fi
fi
