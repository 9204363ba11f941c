#!/bin/bash
# Start a district's SFTP drop box: accounts, directories and keys from the mounted
# Secret, then sshd with the rendered config (checked first with `sshd -t`).
#
# Every path comes from the environment (visitor_sync.sftp.server.entrypoint_environment
# renders it from the same settings as the sshd_config), so the tests run this very
# script against a temporary root. Idempotent: a restarted container finds the accounts,
# directories and files as it left them and only re-applies what the Secret says.
# Secrets are read from files and fed to chpasswd on stdin: never on a command line.
set -euo pipefail
umask 022

: "${SFTP_CONFIG:=/etc/visitor-sync/sshd_config}"
: "${SFTP_SECRETS:=/etc/visitor-sync/secrets}"
: "${SFTP_ROOT:=/srv/sftp}"
: "${SFTP_UPLOAD_DIRECTORY:=upload}"
: "${SFTP_UID:=10000}"
: "${SFTP_PASSWORD_LOGIN:=yes}"
: "${SFTP_DISTRICT_AUTHORIZED_KEYS:=}"
: "${SFTP_HOST_KEYS:?space-separated HostKey paths of the config}"
: "${SFTP_DISTRICT_USER:?the district account name}"
: "${SFTP_IMPORTER_USER:?the importer account name}"
: "${SFTP_IMPORTER_AUTHORIZED_KEYS:?the importer authorized_keys path of the config}"
: "${SFTP_SSHD:=/usr/sbin/sshd}"

NOLOGIN=/usr/sbin/nologin

fail() {
    echo "entrypoint: $*" >&2
    exit 1
}

log() {
    echo "entrypoint: $*" >&2
}

check_name() {
    [[ "$1" =~ ^[a-z_][a-z0-9_-]{0,30}$ ]] || fail "invalid user name: $1"
}

check_name "$SFTP_DISTRICT_USER"
check_name "$SFTP_IMPORTER_USER"
[[ "$SFTP_UID" =~ ^[0-9]+$ ]] && ((SFTP_UID >= 1000)) || fail "SFTP_UID must be a number >= 1000"
[[ -r "$SFTP_CONFIG" ]] || fail "no sshd config at $SFTP_CONFIG"

# -- accounts: the district's and the importer's, one uid (see docs/sftp.md) -----------

ensure_group() {
    local name=$1
    if ! getent group "$SFTP_UID" >/dev/null; then
        groupadd --gid "$SFTP_UID" "$name"
    fi
}

ensure_user() {
    local name=$1 home=$2 existing
    if existing=$(getent passwd "$name"); then
        [[ "$(cut -d: -f3 <<<"$existing")" == "$SFTP_UID" ]] \
            || fail "user $name exists with another uid"
        return
    fi
    # --non-unique: the importer is a second login name for the district's uid.
    useradd --non-unique --uid "$SFTP_UID" --gid "$SFTP_UID" --no-create-home \
        --home-dir "$home" --shell "$NOLOGIN" "$name"
}

ensure_group "$SFTP_DISTRICT_USER"
ensure_user "$SFTP_DISTRICT_USER" "/$SFTP_UPLOAD_DIRECTORY"
ensure_user "$SFTP_IMPORTER_USER" /

# '*' is "no password" but not "locked": with UsePAM no, sshd refuses even key logins
# to accounts whose password field starts with '!' (useradd's default).
if [[ "$SFTP_PASSWORD_LOGIN" == yes ]]; then
    [[ -s "$SFTP_SECRETS/district-password" ]] || fail "password login on, no district-password"
    password=$(<"$SFTP_SECRETS/district-password")
    [[ "$password" != *:* && "$password" != *$'\n'* ]] || fail "district-password has ':' or a newline"
    printf '%s:%s\n' "$SFTP_DISTRICT_USER" "$password" | chpasswd
    unset password
else
    usermod --password '*' "$SFTP_DISTRICT_USER"
fi
usermod --password '*' "$SFTP_IMPORTER_USER"

# -- directories: chroots root-owned and not writable, drop box and held area 0700 ------

# mkdir with the mode, then chown: chmod on a directory another uid owns would need
# CAP_FOWNER, which the container does not get.
ensure_directory() {
    local path=$1 owner=$2 mode=$3
    [[ -L "$path" ]] && fail "$path is a symbolic link"
    [[ -d "$path" ]] || mkdir -m "$mode" "$path"
    if [[ "$(stat -c %u:%g "$path")" != "$owner" ]]; then
        chown "$owner" "$path"
    fi
    if [[ "$(stat -c %a "$path")" != "${mode#0}" ]]; then
        chmod "$mode" "$path" || fail "cannot set mode $mode on $path"
    fi
}

mkdir -p "$SFTP_ROOT"
ensure_directory "$SFTP_ROOT" 0:0 0755
ensure_directory "$SFTP_ROOT/district" 0:0 0755
ensure_directory "$SFTP_ROOT/district/$SFTP_UPLOAD_DIRECTORY" "$SFTP_UID:$SFTP_UID" 0700
ensure_directory "$SFTP_ROOT/held" "$SFTP_UID:$SFTP_UID" 0700
ensure_directory "$SFTP_ROOT/dev" 0:0 0755
ensure_directory "$SFTP_ROOT/district/dev" 0:0 0755

# -- keys: root-owned copies of the Secret's files where the config expects them --------

install_secret() {
    local source=$1 target=$2 mode=$3
    [[ -s "$source" ]] || fail "missing secret file $source"
    mkdir -p "$(dirname "$target")"
    install -o root -g root -m "$mode" "$source" "$target"
}

for host_key in $SFTP_HOST_KEYS; do
    install_secret "$SFTP_SECRETS/$(basename "$host_key")" "$host_key" 0600
done
install_secret "$SFTP_SECRETS/importer-authorized-keys" "$SFTP_IMPORTER_AUTHORIZED_KEYS" 0644
if [[ -n "$SFTP_DISTRICT_AUTHORIZED_KEYS" ]]; then
    install_secret "$SFTP_SECRETS/district-authorized-keys" "$SFTP_DISTRICT_AUTHORIZED_KEYS" 0644
fi

# sshd's privilege separation directory (compiled in): root-owned, not writable.
mkdir -p /run/sshd
chmod 0755 /run/sshd

"$SFTP_SSHD" -t -f "$SFTP_CONFIG"

# The SFTP transaction log (audit): internal-sftp can only reach a /dev/log inside its
# chroot. The relay prints what arrives there; it keeps running beside sshd.
relay="${SFTP_SYSLOG_RELAY:-$(dirname "$(readlink -f "$0")")/syslog-relay.pl}"
sockets=("$SFTP_ROOT/dev/log" "$SFTP_ROOT/district/dev/log")
"$relay" "${sockets[@]}" &
for _ in $(seq 100); do
    [[ -S "${sockets[0]}" && -S "${sockets[1]}" ]] && break
    kill -0 $! 2>/dev/null || fail "the syslog relay did not start"
    sleep 0.05
done
[[ -S "${sockets[0]}" && -S "${sockets[1]}" ]] || fail "the syslog relay did not start"
log "configuration checked; starting sshd"
exec "$SFTP_SSHD" -D -e -f "$SFTP_CONFIG"
