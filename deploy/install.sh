#!/bin/bash
# Install handpos on Raspberry Pi OS Lite (Bookworm): the handpos user and its groups,
# the Debian packages, a venv under /opt/handpos with the application, the
# configuration (kept when present), the hardened systemd unit, udev and polkit rules,
# the keypad overlay and the board's config.txt lines. docs/raspberry-pi.md explains
# each step and how to do it by hand.
#
#   sudo deploy/install.sh [--board pizero2w|pi4|pi5] [--dry-run]
#   deploy/install.sh --root DIR --board pi5 [--dry-run]    staging root (tests, images)
#
# --dry-run prints every action and changes nothing. --root DIR writes the files under
# DIR and does not touch the running system: no apt-get, no venv (its paths would be
# DIR's; an image builder runs this script inside its chroot without --root instead),
# no systemctl start, no udevadm; users come from systemd-sysusers --root. Running it
# again changes nothing that is already right: files are compared before they are
# written, config.txt's block is replaced whole, and an existing handpos.toml is kept.
set -euo pipefail

ARGS="$*"
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=""
DRY=0
BOARD=""
OS_RELEASE=${HANDPOS_OS_RELEASE:-/etc/os-release}    # tests point it elsewhere
CHANGED=0

usage() {
    sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "$*"; }

while [ $# -gt 0 ]; do
    case $1 in
        --root) [ $# -ge 2 ] || die "--root needs a folder"; ROOT=$2; shift 2 ;;
        --root=*) ROOT=${1#--root=}; shift ;;
        --board) [ $# -ge 2 ] || die "--board needs a profile name"; BOARD=$2; shift 2 ;;
        --board=*) BOARD=${1#--board=}; shift ;;
        --dry-run|-n) DRY=1; shift ;;
        -h|--help) usage 0 ;;
        *) echo "install.sh: unknown option $1" >&2; usage 2 ;;
    esac
done

if [ -n "$ROOT" ]; then
    [ -d "$ROOT" ] || die "--root $ROOT: no such folder"
    ROOT=$(cd "$ROOT" && pwd)
    [ "$ROOT" != / ] || ROOT=""
fi

# -- where are we ---------------------------------------------------------------------
# Only Debian and its derivatives (Raspberry Pi OS says ID=debian, or ID=raspbian with
# ID_LIKE=debian on 32-bit): the packages, paths and groups below are theirs. A staging
# root may be built anywhere.
if [ -z "$ROOT" ]; then
    os_id="" os_like="" os_codename=""
    if [ -r "$OS_RELEASE" ]; then
        os_id=$(. "$OS_RELEASE"; echo "${ID:-}")
        os_like=$(. "$OS_RELEASE"; echo "${ID_LIKE:-}")
        os_codename=$(. "$OS_RELEASE"; echo "${VERSION_CODENAME:-}")
    fi
    case " $os_id $os_like " in
        *" debian "*|*" raspbian "*) ;;
        *) die "this is not Debian or Raspberry Pi OS (${os_id:-no $OS_RELEASE}): refusing to
install here. On another system follow docs/raspberry-pi.md by hand, or stage the
files with --root DIR." ;;
    esac
    if [ "$os_codename" != bookworm ]; then
        say "note: written for Bookworm, this is ${os_codename:-an unnamed release}; going on"
    fi
    if [ "$DRY" = 0 ] && [ "$(id -u)" != 0 ]; then
        die "run as root (sudo $0 $ARGS), or look first with --dry-run"
    fi
fi

# -- which board ------------------------------------------------------------------------
if [ -z "$BOARD" ]; then
    model=$(tr -d '\0' < /proc/device-tree/model 2>/dev/null || true)
    case $model in
        *"Raspberry Pi 5"*|*"Compute Module 5"*) BOARD=pi5 ;;
        *"Raspberry Pi 4"*|*"Compute Module 4"*|*"Raspberry Pi 400"*) BOARD=pi4 ;;
        *"Zero 2"*) BOARD=pizero2w ;;
        *) die "cannot tell the board (${model:-no /proc/device-tree/model}): name it with
--board $(cd "$SRC/board/profiles" && ls *.toml | sed 's/\.toml$//' | grep -v '^sim$' | tr '\n' ' ')" ;;
    esac
    say "board: $BOARD ($model)"
fi
PROFILE="$SRC/board/profiles/$BOARD.toml"
[ -f "$PROFILE" ] || die "no board profile $PROFILE"
BOARDCONF=(python3 "$SRC/deploy/boardconf.py")
CONFIG_LINES=$("${BOARDCONF[@]}" lines "$PROFILE") || die "board $BOARD cannot be installed on a Pi"
EXTRA=$("${BOARDCONF[@]}" extra "$PROFILE")

