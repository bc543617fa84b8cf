#!/usr/bin/env bash
# Make Podman's Docker-compatible API available for the test suite:
#
#   eval "$(bash .ci/podman.sh)"        # sets DOCKER_HOST for this shell
#   python -m pytest tests -p no:cacheprovider
#
#   1. install podman with apt-get when it is missing (non-interactive)
#   2. make sure /etc/containers/containers.conf sets [containers] default_ulimits
#      (without it runc fails to start containers on rlimits); an existing file
#      is only added to, an existing default_ulimits is left alone
#   3. start `podman system service --time=0 unix://$SOCK` fully detached
#      (own session, fds on a log file) unless the socket already answers
#   4. copy the local test images from Docker into Podman (`docker save | podman
#      load`) when Podman lacks them or has another build, and make the names
#      the Docker API resolves point at them (nothing is ever pulled)
#   5. print `export DOCKER_HOST=unix://$SOCK` as the last line on stdout
#
# Everything else goes to stderr, so `eval "$(bash .ci/podman.sh)"` works.
# Idempotent: a rerun with the service up and the images loaded takes ~1 s.
# Docker itself is only read from (docker save), never changed.
#
# Environment:
#   PODMAN_SOCK         socket path (default /run/pytest-dockervol-podman.sock)
#   PODMAN_LOG          service log (default /tmp/pytest-dockervol-podman.log)
#   SOURCE_DOCKER_HOST  the Docker engine to copy images from
#                       (default unix:///var/run/docker.sock; an exported
#                       DOCKER_HOST pointing at Podman is ignored for this)
set -euo pipefail

SOCK="${PODMAN_SOCK:-/run/pytest-dockervol-podman.sock}"
LOG="${PODMAN_LOG:-/tmp/pytest-dockervol-podman.log}"
PIDFILE="${SOCK%.sock}.pid"
CONF=/etc/containers/containers.conf
ULIMITS='default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]'
SOURCE_DOCKER_HOST="${SOURCE_DOCKER_HOST:-unix:///var/run/docker.sock}"
IMAGES=(pytest-dockervol-test/busybox:latest pytest-dockervol-test/empty:latest)
WAIT_SECONDS=60

case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/sbin:/sbin" ;; esac
export PATH

