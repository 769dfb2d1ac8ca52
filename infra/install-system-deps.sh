#!/usr/bin/env bash
# Install the system packages the local servers and the tests need, on Debian or Ubuntu:
#   openssh-server (sshd, ssh-keygen, ssh), influxdb (influxd), kcat,
#   openjdk-17-jre-headless (only when `java` is missing), maven (only when `mvn` is missing),
#   python3-venv (only when python3 cannot create a venv with pip).
# Idempotent: installs only what is missing and runs `apt-get update` once, only then.
# Uses sudo when not root. Python packages come from pyproject.toml, not from here.
set -euo pipefail

log() { printf 'install-system-deps: %s\n' "$*" >&2; }

have() { command -v "$1" >/dev/null 2>&1; }

# sshd lives in /usr/sbin, which is not on an ordinary user's PATH.
have_sbin() { have "$1" || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }

missing=()
have_sbin sshd || missing+=(openssh-server)
have ssh-keygen || missing+=(openssh-client)
have influxd || missing+=(influxdb)
have kcat || missing+=(kcat)
have java || missing+=(openjdk-17-jre-headless)
have mvn || missing+=(maven)
# Debian's python3 ships venv without ensurepip unless python3-venv is installed.
if have python3 && ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    missing+=(python3-venv)
fi

# Kafka 3.9 runs on Java 11+, the project tests with 17; an old `java` on PATH is only reported.
if have java; then
    java_major=$(java -XshowSettings:properties -version 2>&1 \
        | sed -n 's/^ *java.specification.version = \([0-9.]*\).*/\1/p' | head -1)
    if [ -n "$java_major" ] && [ "${java_major%%.*}" -lt 17 ] 2>/dev/null; then
        log "warning: java on PATH is version $java_major; Java 17 or newer is expected"
    fi
fi

if [ ${#missing[@]} -eq 0 ]; then
    log "all present: sshd, ssh-keygen, influxd, kcat, java, mvn"
    exit 0
fi

if ! have apt-get; then
    log "missing ${missing[*]}, and this is not a Debian/Ubuntu system (no apt-get); install them by hand"
    exit 1
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if ! have sudo; then
        log "missing ${missing[*]}; not root and no sudo to install them"
        exit 1
    fi
    sudo=(sudo)
fi

log "installing: ${missing[*]}"
log "running: apt-get update"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
log "running: apt-get install -y --no-install-recommends ${missing[*]}"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
log "done"