# -- actions: each says what it does; --dry-run stops there ---------------------------
run() {
    say "+ $*"
    [ "$DRY" = 1 ] && return 0
    "$@"
}

# install_file SRC DEST MODE [WHAT]: copy when different, keep it when the same
install_file() {
    local src=$1 dest=$ROOT$2 mode=$3 have
    have=${mode#0}
    # the boot partition is FAT: its files show the mount's mode, whatever was asked
    case $2 in /boot/*) ;; *) [ -f "$dest" ] && have=$(stat -c %a "$dest") ;; esac
    if [ -f "$dest" ] && cmp -s "$src" "$dest" && [ "$have" = "${mode#0}" ]; then
        say "unchanged $2"
        return 0
    fi
    CHANGED=$((CHANGED + 1))
    say "install $2 (${4:-from ${src#$SRC/}}, mode $mode)"
    [ "$DRY" = 1 ] && return 0
    install -D -m "$mode" "$src" "$dest"
}

# write_file DEST MODE TEXT
write_file() {
    local tmp
    tmp=$(mktemp)
    printf '%s\n' "$3" > "$tmp"
    install_file "$tmp" "$1" "$2" "generated"
    rm -f "$tmp"
}

# Debian packages. From the README and the Makefile: python3-venv and xfonts-wqy (the
# CJK font), pcscd with libpcsclite-dev and swig (pyscard builds against them),
# tpm2-tools (the TPM key root). What the device needs besides: libccid (the CCID
# reader driver), python3-dev and build-essential (wheels that piwheels lacks),
# device-tree-compiler (the keypad overlay), raspi-utils (vcmailbox: the OTP key root),
# i2c-tools (i2cdetect, for the display), network-manager (the terminal's network
# settings), polkitd (pcscd's access and nmcli's).
DEBS=(python3-venv python3-dev build-essential xfonts-wqy pcscd libccid libpcsclite-dev
      swig tpm2-tools device-tree-compiler raspi-utils i2c-tools network-manager polkitd)

packages() {
    if [ -n "$ROOT" ]; then
        say "skip apt-get (staging root): the image needs ${DEBS[*]}"
        return 0
    fi
    local missing=() p
    for p in "${DEBS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if [ ${#missing[@]} = 0 ]; then
        say "unchanged Debian packages (all installed)"
        return 0
    fi
    CHANGED=$((CHANGED + 1))
    run apt-get update
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

users() {
    install_file "$SRC/deploy/sysusers.d/handpos.conf" /usr/lib/sysusers.d/handpos.conf 0644
    local conf=$ROOT/usr/lib/sysusers.d/handpos.conf
    [ "$DRY" = 1 ] && conf=$SRC/deploy/sysusers.d/handpos.conf
    if [ -n "$ROOT" ]; then
        if [ "$DRY" = 0 ]; then mkdir -p "$ROOT/etc"; fi
        run systemd-sysusers --root="$ROOT" "$conf"
    else
        run systemd-sysusers "$conf"
    fi
}

# The application: a venv of its own at /opt/handpos/venv with handpos installed from
# this checkout (not editable: the checkout may go away). The source's version is kept
# beside it, so an unchanged checkout is not reinstalled.
application() {
    local venv=/opt/handpos/venv stamp want
    if [ -n "$ROOT" ]; then
        say "skip venv $venv (staging root: run install.sh in the image's chroot to build it)"
        return 0
    fi
    want=$( (cd "$SRC" && git rev-parse HEAD 2>/dev/null && git status --porcelain 2>/dev/null) | sha256sum | cut -c1-16)
    want="$want $EXTRA"
    stamp=$venv/.handpos-source
    if [ -x "$venv/bin/handpos" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        say "unchanged $venv (same source)"
        return 0
    fi
    CHANGED=$((CHANGED + 1))
    [ -x "$venv/bin/python" ] || run python3 -m venv "$venv"
    run "$venv/bin/pip" install --quiet --upgrade pip
    run "$venv/bin/pip" install --quiet "$SRC[$EXTRA]"
    [ "$DRY" = 1 ] || echo "$want" > "$stamp"
}

configuration() {
    local dest=/etc/handpos/handpos.toml
    if [ -e "$ROOT$dest" ]; then
        say "unchanged $dest (kept: it is the terminal's own)"
    else
        install_file "$SRC/config/handpos.example.toml" "$dest" 0640
        say "note: edit $dest (terminal.id, merchant, host) before starting handpos"
    fi
    write_file /etc/default/handpos 0644 "# the board profile handpos.service runs (deploy/install.sh)
HANDPOS_BOARD=$BOARD"
    install_file "$SRC/deploy/tmpfiles.d/handpos.conf" /usr/lib/tmpfiles.d/handpos.conf 0644
    # owners and modes (root:handpos 0750/0640); a staging root gets them at first boot
    [ -n "$ROOT" ] || run systemd-tmpfiles --create /usr/lib/tmpfiles.d/handpos.conf
}

service() {
    install_file "$SRC/board/handpos.service" /etc/systemd/system/handpos.service 0644
    if [ -n "$ROOT" ]; then
        run systemctl --root="$ROOT" enable handpos.service
    else
        run systemctl daemon-reload
        run systemctl enable handpos.service
    fi
}

rules() {
    install_file "$SRC/deploy/udev/99-handpos.rules" /etc/udev/rules.d/99-handpos.rules 0644
    install_file "$SRC/deploy/polkit/50-handpos.rules" /etc/polkit-1/rules.d/50-handpos.rules 0644
    if [ -z "$ROOT" ]; then
        run udevadm control --reload
        run udevadm trigger --action=change --subsystem-match=input --subsystem-match=tty \
            --subsystem-match=usbmisc --subsystem-match=usb
    fi
}

boot_files() {
    local fw=$ROOT/boot/firmware
    if [ ! -f "$fw/config.txt" ]; then
        local why="no /boot/firmware/config.txt: is this Raspberry Pi OS Bookworm? (older releases kept it in /boot)"
        [ -n "$ROOT" ] || [ "$DRY" = 1 ] || die "$why"
        [ -n "$ROOT" ] || { say "$why: a real run stops here"; return 0; }
        say "skip config.txt and the keypad overlay: $fw/config.txt does not exist in the staging root"
        return 0
    fi
    # the keypad overlay, compiled from its source; replaced only when it differs
    if grep -q '^dtoverlay=handpos-keypad' <<< "$CONFIG_LINES"; then
        if command -v dtc >/dev/null; then
            local dtbo
            dtbo=$(mktemp)
            dtc -q -@ -I dts -O dtb -o "$dtbo" "$SRC/deploy/overlays/handpos-keypad-overlay.dts"
            install_file "$dtbo" /boot/firmware/overlays/handpos-keypad.dtbo 0644 \
                "compiled from deploy/overlays/handpos-keypad-overlay.dts"
            rm -f "$dtbo"
        elif [ -n "$ROOT" ] || [ "$DRY" = 1 ]; then
            say "skip handpos-keypad.dtbo: no dtc here (package device-tree-compiler)"
        else
            die "dtc is missing (apt-get install device-tree-compiler)"
        fi
    fi
    say "config.txt lines for $BOARD:"
    sed 's/^/    /' <<< "$CONFIG_LINES"
    local f cmd rc out
    for f in config.txt cmdline.txt; do
        [ -f "$fw/$f" ] || continue
        cmd=config-txt
        [ "$f" = cmdline.txt ] && cmd=cmdline
        rc=0
        if [ "$DRY" = 1 ]; then
            "${BOARDCONF[@]}" "$cmd" "$PROFILE" "$fw/$f" --check || rc=$?
            if [ $rc = 1 ]; then CHANGED=$((CHANGED + 1)); fi
        else
            out=$("${BOARDCONF[@]}" "$cmd" "$PROFILE" "$fw/$f") || die "cannot edit $fw/$f"
            say "${out/$ROOT/}"
            case $out in changed*) CHANGED=$((CHANGED + 1)); REBOOT=1 ;; esac
        fi
        [ $rc -le 1 ] || die "cannot edit $fw/$f"
    done
    # the TTY a login shell would hold: the kernel console on the UART is gone from
    # cmdline.txt above; the getty started for it goes with it at the next boot
}

REBOOT=0
[ "$DRY" = 1 ] && say "dry run: nothing is changed"
say "installing handpos for board $BOARD${ROOT:+ into $ROOT}"
packages
users
application
configuration
service
rules
boot_files

if [ "$CHANGED" = 0 ]; then
    say "done: nothing to change"
else
    say "done: $CHANGED change(s)"
fi
if [ "$REBOOT" = 1 ] && [ -z "$ROOT" ]; then
    say "reboot for the config.txt/cmdline.txt changes (overlays, UART), then: systemctl status handpos"
fi
