#!/usr/bin/env bash
# Start a Docker 26.1 engine (API 1.45) beside the machine's Docker 20.10, for the CI passes
# on a modern engine:
#
#   eval "$(bash .ci/docker26.sh)"                  # DOCKER_HOST and PATH for this shell
#   eval "$(bash .ci/docker26.sh --min-api=1.44)"   # refuses clients below API 1.44,
#                                                   # as Docker 29.0-29.2 do
#
#   1. download docker.io, docker-cli and containerd from Debian trixie into $BASE/debs,
#      once, with an apt state of its own: trixie's sources are a file passed with
#      -o Dir::Etc::sourceparts=..., never added to the system's sources
#   2. unpack them with dpkg-deb -x into $BASE/root (the machine's runc and docker-init
#      serve them; trixie's dockerd needs only glibc 2.34)
#   3. start that dockerd, fully detached, with its own data root, exec root, unix socket
#      and bridge, --iptables=false, the unpacked containerd first on its PATH
#      (--min-api: one more instance, with DOCKER_MIN_API_VERSION in its environment)
#   4. copy the local test images from the machine's engine (docker save | docker load)
#      where the instance lacks them or has another build; nothing is ever pulled
#   5. print `export DOCKER_HOST=...`, `export DOCKER26_BIN=...` (its binaries) and
#      `export PATH=...` (those first) on stdout
#
# Everything else goes to stderr. Idempotent: a rerun with the engine up and the images
# loaded takes about a second. The machine's engine is only read from (docker save).
#
# Environment:
#   DOCKER26_BASE       downloads and unpacked packages (default /var/cache/pytest-dockervol/docker26)
#   SOURCE_DOCKER_HOST  the engine to copy images from (default unix:///var/run/docker.sock)
#   DOCKER26_IMAGES     images to copy (default: busybox, empty and, without --min-api,
#                       the examples' postgres if the machine's engine has it)
set -euo pipefail

BASE="${DOCKER26_BASE:-/var/cache/pytest-dockervol/docker26}"
SOURCE_DOCKER_HOST="${SOURCE_DOCKER_HOST:-unix:///var/run/docker.sock}"
PACKAGES=(docker.io docker-cli containerd)
WAIT_SECONDS=60

min_api=""
for arg in "$@"; do
    case "$arg" in
        --min-api=*) min_api="${arg#--min-api=}" ;;
        -h|--help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "docker26.sh: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

# One instance per mode: its own data, socket and bridge (two dockerds never share one).
if [[ -z "$min_api" ]]; then
    NAME=docker26 BRIDGE=pdv26 BRIDGE_ADDRESS=10.232.0.1/24
else
    NAME=docker26-minapi BRIDGE=pdv26min BRIDGE_ADDRESS=10.233.0.1/24
fi
DATA="/var/lib/pytest-dockervol-$NAME"
EXEC="/run/pytest-dockervol-$NAME"
SOCK="/run/pytest-dockervol-$NAME.sock"
PIDFILE="/run/pytest-dockervol-$NAME.pid"
LOG="/tmp/pytest-dockervol-$NAME.log"
HOST="unix://$SOCK"
ROOT="$BASE/root"
BIN="$ROOT/usr/bin:$ROOT/usr/sbin"

case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/sbin:/sbin" ;; esac
export PATH

