#!/bin/sh
# bootstrap.sh - the README's two set-up commands, on a fresh Debian 12:
#
#   tools/bootstrap.sh demo [--keep]
#                             install packages, build, run the demo (with
#                             --keep, smisd and the simulators go on running
#                             for the README's curl examples until Ctrl-C)
#   tools/bootstrap.sh test   install packages, build, run every test
#                             (make check under valgrind, then again with
#                             AddressSanitizer + UBSan, built with gcc and
#                             then with clang)
#   tools/bootstrap.sh tsan   the same tests built with ThreadSanitizer, in
#                             build-tsan/ (not part of `test`: TSan needs a
#                             kernel whose mmap layout it supports)
#   tools/bootstrap.sh fuzz [SECONDS]
#                             build the fuzz targets with clang's libFuzzer
#                             (+ ASan, UBSan) in build-fuzz/ and run each for
#                             SECONDS (default 300); findings are written to
#                             build-fuzz/fuzz-findings/ (tests/fuzz/README.md)
#
# Builds happen out of tree in build/ (and build-asan/, build-clang/,
# build-tsan/, build-fuzz/), so the source tree stays clean. Needs root for
# apt-get (or the packages already installed).
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
what=${1:-}
jobs=$(nproc 2>/dev/null || echo 2)

# Debian 12 packages: build tools, the libraries SMIS links, and what the
# tests and benchmarks run (python3 standard library, curl, valgrind, wrk).
PACKAGES="build-essential autoconf automake libtool pkg-config
 libcurl4-openssl-dev libjson-c-dev libssl-dev libconfig-dev libcunit1-dev
 libmicrohttpd-dev libsqlite3-dev libgumbo-dev libsystemd-dev
 libmimalloc-dev
 python3 curl openssl valgrind sqlite3 wrk"
# For the clang sanitizer build of `test` and for `fuzz` (libFuzzer).
CLANG_PACKAGES="clang libclang-rt-14-dev"
# For `test` only: test_openapi.py loads docs/openapi.yaml with PyYAML;
# the integration tests check every answer of smisd against it with
# jsonschema (Debian 12's 4.10 has the 2020-12 draft of OpenAPI 3.1).
TEST_PACKAGES="python3-yaml python3-jsonschema"

install_packages() {
	missing=""
	for p in $PACKAGES; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
	done
	if [ -n "$missing" ]; then
		echo "== installing:$missing"
		if [ "$(id -u)" -ne 0 ]; then
			echo "bootstrap: run as root (apt-get) or install:$missing" >&2
			exit 1
		fi
		DEBIAN_FRONTEND=noninteractive apt-get update -qq
		# shellcheck disable=SC2086
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
	fi
}

build() { # build DIR [configure args...]
	dir=$1
	shift
	[ -x configure ] || autoreconf -fi
	mkdir -p "$dir"
	(cd "$dir" && { [ -f Makefile ] || "$here/configure" --enable-werror "$@"; } && make -j"$jobs")
}

case "$what" in
demo)
	install_packages
	build build
	exec "$here/tools/demo.sh" "$here/build" ${2:+"$2"}
	;;
test)
	PACKAGES="$PACKAGES $CLANG_PACKAGES $TEST_PACKAGES"
	install_packages
	build build
	echo "== make check (unit tests under valgrind, integration tests on loopback)"
	(cd build && make -j"$jobs" check) || { cat build/test-suite.log; exit 1; }
	# The unit tests ran under valgrind above; the daemon and the
	# simulators now do too, through every end-to-end flow (about 10
	# minutes on 2 cores; a memory error or definite leak fails the test).
	echo "== the integration tests again, smisd and the simulators under valgrind"
	integration=$(cd build && ls ../tests/integration/test_*.py | sed 's|^\.\./||' | tr '\n' ' ')
	(cd build && SMIS_VALGRIND_DAEMON=1 make -j"$jobs" check TESTS="$integration" \
		TEST_SUITE_LOG=test-suite-valgrind.log) || { cat build/test-suite-valgrind.log; exit 1; }
	echo "== make check again with AddressSanitizer and UBSan"
	build build-asan --enable-sanitizers
	(cd build-asan && ASAN_OPTIONS=detect_leaks=1 SMIS_NO_VALGRIND=1 make -j"$jobs" check) ||
		{ cat build-asan/test-suite.log; exit 1; }
	# clang's sanitizers check things gcc's do not: they found a NULL + 0
	# in lib/hpke.c and a signed overflow in ringring-sim that gcc's passed.
	echo "== make check again built with clang, AddressSanitizer and UBSan"
	build build-clang CC=clang --enable-sanitizers
	(cd build-clang && ASAN_OPTIONS=detect_leaks=1 SMIS_NO_VALGRIND=1 make -j"$jobs" check) ||
		{ cat build-clang/test-suite.log; exit 1; }
	;;
tsan)
	install_packages
	build build-tsan CFLAGS="-fsanitize=thread -g -O1" LDFLAGS="-fsanitize=thread"
	# A report makes smisd exit 66 and writes to its log: the tests fail.
	(cd build-tsan && TSAN_OPTIONS="halt_on_error=0 exitcode=66" SMIS_NO_VALGRIND=1 make -j"$jobs" check) ||
		{ cat build-tsan/test-suite.log; exit 1; }
	;;
fuzz)
	PACKAGES="$PACKAGES $CLANG_PACKAGES"
	install_packages
	seconds=${2:-300}
	# clang warns where gcc does not; -Werror stays on (build()).
	build build-fuzz CC=clang CFLAGS="-g -O1" --enable-fuzzing
	status=0
	for target in build-fuzz/tests/fuzz/fuzz_*; do
		[ -x "$target" ] || continue
		name=${target##*/fuzz_}
		work=build-fuzz/fuzz-findings/$name
		mkdir -p "$work/corpus"
		echo "== fuzz_$name for ${seconds}s (log: $work/log)"
		# New inputs go to $work/corpus; the committed corpus is read only.
		if ! "$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 \
			-max_len=8192 -print_final_stats=1 -artifact_prefix="$work/" \
			"$work/corpus" "tests/fuzz/corpus/$name" > "$work/log" 2>&1; then
			echo "fuzz_$name failed: $(ls "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-* 2>/dev/null | tr '\n' ' ')" >&2
			tail -n 30 "$work/log" >&2
			status=1
		fi
		grep -E '^(Done|stat::number_of_executed_units)' "$work/log" || true
	done
	exit $status
	;;
*)
	echo "usage: $0 demo|test|tsan|fuzz [SECONDS]" >&2
	exit 2
	;;
esac
