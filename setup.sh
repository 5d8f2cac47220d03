#!/bin/sh
# setup.sh: install the Debian packages dapipe builds, tests and runs with.
# As root it installs what is missing (apt-get update first); otherwise it prints the
# exact command to run. Quiet and quick when everything is already there.
set -eu
PKGS="gcc clang libclang-rt-14-dev make pkg-config libopenblas-dev libcsv-dev libmsgpack-dev zlib1g-dev \
libpng-dev libjpeg-dev libhdf5-dev parallel gnuplot-nox python3 python3-msgpack python3-numpy \
python3-pandas time valgrind"
missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0
cmd="apt-get update && apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" -eq 0 ]; then
	echo "setup: installing:$missing" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
	echo "setup: missing Debian packages:$missing" >&2
	echo "setup: run as root:  $cmd" >&2
	exit 1
fi
