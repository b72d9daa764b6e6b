#!/usr/bin/env bash
# Runs franz-go's own kgo integration tests against a running Kraftwerk
# cluster.
#
#   tests/go/franz-go.sh --seeds 127.0.0.1:31710,127.0.0.1:31711,127.0.0.1:31712 \
#       [--run REGEX] [--skip REGEX] [--timeout 10m] [--out FILE] [--list] [--rf 3] [--records 10000]
#
# The module comes from the Go module proxy (`go mod download`) and is copied
# into tests/go/.work/ (ignored by git), because the module cache is
# read-only. `go test -v` output goes to --out (default
# tests/go/.work/go-test.log); the exit status is go test's.
# Exit status 3 and a line "skipped: <reason>" mean Go or the module proxy
# is not available here, so nothing was tested.
set -u

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FRANZ_VERSION="${FRANZ_GO_VERSION:-v1.22.3}"
WORK="${FRANZ_GO_WORK:-$HERE/.work}"
SEEDS="${KGO_SEEDS:-}"
RUN=""
SKIP=""
TIMEOUT="10m"
OUT=""
LIST=0
RF="${KGO_TEST_RF:-3}"
RECORDS="${KGO_TEST_RECORDS:-10000}"

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --seeds) SEEDS="$2"; shift 2 ;;
        --run) RUN="$2"; shift 2 ;;
        --skip) SKIP="$2"; shift 2 ;;
        --timeout) TIMEOUT="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --rf) RF="$2"; shift 2 ;;
        --records) RECORDS="$2"; shift 2 ;;
        --list) LIST=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

skip() { echo "skipped: $*"; exit 3; }

command -v go >/dev/null 2>&1 || skip "go is not installed"
command -v python3 >/dev/null 2>&1 || skip "python3 is needed to read go mod download's JSON"

mkdir -p "$WORK"
[ -n "$OUT" ] || OUT="$WORK/go-test.log"

# 1. The module, from the proxy into the module cache.
info="$(go mod download -json "github.com/twmb/franz-go@$FRANZ_VERSION" 2>"$WORK/download.err")"
if [ $? -ne 0 ]; then
    skip "go mod download github.com/twmb/franz-go@$FRANZ_VERSION failed (module proxy unreachable?): $(tr '\n' ' ' <"$WORK/download.err" | cut -c1-300) $(printf '%s' "$info" | tr '\n' ' ' | cut -c1-300)"
fi
dir="$(printf '%s' "$info" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("Dir",""))')"
[ -n "$dir" ] && [ -d "$dir/pkg/kgo" ] || skip "go mod download gave no module directory: $info"

# 2. A writable copy; redone when the version changes.
src="$WORK/franz-go@$FRANZ_VERSION"
if [ ! -f "$src/.copied" ]; then
    rm -rf "$src"
    cp -r "$dir" "$src" || { echo "copy of $dir failed" >&2; exit 2; }
    chmod -R u+w "$src"
    touch "$src/.copied"
fi

# 3. Its dependencies (compression codecs, kmsg), also from the proxy.
if ! (cd "$src" && go mod download) >"$WORK/deps.err" 2>&1; then
    skip "downloading franz-go's dependencies failed (module proxy unreachable?): $(tr '\n' ' ' <"$WORK/deps.err" | cut -c1-300)"
fi

cd "$src/pkg/kgo" || exit 2

if [ "$LIST" = 1 ]; then
    exec go test -list "${RUN:-.}" .
fi

[ -n "$SEEDS" ] || { echo "--seeds (or KGO_SEEDS) is required" >&2; exit 2; }

export KGO_SEEDS="$SEEDS" KGO_TEST_RF="$RF" KGO_TEST_RECORDS="$RECORDS"
args=(test -count=1 -v -timeout "$TIMEOUT")
[ -n "$RUN" ] && args+=(-run "$RUN")
[ -n "$SKIP" ] && args+=(-skip "$SKIP")
echo "franz-go $FRANZ_VERSION: KGO_SEEDS=$KGO_SEEDS KGO_TEST_RF=$RF KGO_TEST_RECORDS=$RECORDS go ${args[*]} ." >"$OUT"
go "${args[@]}" . >>"$OUT" 2>&1
rc=$?
echo "go test exit status $rc; output in $OUT"
exit $rc
