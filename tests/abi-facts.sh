# Sourced by tests/abi-headers.sh and tests/abi-xnu.sh, from the project's
# top: sets $zig to a zig C compiler, from $PFKNOCK_ZIG (a zig binary, or
# "python -m ziglang"), the venv .ci/run makes ($PFKNOCK_ZIG_VENV, default
# /opt/pfknock-zig), or zig on $PATH (exits 2 when there is none); makes
# $tmp, removed on exit; and writes there, with tests/abi_headers.rs, the
# facts of every OS as C assertions (freebsd.c, openbsd.c, macos.c).
# shellcheck shell=sh disable=SC2034 # $zig and $tmp are the caller's
venv=${PFKNOCK_ZIG_VENV:-/opt/pfknock-zig}
if [ -n "${PFKNOCK_ZIG:-}" ]; then
	zig=$PFKNOCK_ZIG
elif [ -x "$venv/bin/python" ] && "$venv/bin/python" -m ziglang version >/dev/null 2>&1; then
	zig="$venv/bin/python -m ziglang"
elif command -v zig >/dev/null 2>&1; then
	zig=zig
else
	echo "${0##*/}: no zig: set PFKNOCK_ZIG or run .ci/run's install step" >&2
	exit 2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export ZIG_GLOBAL_CACHE_DIR="$tmp/cache" ZIG_LOCAL_CACHE_DIR="$tmp/cache"

PFKNOCK_ABI_DIR=$tmp cargo test -q --test abi_headers >"$tmp/cargo.log" 2>&1 || {
	cat "$tmp/cargo.log" >&2
	echo "${0##*/}: generating the assertions failed" >&2
	exit 1
}
