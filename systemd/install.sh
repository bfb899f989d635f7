#!/bin/sh
# Install poolgate: binary, systemd units, configuration. Safe to run again: files
# that are already up to date are left alone, and configuration files you edited
# are never overwritten (the shipped version is put beside them as FILE.new).
#
# Usage: systemd/install.sh [PATH/TO/poolgate]     (default: target/release/poolgate)
#
# Environment:
#   DESTDIR     staging root, e.g. for packaging or tests (default: empty = live system;
#               with DESTDIR set no user is created, nothing is chowned, systemd is not told)
#   PREFIX      binary prefix (default /usr/local; the binary goes to $PREFIX/bin)
#   SYSCONFDIR  configuration root (default /etc; files go to $SYSCONFDIR/poolgate)
#   UNITDIR     systemd unit directory (default /etc/systemd/system)
set -eu

here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
repo=$(dirname -- "$here")
bin=${1:-$repo/target/release/poolgate}
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}
SYSCONFDIR=${SYSCONFDIR:-/etc}
UNITDIR=${UNITDIR:-/etc/systemd/system}
confdir=$SYSCONFDIR/poolgate
user=poolgate

say() { printf '%s\n' "$*"; }

if [ ! -x "$bin" ]; then
    say "install.sh: $bin is not an executable; build it first (cargo build --release -p poolgate)" >&2
    exit 1
fi

# Put $2 at $1 with mode $3 unless identical; atomic replace (a running binary is fine).
put() {
    dst=$1 src=$2 mode=$3
    if [ -f "$dst" ] && cmp -s "$src" "$dst"; then
        say "unchanged  $dst"
        return 0
    fi
    mkdir -p "$(dirname -- "$dst")"
    tmp="$dst.tmp.$$"
    cp "$src" "$tmp"
    chmod "$mode" "$tmp"
    mv -f "$tmp" "$dst"
    say "installed  $dst"
}

# Configuration: never overwrite an existing (possibly edited) file.
put_config() {
    dst=$1 src=$2
    if [ ! -e "$dst" ]; then
        put "$dst" "$src" 0644
    elif cmp -s "$src" "$dst"; then
        say "unchanged  $dst"
    else
        say "kept       $dst (yours differs; shipped version in $dst.new)"
        put "$dst.new" "$src" 0644 >/dev/null
    fi
}

# 1. The service user (live system only).
if [ -z "$DESTDIR" ] && ! getent passwd "$user" >/dev/null 2>&1; then
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin --comment "poolgate RSerPool gateway" "$user"
    say "created    user $user"
fi

# 2. Binary.
put "$DESTDIR$PREFIX/bin/poolgate" "$bin" 0755

# 3. Units, pointing at the binary's real location.
tmpdir=$(mktemp -d)
trap 'rm -rf "$tmpdir"' EXIT
for unit in poolgate-registrar.service poolgate-ppu.service poolgate-ppe@.service; do
    sed "s|/usr/local/bin/poolgate|$PREFIX/bin/poolgate|g" "$here/$unit" >"$tmpdir/$unit"
    put "$DESTDIR$UNITDIR/$unit" "$tmpdir/$unit" 0644
done

# 4. Configuration and the secrets directory (keys, registration secrets: mode 600).
for f in registrar.toml ppu.toml ppe.toml; do
    put_config "$DESTDIR$confdir/$f" "$repo/config/$f"
done
mkdir -p "$DESTDIR$confdir/secrets"
chmod 0700 "$DESTDIR$confdir/secrets"
if [ -z "$DESTDIR" ]; then
    chown "$user:$user" "$confdir/secrets"
fi

# 5. Tell systemd (live system with systemd running only).
if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload
    say "reloaded   systemd"
fi

say "done. Next: edit $confdir/*.toml (PPE: copy ppe.toml to ppe-NAME.toml and add a"
say "pool key in $confdir/secrets), run 'poolgate check --config FILE', then"
say "systemctl enable --now poolgate-registrar poolgate-ppe@NAME poolgate-ppu"
