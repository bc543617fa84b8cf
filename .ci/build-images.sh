#!/usr/bin/env bash
# Build the local Docker images used by the pytest-dockervol test suite.
#
# Nothing is ever pulled: there is no container registry available, so both
# images are made from local files only (FROM scratch + Debian's static
# busybox, and `docker import` of an empty tarball).
#
# Idempotent: an image is only built when `docker image inspect NAME` fails,
# so a rerun takes well under a second. Uses the plain docker CLI, so
# DOCKER_HOST / DOCKER_CONTEXT are respected.
#
# Usage: .ci/build-images.sh [--verify] [--rebuild]
#   --verify   run the busybox image even if it was not (re)built just now
#   --rebuild  build (and re-tag) both images even if they already exist;
#              the old images are left in place (untagged), never removed
#
# Environment:
#   BUSYBOX_BIN  static busybox binary to use (default: /bin/busybox, which
#                is what Debian's busybox-static package installs)
set -euo pipefail

readonly BUSYBOX_IMAGE="pytest-dockervol-test/busybox:latest"
readonly EMPTY_IMAGE="pytest-dockervol-test/empty:latest"
readonly LABEL="pytest-dockervol.test-image=1"
BUSYBOX_BIN="${BUSYBOX_BIN:-/bin/busybox}"

verify=0
rebuild=0
for arg in "$@"; do
    case "$arg" in
        --verify) verify=1 ;;
        --rebuild) rebuild=1 ;;
        -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-images.sh: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

log() { printf '==> %s\n' "$*"; }
die() { printf 'build-images.sh: error: %s\n' "$*" >&2; exit 1; }

# The classic builder is used on purpose: it needs no buildx plugin and
# honours --pull=false against any daemon (API >= 1.12). With BuildKit the
# client would need the buildx plugin, which is not always installed.
export DOCKER_BUILDKIT=0

command -v docker >/dev/null 2>&1 || die "docker CLI not found (install docker.io)"
docker info >/dev/null 2>&1 || die "cannot reach the Docker engine (docker info failed${DOCKER_HOST:+, DOCKER_HOST=$DOCKER_HOST})"

have_image() { [[ $rebuild -eq 0 ]] && docker image inspect "$1" >/dev/null 2>&1; }

workdir=""
cleanup() { if [[ -n "$workdir" ]]; then rm -rf -- "$workdir"; fi; }
trap cleanup EXIT
make_workdir() {
    if [[ -z "$workdir" ]]; then
        workdir="$(mktemp -d "${TMPDIR:-/tmp}/pytest-dockervol-images.XXXXXX")"
    fi
}

# --- pytest-dockervol-test/busybox ------------------------------------------
busybox_built=0
if have_image "$BUSYBOX_IMAGE"; then
    log "$BUSYBOX_IMAGE already present, skipping build"
else
    log "building $BUSYBOX_IMAGE from $BUSYBOX_BIN (FROM scratch, no pull)"
    [[ -f "$BUSYBOX_BIN" && -x "$BUSYBOX_BIN" ]] ||
        die "$BUSYBOX_BIN not found or not executable (apt-get install -y busybox-static)"
    # The binary runs in an image with no libc, so it must be static.
    # (`ldd` says "not a dynamic executable" for static and "statically
    # linked" for static-pie binaries.)
    if command -v file >/dev/null 2>&1; then
        file -L "$BUSYBOX_BIN" | grep -Eq 'statically linked|static-pie linked' ||
            die "$BUSYBOX_BIN is not statically linked ($(file -L "$BUSYBOX_BIN")); install busybox-static, not busybox"
    elif command -v ldd >/dev/null 2>&1; then
        ldd_out="$(ldd "$BUSYBOX_BIN" 2>&1 || true)"
        grep -Eq 'not a dynamic executable|statically linked' <<<"$ldd_out" ||
            die "$BUSYBOX_BIN is dynamically linked; install busybox-static, not busybox"
    else
        log "neither file nor ldd available: cannot check that $BUSYBOX_BIN is static"
    fi

    make_workdir
    ctx="$workdir/busybox"
    mkdir -p "$ctx"
    install -m 0755 "$BUSYBOX_BIN" "$ctx/busybox"
    cat >"$ctx/Dockerfile" <<EOF
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/bin
LABEL $LABEL
CMD ["sh"]
EOF
    docker build --pull=false -t "$BUSYBOX_IMAGE" "$ctx"
    busybox_built=1
fi

# --- pytest-dockervol-test/empty --------------------------------------------
if have_image "$EMPTY_IMAGE"; then
    log "$EMPTY_IMAGE already present, skipping import"
else
    log "importing $EMPTY_IMAGE from an empty tarball"
    make_workdir
    tar -cf "$workdir/empty.tar" --files-from /dev/null
    docker import \
        --change 'CMD ["/nonexistent"]' \
        --change "LABEL $LABEL" \
        "$workdir/empty.tar" "$EMPTY_IMAGE" >/dev/null
fi

# --- verification (cheap: only after a fresh build or with --verify) ---------
if [[ $busybox_built -eq 1 || $verify -eq 1 ]]; then
    log "verifying $BUSYBOX_IMAGE runs"
    out="$(docker run --rm "$BUSYBOX_IMAGE" sh -c 'echo ok')" ||
        die "docker run $BUSYBOX_IMAGE failed"
    [[ "$out" == "ok" ]] || die "docker run $BUSYBOX_IMAGE printed '$out', expected 'ok'"
    log "$BUSYBOX_IMAGE: ok"
fi

for image in "$BUSYBOX_IMAGE" "$EMPTY_IMAGE"; do
    label="$(docker image inspect --format '{{index .Config.Labels "pytest-dockervol.test-image"}}' "$image")"
    [[ "$label" == "1" ]] ||
        die "$image exists but lacks label $LABEL (not built by this script?); rerun with --rebuild"
    printf '    %-40s %s\n' "$image" "$(docker image inspect --format '{{.Id}}' "$image")"
done
