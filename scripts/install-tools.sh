#!/usr/bin/env bash
# The system tools some tests check rendered files with or talk to, from Debian's packages:
# cloud-init (schema validator), caddy (caddy validate), autossh (unit ExecStart), openssh-server
# (a loopback sshd for the SSH port-forward test), shellcheck (actionlint checks the workflows' shell
# steps with it). Tests that need one skip with the reason where it
# is missing, so this is for CI and for anyone who wants every test to run. Needs root and apt-get.
set -euo pipefail
want=()
command -v cloud-init >/dev/null || want+=(cloud-init)
command -v caddy >/dev/null || want+=(caddy)
command -v autossh >/dev/null || want+=(autossh)
[ -x /usr/sbin/sshd ] || want+=(openssh-server)
command -v systemd-analyze >/dev/null || want+=(systemd)
command -v shellcheck >/dev/null || want+=(shellcheck)
if [ ${#want[@]} -eq 0 ]; then
    echo "system tools: all present"
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "system tools missing (${want[*]}): not root or no apt-get, the tests that need them will skip" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || true
apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
echo "system tools installed: ${want[*]}"
