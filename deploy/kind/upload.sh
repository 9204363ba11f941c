#!/usr/bin/env bash
# Upload the sample district's files to its drop box, as the district would (`make upload`).
#
# The samples are the ones `visitor-sync demo` imports (every canonical file type, with
# a few deliberate mistakes), written to WORKDIR/inbox/. The login and the password come
# from the DistrictSync's status and its credentials Secret; the server's host key is
# accepted only if its fingerprint is one the operator published in
# status.sftp.hostKeyFingerprints (never trust on first use).
# Needs the OpenSSH client (sftp, ssh-keyscan, ssh-keygen) 8.4 or later.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
namespace="${NAMESPACE:-districts}"
district="${DISTRICT:-springfield}"
port="${SFTP_PORT:-2222}"
workdir="${WORKDIR:-$repo_root/build/kind-demo}"
read -r -a kubectl <<< "${KUBECTL:-kubectl}"

# The demo's sample writer needs only the standard library: no install required.
PYTHONPATH="$repo_root/importer" python3 -c 'import sys; from pathlib import Path
from visitor_sync.samples import write_district; write_district(Path(sys.argv[1]))' \
    "$workdir/inbox"
shopt -s nullglob
files=("$workdir"/inbox/*.csv)
if ((${#files[@]} == 0)); then
    echo "upload: no sample CSV files in $workdir/inbox" >&2
    exit 1
fi

status() {
    "${kubectl[@]}" -n "$namespace" get districtsync "$district" -o jsonpath="{.status.sftp.$1}"
}
user="$(status username)"
secret="$(status credentialsSecret)"
expected="$(status 'hostKeyFingerprints[*]')"
password="$("${kubectl[@]}" -n "$namespace" get secret "$secret" -o jsonpath='{.data.password}' | base64 -d)"

known_hosts="$workdir/known_hosts"
ssh-keyscan -p "$port" 127.0.0.1 2>/dev/null > "$known_hosts"
scanned="$(ssh-keygen -lf "$known_hosts" | awk '{print $2}')"
if [[ -z "$scanned" ]]; then
    echo "upload: no SFTP server answers on 127.0.0.1:$port (is the district Ready?)" >&2
    exit 1
fi
for fingerprint in $scanned; do
    if [[ " $expected " != *" $fingerprint "* ]]; then
        echo "upload: host key $fingerprint is not one the operator published ($expected)" >&2
        exit 1
    fi
done

# sftp -b would force BatchMode, which forbids passwords: commands go on stdin instead,
# and the password through SSH_ASKPASS (never on a command line).
askpass="$(mktemp)"
trap 'rm -f "$askpass"' EXIT
printf '#!/bin/sh\nprintf "%%s\\n" "$VISITOR_SYNC_DEMO_PASSWORD"\n' > "$askpass"
chmod 0700 "$askpass"
commands="$(printf 'put %q\n' "${files[@]}"; printf 'ls -1\n')"
listing="$(VISITOR_SYNC_DEMO_PASSWORD="$password" SSH_ASKPASS="$askpass" SSH_ASKPASS_REQUIRE=force \
    DISPLAY=:0 sftp -q -P "$port" -o UserKnownHostsFile="$known_hosts" \
    -o StrictHostKeyChecking=yes -o PubkeyAuthentication=no \
    -o PreferredAuthentications=password,keyboard-interactive \
    "$user@127.0.0.1" <<< "$commands")"
for file in "${files[@]}"; do
    if ! grep -qx "$(basename "$file")" <<< "$listing"; then
        echo "upload: $(basename "$file") is not on the server after the upload" >&2
        exit 1
    fi
done
echo "uploaded ${#files[@]} files as $user to sftp://127.0.0.1:$port/"

# A run leaves files changed within the district's quiet period in the drop box (they may
# still be uploading) and reports them as waiting. Wait it out here, so that the
# walkthrough's `make upload run` imports the files it just sent.
quiet="$("${kubectl[@]}" -n "$namespace" get districtsync "$district" \
    -o jsonpath='{.spec.safety.quietPeriodSeconds}')"
quiet="${quiet:-60}"
echo "waiting out the quiet period (spec.safety.quietPeriodSeconds: $quiet s) before a run reads them"
sleep "$((quiet + 1))"