START=$SECONDS
log() { printf '==> [%3ds] podman.sh: %s\n' "$((SECONDS - START))" "$*" >&2; }
die() { printf 'podman.sh: error: %s\n' "$*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || die "run as root (installs packages, writes $CONF, serves $SOCK)"

# --- 1. packages -----------------------------------------------------------------
pkgs=()
command -v podman >/dev/null 2>&1 || pkgs+=(podman)
command -v curl >/dev/null 2>&1 || pkgs+=(curl)
if [[ ${#pkgs[@]} -eq 0 ]]; then
    log "podman $(podman --version | awk '{print $3}') already installed"
else
    command -v apt-get >/dev/null 2>&1 || die "${pkgs[*]} missing and apt-get is not available"
    log "installing ${pkgs[*]} with apt-get"
    apt_opts=(-q -o DPkg::Lock::Timeout=300)
    env DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=l \
        apt-get update "${apt_opts[@]}" </dev/null >&2
    env DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=l \
        apt-get install -y "${apt_opts[@]}" \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${pkgs[@]}" </dev/null >&2
    hash -r
    command -v podman >/dev/null 2>&1 || die "apt-get installed podman but it is not on PATH"
fi

# --- 2. containers.conf ----------------------------------------------------------
if [[ ! -e "$CONF" ]]; then
    log "creating $CONF with [containers] $ULIMITS"
    mkdir -p "$(dirname "$CONF")"
    printf '# Written by pytest-dockervol .ci/podman.sh: without default_ulimits runc\n# fails to start containers on rlimits on this kind of machine.\n[containers]\n%s\n' \
        "$ULIMITS" >"$CONF"
elif grep -Eq '^[[:space:]]*default_ulimits[[:space:]]*=' "$CONF"; then
    log "$CONF already sets default_ulimits, leaving it alone"
elif grep -Eq '^[[:space:]]*\[containers\][[:space:]]*(#.*)?$' "$CONF"; then
    log "adding $ULIMITS to the [containers] table of $CONF"
    tmp="$(mktemp "$CONF.XXXXXX")"
    awk -v line="$ULIMITS" '
        { print }
        !done && /^[[:space:]]*\[containers\][[:space:]]*(#.*)?$/ { print line; done = 1 }
    ' "$CONF" >"$tmp"
    chmod --reference="$CONF" "$tmp"
    mv -f "$tmp" "$CONF"
else
    log "appending a [containers] table with $ULIMITS to $CONF"
    printf '\n[containers]\n%s\n' "$ULIMITS" >>"$CONF"
fi

# --- 3. service ------------------------------------------------------------------
answers() { curl -sf --max-time 5 --unix-socket "$SOCK" http://d/_ping 2>/dev/null | grep -q OK; }
service_pid() {
    local pid
    pid="$(cat "$PIDFILE" 2>/dev/null || true)"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null &&
        [[ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" == podman ]]; then
        echo "$pid"
    fi
}

# conmon inherits the service's working directory and cannot start a container once that
# directory is gone (a deleted checkout): such a service is restarted, and new ones run in /.
pid="$(service_pid)"
if [[ -n "$pid" ]] && [[ "$(readlink "/proc/$pid/cwd" 2>/dev/null || true)" == *" (deleted)" ]]; then
    log "podman service (pid $pid) runs in a deleted directory; restarting it"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
fi

if answers; then
    log "podman service already answers at $SOCK"
else
    pid="$(service_pid)"
    if [[ -n "$pid" ]]; then
        log "podman service (pid $pid) runs but does not answer yet; waiting for it"
    else
        [[ -S "$SOCK" ]] && { log "removing the stale socket $SOCK"; rm -f -- "$SOCK"; }
        log "starting podman system service at $SOCK (log: $LOG)"
        echo "---- $(date -u +%FT%TZ) .ci/podman.sh: podman system service --time=0 unix://$SOCK" >>"$LOG"
        # setsid + every fd on the log or /dev/null: the service survives this script
        # and never holds a CI output pipe open.
        (cd / && exec setsid nohup podman system service --time=0 "unix://$SOCK" >>"$LOG" 2>&1 </dev/null) &
        pid=$!
        disown "$pid" 2>/dev/null || true
        echo "$pid" >"$PIDFILE"
    fi
    t0=$SECONDS
    until answers; do
        if [[ $((SECONDS - t0)) -ge $WAIT_SECONDS ]]; then
            tail -n 40 "$LOG" >&2 || true
            die "podman service did not answer at $SOCK within ${WAIT_SECONDS}s"
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 40 "$LOG" >&2 || true
            die "podman system service exited during startup"
        fi
        sleep 0.2
    done
    log "podman service answers at $SOCK after ~$((SECONDS - t0))s (pid $pid)"
fi

# --- 4. images -------------------------------------------------------------------
source_docker() { env -u DOCKER_CONTEXT DOCKER_HOST="$SOURCE_DOCKER_HOST" docker "$@"; }
# What a Docker API client gets for NAME from the Podman service: the image id, or nothing.
api_image_id() {
    curl -sf --max-time 10 --unix-socket "$SOCK" "http://d/images/$1/json" 2>/dev/null |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["Id"])' 2>/dev/null || true
}

for image in "${IMAGES[@]}"; do
    want="$(source_docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"
    if [[ -z "$want" ]]; then
        log "$image missing in Docker ($SOURCE_DOCKER_HOST); building it there first"
        DOCKER_HOST="$SOURCE_DOCKER_HOST" bash "$(dirname -- "${BASH_SOURCE[0]}")/build-images.sh" >&2
        want="$(source_docker image inspect --format '{{.Id}}' "$image")"
    fi
    have="$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"
    if [[ "sha256:$have" == "$want" || "$have" == "$want" ]]; then
        log "$image already in podman (${want:7:12})"
    else
        log "copying $image from Docker into podman (docker save | podman load)"
        source_docker save "$image" | podman load >&2
    fi
    # The compat API may resolve a short name to docker.io/NAME rather than the
    # localhost/NAME that `podman load` gives: make both names point at the image.
    if [[ "$(api_image_id "$image")" != "$want" ]]; then
        log "tagging docker.io/$image so the Docker API resolves $image"
        podman tag "$image" "docker.io/$image"
    fi
    [[ "$(api_image_id "$image")" == "$want" ]] ||
        die "the Docker API at $SOCK does not resolve $image to ${want} (got '$(api_image_id "$image")')"
done

log "ready in $((SECONDS - START))s; use: export DOCKER_HOST=unix://$SOCK"
echo "export DOCKER_HOST=unix://$SOCK"
