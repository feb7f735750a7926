#!/bin/sh
# The pf ABI of src/pf/abi checked against the real FreeBSD and OpenBSD
# system headers: tests/abi_headers.rs writes every fact the Rust side holds
# as a C _Static_assert, and zig's C compiler, with the headers it ships
# (lib/libc/include/generic-freebsd, generic-openbsd), compiles them for
# x86_64 and aarch64 of each. Any disagreement fails the compile, and the
# assertion's message names the fact. macOS has no public pfvar.h; its facts
# cite the xnu sources in docs/pf-kernel.md instead.
#
# zig comes from $PFKNOCK_ZIG (a zig binary, or "python -m ziglang"), or the
# venv .ci/run makes ($PFKNOCK_ZIG_VENV, default /opt/pfknock-zig).
#
#   sh tests/abi-headers.sh
set -eu
cd "$(dirname "$0")/.."

# shellcheck source=tests/zig.sh
. tests/zig.sh

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export ZIG_GLOBAL_CACHE_DIR="$tmp/cache" ZIG_LOCAL_CACHE_DIR="$tmp/cache"

PFKNOCK_ABI_DIR=$tmp cargo test -q --test abi_headers >"$tmp/cargo.log" 2>&1 || {
	cat "$tmp/cargo.log" >&2
	echo "abi-headers: generating the assertions failed" >&2
	exit 1
}

rc=0
for os in freebsd openbsd; do
	n=$(grep -c '_Static_assert' "$tmp/$os.c")
	for arch in x86_64 aarch64; do
		# shellcheck disable=SC2086 # $zig may be "python -m ziglang"
		if $zig cc -target "$arch-$os" -c -o "$tmp/$os-$arch.o" "$tmp/$os.c" \
			>"$tmp/$os-$arch.log" 2>&1; then
			echo "abi-headers: $arch-$os: $n facts agree with the real headers"
		else
			rc=1
			echo "abi-headers: $arch-$os: disagreement with the real headers:" >&2
			grep -o '"pfknock [^"]*"\|error: .*' "$tmp/$os-$arch.log" | sed 's/^/  /' >&2
		fi
	done
done
exit $rc
