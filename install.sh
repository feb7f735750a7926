#!/bin/sh
#
# Install pfknock where FreeBSD or OpenBSD expects it. Build first:
#
#	cargo build --release
#	./install.sh			# as root
#
# Options:
#	-h			this usage, on standard output
#	-o freebsd|openbsd|linux	the target system (default: this one, by uname)
#	-p PREFIX		default /usr/local
#	-d DESTDIR		stage under DESTDIR (for packages); default none
#	-b BINARY		default target/release/pfknock
#
# FreeBSD: PREFIX/sbin/pfknock, PREFIX/share/man/man{5,8}, the rc.d script
# as PREFIX/etc/rc.d/pfknock, PREFIX/etc/pfknock.toml.sample (copied to
# PREFIX/etc/pfknock.toml if that does not exist yet).
# OpenBSD: PREFIX/sbin/pfknock, PREFIX/man/man{5,8}, /etc/rc.d/pfknock,
# PREFIX/share/examples/pfknock/ (pfknock.toml copied to /etc/pfknock.toml
# if that does not exist yet).
# Linux: PREFIX/sbin/pfknock, PREFIX/share/man/man{5,8}, the systemd unit
# as /etc/systemd/system/pfknock.service, PREFIX/share/examples/pfknock/
# (pfknock.toml copied to /etc/pfknock.toml if that does not exist yet).
# A live configuration is never overwritten.

set -eu

usage() {
	echo "usage: install.sh [-h] [-o freebsd|openbsd|linux] [-p prefix] [-d destdir] [-b binary]"
}

os=$(uname -s | tr '[:upper:]' '[:lower:]')
prefix=/usr/local
destdir=
bin=target/release/pfknock
while getopts :ho:p:d:b: opt; do
	case $opt in
	h)
		usage
		exit 0
		;;
	o) os=$OPTARG ;;
	p) prefix=$OPTARG ;;
	d) destdir=$OPTARG ;;
	b) bin=$OPTARG ;;
	:)
		echo "install.sh: -$OPTARG needs an argument" >&2
		usage >&2
		exit 2
		;;
	*)
		echo "install.sh: -$OPTARG: unknown option" >&2
		usage >&2
		exit 2
		;;
	esac
done
shift $((OPTIND - 1))
if [ $# -ne 0 ]; then
	usage >&2
	exit 2
fi

cd "$(dirname "$0")"
if [ ! -x "$bin" ]; then
	echo "install.sh: $bin: not built (cargo build --release)" >&2
	exit 1
fi

# install(1) with a mode; directories first.
put() {
	mode=$1 src=$2 dst=$3
	mkdir -p "$(dirname "$dst")"
	cp "$src" "$dst.tmp.$$"
	chmod "$mode" "$dst.tmp.$$"
	mv "$dst.tmp.$$" "$dst"
	echo "installed $dst"
}

# The rc.d script, with the ports' placeholders filled in by sed(1).
rcscript() {
	src=$1 dst=$2
	shift 2
	mkdir -p "$(dirname "$dst")"
	sed "$@" "$src" > "$dst.tmp.$$"
	chmod 555 "$dst.tmp.$$"
	mv "$dst.tmp.$$" "$dst"
	echo "installed $dst"
}

# The live config: only when there is none.
sample() {
	src=$1 dst=$2
	if [ -e "$dst" ]; then
		echo "kept $dst"
	else
		put 600 "$src" "$dst"
	fi
}

case $os in
freebsd)
	put 555 "$bin" "$destdir$prefix/sbin/pfknock"
	put 444 man/pfknock.8 "$destdir$prefix/share/man/man8/pfknock.8"
	put 444 man/pfknock.toml.5 "$destdir$prefix/share/man/man5/pfknock.toml.5"
	rcscript rc.d/freebsd/pfknock "$destdir$prefix/etc/rc.d/pfknock" \
		-e "s|%%PREFIX%%|$prefix|g"
	put 644 examples/pfknock.toml "$destdir$prefix/etc/pfknock.toml.sample"
	sample examples/pfknock.toml "$destdir$prefix/etc/pfknock.toml"
	for f in examples/*; do
		put 444 "$f" "$destdir$prefix/share/examples/pfknock/$(basename "$f")"
	done
	;;
openbsd)
	put 555 "$bin" "$destdir$prefix/sbin/pfknock"
	put 444 man/pfknock.8 "$destdir$prefix/man/man8/pfknock.8"
	put 444 man/pfknock.toml.5 "$destdir$prefix/man/man5/pfknock.toml.5"
	rcscript rc.d/openbsd/pfknock "$destdir/etc/rc.d/pfknock" \
		-e "s|\${TRUEPREFIX}|$prefix|g" -e "s|\${SYSCONFDIR}|/etc|g"
	for f in examples/*; do
		put 444 "$f" "$destdir$prefix/share/examples/pfknock/$(basename "$f")"
	done
	sample examples/pfknock.toml "$destdir/etc/pfknock.toml"
	;;
linux)
	put 555 "$bin" "$destdir$prefix/sbin/pfknock"
	put 444 man/pfknock.8 "$destdir$prefix/share/man/man8/pfknock.8"
	put 444 man/pfknock.toml.5 "$destdir$prefix/share/man/man5/pfknock.toml.5"
	unit="$destdir/etc/systemd/system/pfknock.service"
	mkdir -p "$(dirname "$unit")"
	sed -e "s|%%PREFIX%%|$prefix|g" systemd/pfknock.service > "$unit.tmp.$$"
	chmod 644 "$unit.tmp.$$"
	mv "$unit.tmp.$$" "$unit"
	echo "installed $unit"
	for f in examples/*; do
		put 444 "$f" "$destdir$prefix/share/examples/pfknock/$(basename "$f")"
	done
	sample examples/pfknock.toml "$destdir/etc/pfknock.toml"
	;;
*)
	echo "install.sh: $os: not FreeBSD, OpenBSD or Linux (give -o)" >&2
	exit 1
	;;
esac

if [ "$os" = linux ]; then
	cat <<MSG

Next: edit /etc/pfknock.toml, check it with "pfknock check", and enable
the daemon:
	systemctl daemon-reload && systemctl enable --now pfknock
For signed knocks (spa; see the example spa.toml), create the listener's
user once:
	useradd --system --no-create-home --shell /usr/sbin/nologin _pfknock
MSG
	exit 0
fi
cat <<MSG

Next: put the line
	anchor "pfknock"
into /etc/pf.conf (see $prefix/share/examples/pfknock/pf.conf), edit the
configuration, check it with "pfknock check", and enable the daemon:
MSG
if [ "$os" = freebsd ]; then
	echo "	service pfknock enable && service pfknock start"
else
	echo "	rcctl enable pfknock && rcctl start pfknock"
fi
