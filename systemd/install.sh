#!/bin/sh
# Install the edge-inspect systemd units on this machine (run as root), or into an image tree with --root DIR.
#
#   sudo systemd/install.sh                 # user, units, config, credentials; enable and start
#   sudo systemd/install.sh --no-start      # ... enable only
#   systemd/install.sh --root /tmp/image    # lay the files out under an image root (no running systemd needed)
#
# Expects the application in $PREFIX (default /opt/edge-inspect, with its virtual environment in .venv, e.g.
# `python3 -m venv /opt/edge-inspect/.venv && /opt/edge-inspect/.venv/bin/pip install edge-inspect`).
# Environment: PREFIX, MQTT_PASSWORD_FILE (a file holding the broker password to install as a credential).
# Existing config and credentials are never overwritten.
set -eu

ROOT=/
START=yes
PREFIX=${PREFIX:-/opt/edge-inspect}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
UNITS="edge-inspect.service edge-inspect-recalibrate.service edge-inspect-recalibrate.path"

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit "$1"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --root) [ $# -ge 2 ] || usage 2; ROOT=$2; shift 2 ;;
        --root=*) ROOT=${1#--root=}; shift ;;
        --no-start) START=no; shift ;;
        -h|--help) usage 0 ;;
        *) echo "install.sh: unknown argument '$1'" >&2; usage 2 ;;
    esac
done

if [ "$ROOT" = / ] && [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (or pass --root DIR to install into an image tree)" >&2
    exit 1
fi
ROOT=${ROOT%/}
UNIT_DIR=$ROOT/etc/systemd/system
CONF_DIR=$ROOT/etc/edge-inspect
CRED_DIR=$CONF_DIR/credentials

install_units() {
    install -d -m 0755 "$UNIT_DIR"
    for unit in $UNITS; do
        # the units name /opt/edge-inspect; follow PREFIX when it differs
        sed "s|/opt/edge-inspect/|$PREFIX/|g" "$HERE/$unit" > "$UNIT_DIR/$unit.tmp"
        chmod 0644 "$UNIT_DIR/$unit.tmp"
        mv -f "$UNIT_DIR/$unit.tmp" "$UNIT_DIR/$unit"
    done
    install -d -m 0755 "$ROOT/usr/lib/sysusers.d"
    install -m 0644 "$HERE/edge-inspect.sysusers" "$ROOT/usr/lib/sysusers.d/edge-inspect.conf"
}

install_config() {
    install -d -m 0750 "$CONF_DIR"
    if [ ! -e "$CONF_DIR/config.yaml" ]; then
        install -m 0640 "$REPO/examples/config.yaml" "$CONF_DIR/config.yaml"
        echo "installed an example config: edit $CONF_DIR/config.yaml (model path, cameras, broker)"
    fi
}

install_credentials() {
    # root-only; systemd copies them into each service's private $CREDENTIALS_DIRECTORY (LoadCredential=)
    install -d -m 0700 "$CRED_DIR"
    if [ ! -e "$CRED_DIR/commands.hmac_key" ]; then
        (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > "$CRED_DIR/commands.hmac_key")
        echo "generated a command HMAC key in $CRED_DIR/commands.hmac_key: give the same key to the HMIs"
    fi
    if [ ! -e "$CRED_DIR/mqtt.password" ]; then
        if [ -n "${MQTT_PASSWORD_FILE:-}" ]; then
            install -m 0600 "$MQTT_PASSWORD_FILE" "$CRED_DIR/mqtt.password"
        else
            (umask 077 && : > "$CRED_DIR/mqtt.password")
            echo "note: $CRED_DIR/mqtt.password is empty (fine without mqtt.username; else put the password there)"
        fi
    fi
}

create_user() {
    if [ "$ROOT" = "" ]; then
        systemd-sysusers edge-inspect.conf
    else
        systemd-sysusers --root="$ROOT" edge-inspect.conf \
            || echo "note: could not create the user under $ROOT; systemd-sysusers does it at first boot"
    fi
}

enable_units() {
    if [ "$ROOT" = "" ]; then
        systemctl daemon-reload
        if [ "$START" = yes ]; then
            systemctl enable --now edge-inspect.service edge-inspect-recalibrate.path
        else
            systemctl enable edge-inspect.service edge-inspect-recalibrate.path
        fi
    else
        systemctl --root="$ROOT" enable edge-inspect.service edge-inspect-recalibrate.path
    fi
}

if [ ! -x "$ROOT$PREFIX/.venv/bin/edge-inspect" ]; then
    echo "warning: $ROOT$PREFIX/.venv/bin/edge-inspect does not exist yet; install the application there" >&2
fi
install_units
install_config
install_credentials
create_user
enable_units
echo "installed $UNITS under $UNIT_DIR"
echo "run model store commands as the service user, e.g.: sudo -u edge-inspect $PREFIX/.venv/bin/edge-inspect" \
     "model list --state-dir /var/lib/edge-inspect"
