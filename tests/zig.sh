# Sourced by tests/abi-headers.sh and tests/abi-xnu.sh: sets $zig to a zig
# C compiler, from $PFKNOCK_ZIG (a zig binary, or "python -m ziglang"), the
# venv .ci/run makes ($PFKNOCK_ZIG_VENV, default /opt/pfknock-zig), or zig
# on $PATH; exits 2 when there is none.
# shellcheck shell=sh disable=SC2034 # $zig is for the script that sources this
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
