#!/bin/sh
# tests/bench_conv.sh: images per second of the conv encoder's forward + backward
# (training mode, parameter gradients) at 32x32, 64x64 and 224x224 with small batches,
# for the narrow ResNet of pipelines/histo-adapt and for ResNet-18 itself.
#   sh tests/bench_conv.sh [SECONDS]     (default 3 seconds per line)
# Builds tests/tools/bench_conv.c against the library (make first). OPENBLAS_NUM_THREADS
# is left to the caller.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
secs=${1:-3}
cd "$here"
make -s BUILD="$BUILD" "$BUILD/libdapipe.a"
tool=$(mktemp "${TMPDIR:-/tmp}/bench_conv.XXXXXX")
trap 'rm -f "$tool"' EXIT
# shellcheck disable=SC2046
cc -O2 -std=c11 -D_GNU_SOURCE -Icommon tests/tools/bench_conv.c -o "$tool" "$BUILD/libdapipe.a" \
	$(pkg-config --libs openblas 2>/dev/null || echo -L/usr/lib/x86_64-linux-gnu/openblas-pthread -lopenblas) \
	-Wl,-rpath,/usr/lib/x86_64-linux-gnu/openblas-pthread -lm -lpthread
echo "conv encoder, forward + backward, $(nproc) cores, OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-unset}"
"$tool" 32 8 1,1,1,1 small 64 "$secs"
"$tool" 32 16 1,1,1,1 small 32 "$secs"
"$tool" 64 16 1,1,1,1 small 32 "$secs"
"$tool" 32 64 2,2,2,2 small 16 "$secs"
"$tool" 64 64 2,2,2,2 imagenet 16 "$secs"
"$tool" 224 64 2,2,2,2 imagenet 8 "$secs"
