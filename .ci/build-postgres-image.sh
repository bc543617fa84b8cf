#!/usr/bin/env bash
# Build a local PostgreSQL 15 image for the examples/postgres suite, offline:
# no container registry is used and nothing is pulled.
#
#   1. mmdebstrap a Debian bookworm root file system with postgresql-15
#      (from the Debian mirror apt already uses), with the postgres user
#      created as uid/gid 999 -- the same ids as the official postgres image,
#      so a data directory is portable between the two;
#   2. `docker import` it as pytest-dockervol-test/postgres-rootfs:15;
#   3. `docker build --pull=false` a tiny Dockerfile FROM that image which adds
#      an entrypoint following the official image's conventions (PGDATA,
#      POSTGRES_PASSWORD, POSTGRES_USER, POSTGRES_DB, POSTGRES_INITDB_ARGS,
#      POSTGRES_HOST_AUTH_METHOD, /docker-entrypoint-initdb.d/*.sql|*.sql.gz|*.sh).
#
# Idempotent: does nothing when pytest-dockervol-test/postgres:15 exists
# (use --rebuild to build again; old images are left in place, never removed).
# Both images carry the label pytest-dockervol.test-image=1.
#
# Usage: .ci/build-postgres-image.sh [--rebuild]
#
# Environment:
#   DEBIAN_MIRROR  mirror for mmdebstrap (default: the first Debian mirror this machine's
#                  apt sources use)
#   POSTGRES_TEST_IMAGE  tag to build (default: pytest-dockervol-test/postgres:15)
#
# Needs root (mmdebstrap's root mode keeps file ownership without fakeroot)
# and installs mmdebstrap with apt-get when it is missing.
set -euo pipefail

IMAGE="${POSTGRES_TEST_IMAGE:-pytest-dockervol-test/postgres:15}"
ROOTFS_IMAGE="${IMAGE%%:*}-rootfs:${IMAGE##*:}"
[[ "$IMAGE" == *:* ]] || ROOTFS_IMAGE="${IMAGE}-rootfs:latest"
readonly LABEL="pytest-dockervol.test-image=1"
# The machine's own apt mirror: no host name is written into this project.
host_mirror() {
    local uri
    uri="$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v -- '-security' | head -n1 || true)"
    if [[ -z "$uri" ]]; then
        uri="$(grep -hsE '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -v -- '-security' | head -n1 || true)"
    fi
    echo "$uri"
}
MIRROR="${DEBIAN_MIRROR:-$(host_mirror)}"
PG_UID=999

rebuild=0
for arg in "$@"; do
    case "$arg" in
        --rebuild) rebuild=1 ;;
        -h|--help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-postgres-image.sh: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

log() { printf '==> %s\n' "$*"; }
die() { printf 'build-postgres-image.sh: error: %s\n' "$*" >&2; exit 1; }

# Classic builder: no buildx plugin needed, and --pull=false is honoured.
export DOCKER_BUILDKIT=0

command -v docker >/dev/null 2>&1 || die "docker CLI not found (install docker.io)"
docker info >/dev/null 2>&1 || die "cannot reach the Docker engine (docker info failed${DOCKER_HOST:+, DOCKER_HOST=$DOCKER_HOST})"

