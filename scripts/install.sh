#!/usr/bin/env bash
# install.sh — install the director (what `make install` runs after building).
#
#   PREFIX      default /usr/local: $PREFIX/sbin/{director,lbadm,ipvsadm},
#               $PREFIX/lib/systemd/system/director.service, $PREFIX/share/doc/director/
#   SYSCONFDIR  default /etc: director.conf and default/director (never overwritten)
#   DESTDIR     staging root prepended to every path (packaging); empty by default
#   DIRECTOR_BIN, LBADM_BIN   the binaries (default: target/release/ of this repository)
#
# ipvsadm is a symbolic link to lbadm (lbadm takes ipvsadm's syntax); an ipvsadm that is not
# such a link (the real one) is left alone, with a warning. Prints what it installs.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=${PREFIX:-/usr/local}
SYSCONFDIR=${SYSCONFDIR:-/etc}
DESTDIR=${DESTDIR:-}
DIRECTOR_BIN=${DIRECTOR_BIN:-$REPO/target/release/director}
LBADM_BIN=${LBADM_BIN:-$REPO/target/release/lbadm}
SBINDIR=$PREFIX/sbin
UNITDIR=$PREFIX/lib/systemd/system
DOCDIR=$PREFIX/share/doc/director

die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }
say() { printf '  %s\n' "$*"; }

for b in "$DIRECTOR_BIN" "$LBADM_BIN"; do
    [[ -x $b ]] || die "no binary at $b (run \`make build\` first)"
done

subst() {  # subst SRC DST MODE: copy a template with the paths filled in
    local tmp
    tmp=$(mktemp)
    sed -e "s|@SBINDIR@|$SBINDIR|g" -e "s|@SYSCONFDIR@|$SYSCONFDIR|g" -e "s|@DOCDIR@|$DOCDIR|g" "$1" >"$tmp"
    install -D -m "$3" "$tmp" "$2"
    rm -f "$tmp"
}

echo "installing into ${DESTDIR:-/} (PREFIX=$PREFIX, SYSCONFDIR=$SYSCONFDIR)"
install -D -m 0755 "$DIRECTOR_BIN" "$DESTDIR$SBINDIR/director"
say "$SBINDIR/director"
install -D -m 0755 "$LBADM_BIN" "$DESTDIR$SBINDIR/lbadm"
say "$SBINDIR/lbadm"
link=$DESTDIR$SBINDIR/ipvsadm
if [[ -e $link && ! -L $link ]]; then
    printf 'install.sh: WARNING: %s exists and is not a link to lbadm: left alone (use lbadm)\n' "$SBINDIR/ipvsadm" >&2
else
    ln -sfn lbadm "$link"
    say "$SBINDIR/ipvsadm -> lbadm"
fi
subst "$REPO/scripts/install/director.service.in" "$DESTDIR$UNITDIR/director.service" 0644
say "$UNITDIR/director.service"
for pair in "director.conf.in:$SYSCONFDIR/director.conf:0600" "default.in:$SYSCONFDIR/default/director:0644"; do
    IFS=: read -r src dst mode <<<"$pair"
    if [[ -e $DESTDIR$dst ]]; then
        say "$dst (exists, kept)"
    else
        subst "$REPO/scripts/install/$src" "$DESTDIR$dst" "$mode"
        say "$dst"
    fi
done
for doc in README.md docs/architecture.md docs/protocol.md docs/monitoring.md; do
    if [[ -f $REPO/$doc ]]; then
        install -D -m 0644 "$REPO/$doc" "$DESTDIR$DOCDIR/$(basename "$doc")"
    fi
done
say "$DOCDIR/"
if [[ -z $DESTDIR && -d /run/systemd/system ]]; then
    systemctl daemon-reload || true
    echo "next: edit $SYSCONFDIR/default/director, then: systemctl enable --now director"
fi
