#!/bin/sh
# macOS's pf ABI (src/pf/abi/macos.rs) checked against the real xnu sources,
# as tests/abi-headers.sh checks the BSDs against their headers. macOS ships
# no net/pfvar.h, so this takes from an xnu tree's bsd/net/pfvar.h the
# structures, flags, enums and request numbers pfknock uses, puts them after
# the SDK's own system headers (those zig ships for macOS), and compiles
# tests/abi_headers.rs's facts for macOS against them, for x86_64 and
# aarch64. Any disagreement fails the compile, and the assertion's message
# names the fact.
#
# Not in CI: the xnu sources are not on a package registry. Give a checkout
# of github.com/apple-oss-distributions/xnu:
#
#   sh tests/abi-xnu.sh /path/to/xnu
#
# zig is found by tests/abi-facts.sh.
set -eu
cd "$(dirname "$0")/.."

xnu=${1:-}
pfvar=$xnu/bsd/net/pfvar.h
if [ -z "$xnu" ] || [ ! -f "$pfvar" ]; then
	echo "abi-xnu: usage: sh tests/abi-xnu.sh XNU_TREE (with bsd/net/pfvar.h)" >&2
	exit 2
fi
# shellcheck source=tests/abi-facts.sh
. tests/abi-facts.sh

# From pfvar.h: the one-line #defines of the names below, every top-level
# enum block that declares one of the enumerators below, and the structs
# below, each from its first line to its closing "};".
defines='PF_TABLE_NAME_SIZE|PF_ANCHOR_NAME_SIZE|PFR_TFLAG_[A-Z]+|PFR_FLAG_[A-Z]+|DIOCR[A-Z]+|DIOCGETLIMIT|DIOCGETSRCNODES|pfrio_[a-z0-9]+|psn_buf|psn_src_nodes'
enums='PF_LIMIT_STATES|PFR_FB_NONE|PFR_DIR_IN|PFR_OP_BLOCK|PFR_REFCNT_RULE'
structs='pfr_table|pfr_addr|pfr_astats|pfr_tstats|pfioc_table|pfioc_limit|pfioc_src_nodes'
{
	echo "/* the SDK's system headers, then xnu $(basename "$xnu")'s bsd/net/pfvar.h, in part */"
	printf '#include <%s>\n' sys/types.h sys/param.h sys/ioctl.h sys/socket.h netinet/in.h stddef.h
	grep -E "^#define[[:space:]]+($defines)[[:space:]]" "$pfvar"
	awk -v pat="^enum[[:space:]]*[{][[:space:]]*($enums)[,[:space:]]" '
		$0 ~ pat { on = 1 }
		on { print }
		on && /};/ { on = 0 }' "$pfvar"
	awk -v pat="^struct ($structs) [{]" '
		$0 ~ pat { on = 1 }
		on { print }
		on && /^};/ { on = 0 }' "$pfvar"
} >"$tmp/xnu.h"
for s in pfr_table pfr_addr pfr_astats pfr_tstats pfioc_table pfioc_limit pfioc_src_nodes; do
	grep -q "^struct $s {" "$tmp/xnu.h" || {
		echo "abi-xnu: struct $s is not in $pfvar" >&2
		exit 1
	}
done

rc=0
n=$(grep -c '_Static_assert' "$tmp/macos.c")
for arch in x86_64 aarch64; do
	# shellcheck disable=SC2086 # $zig may be "python -m ziglang"
	if $zig cc -target "$arch-macos" -include "$tmp/xnu.h" -c -o "$tmp/macos-$arch.o" \
		"$tmp/macos.c" >"$tmp/macos-$arch.log" 2>&1; then
		echo "abi-xnu: $arch-macos: $n facts agree with xnu's pfvar.h"
	else
		rc=1
		echo "abi-xnu: $arch-macos: disagreement with xnu's pfvar.h:" >&2
		grep -o '"pfknock [^"]*"\|error: .*' "$tmp/macos-$arch.log" | sed 's/^/  /' >&2
	fi
done
exit $rc