START=$SECONDS
log() { printf '==> [%3ds] docker26.sh (%s): %s\n' "$((SECONDS - START))" "$NAME" "$*" >&2; }
die() { printf 'docker26.sh: error: %s\n' "$*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || die "run as root (starts dockerd, makes a bridge)"

# --- 1, 2. packages, unpacked ------------------------------------------------------
if [[ -x "$ROOT/usr/sbin/dockerd" && -x "$ROOT/usr/bin/containerd" && -x "$ROOT/usr/bin/docker" ]]; then
    log "Docker $("$ROOT/usr/sbin/dockerd" --version | awk '{print $3}' | tr -d ,) already unpacked in $ROOT"
else
    command -v apt-get >/dev/null 2>&1 || die "apt-get is needed to download Debian trixie's docker.io"
    mkdir -p "$BASE/sources" "$BASE/lists/partial" "$BASE/cache/archives/partial" "$BASE/debs"
    cat >"$BASE/sources/trixie.sources" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    # A private apt state: the system's sources, lists and locks are not touched.
    apt_opts=(
        -q
        -o "Dir::Etc::sourcelist=/dev/null"
        -o "Dir::Etc::sourceparts=$BASE/sources"
        -o "Dir::State::Lists=$BASE/lists"
        -o "Dir::Cache=$BASE/cache"
        -o "Debug::NoLocking=1"
        -o "APT::Sandbox::User=root"
    )
    log "downloading ${PACKAGES[*]} from Debian trixie into $BASE/debs"
    apt-get "${apt_opts[@]}" update </dev/null >&2
    (cd "$BASE/debs" && rm -f ./*.deb && apt-get "${apt_opts[@]}" download "${PACKAGES[@]}" </dev/null >&2)
    rm -rf "$ROOT.new"
    mkdir -p "$ROOT.new"
    for deb in "$BASE/debs"/*.deb; do dpkg-deb -x "$deb" "$ROOT.new"; done
    rm -rf "$ROOT"
    mv "$ROOT.new" "$ROOT"
    log "unpacked Docker $("$ROOT/usr/sbin/dockerd" --version | awk '{print $3}' | tr -d ,) into $ROOT"
fi
command -v runc >/dev/null 2>&1 || die "runc missing (the machine's docker.io brings it)"

# --- 3. the engine -------------------------------------------------------------------
answers() { DOCKER_HOST="$HOST" timeout 10 "$ROOT/usr/bin/docker" version >/dev/null 2>&1; }
running_pid() {
    local pid
    pid="$(cat "$PIDFILE" 2>/dev/null || true)"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then echo "$pid"; fi
}
running_min_api() {
    tr '\0' '\n' <"/proc/$1/environ" 2>/dev/null | sed -n 's/^DOCKER_MIN_API_VERSION=//p'
}

pid="$(running_pid)"
if [[ -n "$pid" && "$(running_min_api "$pid")" != "$min_api" ]]; then
    log "dockerd (pid $pid) runs with another DOCKER_MIN_API_VERSION; restarting it"
    kill "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    pid=""
fi
if [[ -n "$pid" ]] && answers; then
    log "dockerd (pid $pid) already answering at $HOST"
else
    if [[ ! -e "/sys/class/net/$BRIDGE" ]]; then
        ip link add "$BRIDGE" type bridge
        ip addr add "$BRIDGE_ADDRESS" dev "$BRIDGE"
    fi
    ip link set "$BRIDGE" up
    mkdir -p "$DATA" "$EXEC"
    env_args=(PATH="$BIN:$PATH")
    [[ -n "$min_api" ]] && env_args+=(DOCKER_MIN_API_VERSION="$min_api")
    log "starting $("$ROOT/usr/sbin/dockerd" --version) at $HOST${min_api:+ (DOCKER_MIN_API_VERSION=$min_api)}, log $LOG"
    echo "---- $(date -u +%FT%TZ) docker26.sh" >>"$LOG"
    # setsid and every fd on the log: the daemon outlives this script and CI's pipes.
    # In /: a daemon must not keep a checkout as its working directory.
    (cd / && exec setsid env "${env_args[@]}" "$ROOT/usr/sbin/dockerd" \
        --data-root="$DATA" --exec-root="$EXEC" --pidfile="$PIDFILE" --host="$HOST" \
        --bridge="$BRIDGE" --iptables=false --ip6tables=false \
        >>"$LOG" 2>&1 </dev/null) &
    disown $! 2>/dev/null || true
    t0=$SECONDS
    until answers; do
        if [[ $((SECONDS - t0)) -ge $WAIT_SECONDS ]]; then
            tail -n 30 "$LOG" >&2 || true
            die "dockerd did not answer at $HOST within ${WAIT_SECONDS}s"
        fi
        sleep 0.5
    done
    log "up after ~$((SECONDS - t0))s"
fi

if [[ -n "$min_api" ]]; then
    # The point of this instance: an old client is refused, as by Docker 29.0-29.2.
    refused="$(curl -s --unix-socket "$SOCK" "http://localhost/v1.41/version" || true)"
    grep -q "too old" <<<"$refused" ||
        die "the instance answers API 1.41 clients (DOCKER_MIN_API_VERSION=$min_api has no effect): $refused"
    log "refuses API 1.41 clients: $refused"
fi

# --- 4. images -------------------------------------------------------------------------
if [[ -n "${DOCKER26_IMAGES:-}" ]]; then
    read -r -a images <<<"$DOCKER26_IMAGES"
else
    images=(pytest-dockervol-test/busybox:latest pytest-dockervol-test/empty:latest)
    # The examples' PostgreSQL image: only the full pass runs the examples.
    postgres="${DOCKERVOL_POSTGRES_IMAGE:-pytest-dockervol-test/postgres:15}"
    if [[ -z "$min_api" ]] &&
        DOCKER_HOST="$SOURCE_DOCKER_HOST" docker image inspect "$postgres" >/dev/null 2>&1; then
        images+=("$postgres")
    fi
fi
for image in "${images[@]}"; do
    want="$(DOCKER_HOST="$SOURCE_DOCKER_HOST" docker image inspect --format '{{.Id}}' "$image")" ||
        die "$image is not on $SOURCE_DOCKER_HOST (run .ci/build-images.sh first)"
    have="$(DOCKER_HOST="$HOST" "$ROOT/usr/bin/docker" image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"
    if [[ "$have" == "$want" ]]; then
        continue
    fi
    log "loading $image"
    DOCKER_HOST="$SOURCE_DOCKER_HOST" docker save "$image" |
        DOCKER_HOST="$HOST" "$ROOT/usr/bin/docker" load -q >&2
done

log "ready; use: export DOCKER_HOST=$HOST PATH=$BIN:\$PATH"
printf 'export DOCKER_HOST=%q\nexport DOCKER26_BIN=%q\nexport PATH=%q\n' "$HOST" "$BIN" "$BIN:$PATH"
