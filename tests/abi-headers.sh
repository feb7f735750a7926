#!/bin/sh
# The pf ABI of src/pf/abi checked against the real FreeBSD and OpenBSD
# system headers: tests/abi_headers.rs writes every fact the Rust side holds
# as a C _Static_assert, and zig's C compiler, with the headers it ships
# (lib/libc/include/generic-freebsd, generic-openbsd), compiles them for
# x86_64 and aarch64 of each. Any disagreement fails the compile, and the
# assertion's message names the fact. macOS has no public pfvar.h:
# tests/abi-xnu.sh checks its facts against an xnu tree.
#
# zig is found by tests/abi-facts.sh ($PFKNOCK_ZIG, or the venv .ci/run
# makes).
#
#   sh tests/abi-headers.sh
set -eu
cd "$(dirname "$0")/.."

# shellcheck source=tests/abi-facts.sh
. tests/abi-facts.sh

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
