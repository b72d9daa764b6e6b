#!/usr/bin/env bash
# Builds the Kraftwerk container image without pulling anything.
#
# For machines with a Docker engine but no registry: no base image is
# needed. The script builds the release binary (or takes one already
# built), stages it with the shared libraries and the dynamic loader it
# links, an /etc/passwd and /etc/group with the non-root user `kraftwerk`
# (uid 10001) and a /data directory owned by it, and builds that staging
# directory into an image `FROM scratch`. The image behaves like the one
# deploy/Dockerfile builds from the internet.
#
#   deploy/build-image.sh                        # cargo build --release, tag kraftwerk:local
#   deploy/build-image.sh --binary target/debug/kraftwerk
#   deploy/build-image.sh --tag kraftwerk:test
#
# KRAFTWERK_BIN stands for --binary, KRAFTWERK_IMAGE for --tag.
set -euo pipefail

usage() {
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    echo "usage: $0 [--binary PATH] [--tag NAME:TAG] [--no-strip]"
}

root="$(cd "$(dirname "$0")/.." && pwd)"
binary="${KRAFTWERK_BIN:-}"
tag="${KRAFTWERK_IMAGE:-kraftwerk:local}"
strip_debug=1
# The uid/gid the server runs as; fixed so that volumes keep working
# across image rebuilds.
uid=10001

while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary="${2:?--binary needs a path}"; shift 2 ;;
        --binary=*) binary="${1#*=}"; shift ;;
        --tag) tag="${2:?--tag needs a name}"; shift 2 ;;
        --tag=*) tag="${1#*=}"; shift ;;
        --no-strip) strip_debug=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

if ! docker info >/dev/null 2>&1; then
    echo "error: no Docker engine answers (docker info failed)" >&2
    exit 1
fi

if [ -z "$binary" ]; then
    echo "building the release binary (cargo build --release --bin kraftwerk)"
    (cd "$root" && cargo build --release --bin kraftwerk)
    binary="${CARGO_TARGET_DIR:-$root/target}/release/kraftwerk"
fi
case "$binary" in /*) ;; *) binary="$root/$binary" ;; esac
if [ ! -x "$binary" ]; then
    echo "error: $binary is not an executable; build it or pass --binary" >&2
    exit 1
fi

stage="$(mktemp -d "${TMPDIR:-/tmp}/kraftwerk-image.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
rootfs="$stage/rootfs"
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc" "$rootfs/tmp" "$stage/data"
chmod 1777 "$rootfs/tmp"

install -m 0755 "$binary" "$rootfs/usr/local/bin/kraftwerk"
if [ "$strip_debug" = 1 ] && command -v strip >/dev/null 2>&1; then
    # Debug builds carry hundreds of MB of DWARF; symbol names stay.
    strip --strip-debug "$rootfs/usr/local/bin/kraftwerk"
fi

# Every library the binary links, and the loader, at the paths ldd gives.
# A static binary ("not a dynamic executable") needs none of them.
copy_lib() {
    local path="$1"
    mkdir -p "$rootfs$(dirname "$path")"
    cp -L "$path" "$rootfs$path"
}
libs="$(ldd "$binary" 2>/dev/null | awk '
    $2 == "=>" && $3 ~ /^\// { print $3 }
    $1 ~ /^\// { print $1 }
' | sort -u)" || true
for lib in $libs; do
    copy_lib "$lib"
done
# Name resolution (service names on the compose network): glibc >= 2.34
# has files and dns in libc itself; older ones need the NSS modules.
if [ -n "$libs" ]; then
    libdir="$(dirname "$(printf '%s\n' $libs | grep '/libc\.so' | head -n 1)")"
    for nss in libnss_files.so.2 libnss_dns.so.2 libresolv.so.2; do
        if [ -e "$libdir/$nss" ]; then
            copy_lib "$libdir/$nss"
        fi
    done
fi
printf 'hosts: files dns\n' > "$rootfs/etc/nsswitch.conf"

cat > "$rootfs/etc/passwd" <<EOF
root:x:0:0:root:/root:/sbin/nologin
kraftwerk:x:$uid:$uid:kraftwerk:/data:/sbin/nologin
EOF
cat > "$rootfs/etc/group" <<EOF
root:x:0:
kraftwerk:x:$uid:
EOF

version="$("$binary" --version 2>/dev/null | awk '{print $2}')" || version=unknown
cat > "$stage/Dockerfile" <<EOF
FROM scratch
COPY rootfs/ /
COPY --chown=$uid:$uid data/ /data/
LABEL org.opencontainers.image.title="kraftwerk" \\
      org.opencontainers.image.version="$version" \\
      org.opencontainers.image.description="Kraftwerk, a Kafka-compatible event-streaming platform"
# A single node that a client on the host reaches with
# 'docker run -p 9092:9092': bound on every interface, advertised as
# localhost. Compose files set their own listeners.
# NO_COLOR: plain log lines (no terminal escapes) in 'docker logs'.
ENV PATH=/usr/local/bin \\
    NO_COLOR=1 \\
    KRAFTWERK_LOG_DIRS=/data \\
    KRAFTWERK_LISTENERS=PLAINTEXT://0.0.0.0:9092 \\
    KRAFTWERK_ADVERTISED_LISTENERS=PLAINTEXT://localhost:9092
VOLUME /data
WORKDIR /data
USER $uid:$uid
EXPOSE 9092
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=8s --start-period=20s --retries=3 \\
    CMD ["/usr/local/bin/kraftwerk", "cluster", "describe", "--bootstrap-server", "127.0.0.1:9092"]
ENTRYPOINT ["/usr/local/bin/kraftwerk"]
CMD ["server"]
EOF

echo "building image $tag from $binary ($(printf "%s\n" $libs | grep -c .) shared objects from ldd)"
docker build --tag "$tag" "$stage"
echo "built $tag"