if [[ $rebuild -eq 0 ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "$IMAGE already present, skipping build"
    exit 0
fi

start=$SECONDS
[[ $(id -u) -eq 0 ]] || die "run as root (mmdebstrap needs it to keep file ownership)"
if ! command -v mmdebstrap >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || die "mmdebstrap missing and apt-get unavailable"
    log "installing mmdebstrap with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=300 mmdebstrap </dev/null
fi

workdir="$(mktemp -d "${TMPDIR:-/tmp}/pytest-dockervol-postgres.XXXXXX")"
trap 'rm -rf -- "$workdir"' EXIT

# --- 1. root file system -------------------------------------------------------
[[ -n "$MIRROR" ]] || die "no Debian mirror in this machine's apt sources; set DEBIAN_MIRROR"
log "mmdebstrap bookworm + postgresql-15 from $MIRROR"
# The essential hook runs before postgresql-common is installed: creating the
# postgres user first pins its ids to 999, and no default cluster is created
# (the entrypoint runs initdb into PGDATA instead). Hooks get the root as "$1".
# shellcheck disable=SC2016  # single quotes on purpose: mmdebstrap expands "$1"
mmdebstrap --variant=apt --quiet \
    --include=postgresql-15 \
    --aptopt='Apt::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --essential-hook="chroot \"\$1\" groupadd --system --gid $PG_UID postgres" \
    --essential-hook="chroot \"\$1\" useradd --system --uid $PG_UID --gid $PG_UID --home-dir /var/lib/postgresql --shell /bin/bash --no-create-home postgres" \
    --essential-hook='mkdir -p "$1/etc/postgresql-common/createcluster.d" && echo "create_main_cluster = false" > "$1/etc/postgresql-common/createcluster.d/no-main-cluster.conf"' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    bookworm "$workdir/rootfs.tar" "$MIRROR"

# --- 2. import ------------------------------------------------------------------
log "docker import -> $ROOTFS_IMAGE"
docker import --change "LABEL $LABEL" "$workdir/rootfs.tar" "$ROOTFS_IMAGE" >/dev/null
rm -f -- "$workdir/rootfs.tar"

# --- 3. entrypoint layer ----------------------------------------------------------
ctx="$workdir/ctx"
mkdir -p "$ctx"
cat >"$ctx/docker-entrypoint.sh" <<'ENTRYPOINT'
#!/bin/bash
# A small subset of the official postgres image's entrypoint:
#   PGDATA (default /var/lib/postgresql/data), POSTGRES_PASSWORD, POSTGRES_USER
#   (default postgres), POSTGRES_DB (default $POSTGRES_USER), POSTGRES_INITDB_ARGS,
#   POSTGRES_HOST_AUTH_METHOD; on an empty PGDATA: initdb, then run
#   /docker-entrypoint-initdb.d/*.sql, *.sql.gz and *.sh in name order.
# Runs as root only to fix PGDATA's owner, then drops to postgres (uid 999).
set -Eeuo pipefail

: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
export PGDATA POSTGRES_USER POSTGRES_DB

if [[ "${1:-}" == -* ]]; then set -- postgres "$@"; fi
if [[ "${1:-}" != postgres ]]; then exec "$@"; fi
for arg in "${@:2}"; do  # like the official image: `postgres --version` just runs
    case "$arg" in -'?'|--help|--describe-config|-V|--version|-C*) exec "$@" ;; esac
done

if [[ $(id -u) -eq 0 ]]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chmod 00700 "$PGDATA"
    chmod 03775 /var/run/postgresql
    # Only a data directory the container has not initialised yet is chowned:
    # a seeded or cloned one keeps the ownership it was given.
    if [[ ! -s "$PGDATA/PG_VERSION" ]]; then chown postgres:postgres "$PGDATA"; fi
    chown postgres:postgres /var/run/postgresql
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

psql_init() { psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" "$@"; }

if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
    if [[ -z "${POSTGRES_PASSWORD:-}" && "${POSTGRES_HOST_AUTH_METHOD:-}" != trust ]]; then
        echo "error: database is uninitialized and POSTGRES_PASSWORD is not set;" \
             "set POSTGRES_PASSWORD or POSTGRES_HOST_AUTH_METHOD=trust" >&2
        exit 1
    fi
    pwfile=()
    if [[ -n "${POSTGRES_PASSWORD:-}" ]]; then
        printf '%s\n' "$POSTGRES_PASSWORD" >/tmp/pgpass.$$
        pwfile=(--pwfile=/tmp/pgpass.$$)
    fi
    # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a word list
    initdb --username="$POSTGRES_USER" "${pwfile[@]}" --auth-local=trust \
        --auth-host="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" ${POSTGRES_INITDB_ARGS:-} >/dev/null
    rm -f /tmp/pgpass.$$
    echo "host all all all ${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" >>"$PGDATA/pg_hba.conf"

    # A server on the Unix socket only, so nothing outside sees a half-initialised database.
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    if [[ "$POSTGRES_DB" != postgres ]]; then
        psql_init --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
    fi
    shopt -s nullglob
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sh) echo "running $f"; . "$f" ;;
            *.sql) echo "running $f"; psql_init -f "$f" ;;
            *.sql.gz) echo "running $f"; gunzip -c "$f" | psql_init ;;
            *) echo "ignoring $f" ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    echo "PostgreSQL init process complete; ready for start up."
fi

exec postgres -c listen_addresses='*' "${@:2}"
ENTRYPOINT
chmod 0755 "$ctx/docker-entrypoint.sh"

cat >"$ctx/Dockerfile" <<EOF
FROM $ROOTFS_IMAGE
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN mkdir -p /docker-entrypoint-initdb.d /var/run/postgresql /var/lib/postgresql/data \\
 && chown postgres:postgres /var/run/postgresql /var/lib/postgresql /var/lib/postgresql/data \\
 && chmod 0700 /var/lib/postgresql/data
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    LANG=C.UTF-8 \\
    PGDATA=/var/lib/postgresql/data
VOLUME /var/lib/postgresql/data
STOPSIGNAL SIGINT
EXPOSE 5432
LABEL $LABEL
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
EOF
log "docker build --pull=false -> $IMAGE"
docker build --pull=false --quiet -t "$IMAGE" "$ctx" >/dev/null

# --- verification -------------------------------------------------------------------
log "verifying $IMAGE"
ids="$(docker run --rm --entrypoint id "$IMAGE" postgres)"
[[ "$ids" == "uid=$PG_UID(postgres) gid=$PG_UID(postgres)"* ]] || die "unexpected postgres ids: $ids"
version="$(docker run --rm "$IMAGE" postgres --version)"
log "$IMAGE: $version, postgres uid/gid $PG_UID, built in $((SECONDS - start))s"
printf '    %-40s %s\n' "$IMAGE" "$(docker image inspect --format '{{.Id}}' "$IMAGE")"
