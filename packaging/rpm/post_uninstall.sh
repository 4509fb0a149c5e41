# genset %postun ($1: 0 on erase, 1 on upgrade): restart a running service after an
# upgrade. Erasing keeps /etc/genset (changed files as .rpmsave) and /var/lib/genset:
# remove them by hand to delete the recorded traffic and the models.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart gensetd.service >/dev/null 2>&1 || :
    fi
fi
