#!/usr/bin/env bash
# Installs what building and testing the appliance needs on a Debian/Ubuntu
# machine (as root). Idempotent: installs only what is missing.
set -euo pipefail

need_pkgs=()
have() { command -v "$1" >/dev/null 2>&1; }
have qemu-system-x86_64 || need_pkgs+=(qemu-system-x86)
have depmod || need_pkgs+=(kmod)
[ -x /bin/busybox ] && /bin/busybox --list >/dev/null 2>&1 && { ldd /bin/busybox 2>&1 || true; } | grep -q "not a dynamic" || need_pkgs+=(busybox-static)
have cpio || need_pkgs+=(cpio)
have dpkg-deb || need_pkgs+=(dpkg)
have apt-get || { echo "setup: apt-get not found: a Debian or Ubuntu machine is needed" >&2; exit 2; }
have sgdisk || need_pkgs+=(gdisk)
have mkfs.vfat || need_pkgs+=(dosfstools)
have mcopy || need_pkgs+=(mtools)
have mkfs.ext4 || need_pkgs+=(e2fsprogs)
have mkfs.exfat || need_pkgs+=(exfatprogs)
have mkfs.xfs || need_pkgs+=(xfsprogs)
have mkfs.btrfs || need_pkgs+=(btrfs-progs)
have ntfs-3g || need_pkgs+=(ntfs-3g)
have losetup || need_pkgs+=(mount)
# QEMU's guestfwd to a chardev connects once per VM; `cmd:socat` connects
# once per guest connection (network tests).
have socat || need_pkgs+=(socat)
have zstd || need_pkgs+=(zstd)
have tmux || need_pkgs+=(tmux)
have syslinux || need_pkgs+=(syslinux)
have xorriso || need_pkgs+=(xorriso)
[ -f /usr/lib/ISOLINUX/isolinux.bin ] || need_pkgs+=(isolinux)
[ -f /usr/lib/syslinux/mbr/gptmbr.bin ] || need_pkgs+=(syslinux-common)
[ -f /usr/share/OVMF/OVMF_CODE_4M.secboot.fd ] || need_pkgs+=(ovmf)
[ -f /usr/lib/PXELINUX/pxelinux.0 ] || need_pkgs+=(pxelinux)
[ -f /usr/lib/syslinux/modules/bios/ldlinux.c32 ] || need_pkgs+=(syslinux-common)
[ -f /usr/lib/ipxe/qemu/pxe-e1000.rom ] || need_pkgs+=(ipxe-qemu)
have ddrescue || need_pkgs+=(gddrescue)
have mdadm || need_pkgs+=(mdadm)
# lvm2 writes the PVs the lvm crate's tests read (the oracle).
have lvm || need_pkgs+=(lvm2)
have debugvmfs || need_pkgs+=(vmfs-tools)
have debugvmfs6 || need_pkgs+=(vmfs6-tools)
have sha256sum || need_pkgs+=(coreutils)
have cc || need_pkgs+=(gcc)
have qemu-img || need_pkgs+=(qemu-utils)
# nbdinfo and nbdcopy: the export crate's tests read `rescue export` with them.
have nbdcopy || need_pkgs+=(libnbd-bin)
# NTFS destinations: mkntfs, ntfscp, ntfscat, ntfsfix and ntfs-3g itself
# make and check the test volumes (image-build downloads its own copy).
have mkntfs || need_pkgs+=(ntfs-3g)
have readelf || need_pkgs+=(binutils)
# Network destinations (tests/netdest.rs): a userspace NFS server and smbd
# on high ports of 127.0.0.1; smbclient and libnfs's nfs-ls to look at them.
have ganesha.nfsd || need_pkgs+=(nfs-ganesha)
[ -f /usr/lib/x86_64-linux-gnu/ganesha/libfsalvfs.so ] || need_pkgs+=(nfs-ganesha-vfs)
have smbd || need_pkgs+=(samba)
have smbclient || need_pkgs+=(smbclient)
have nfs-ls || need_pkgs+=(libnfs-utils)
# The remote console: dropbearkey and dropbear make and serve keys in the
# sshd crate's tests (image-build downloads its own copy for the image);
# ssh/ssh-keygen, sshpass and openssl (sha512-crypt oracle) drive them.
have dropbearkey || need_pkgs+=(dropbear-bin)
have ssh-keygen || need_pkgs+=(openssh-client)
have sshpass || need_pkgs+=(sshpass)
have openssl || need_pkgs+=(openssl)
have losetup || need_pkgs+=(mount)

if [ ${#need_pkgs[@]} -gt 0 ]; then
    echo "setup: installing ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # One package per call: a combined install can report held packages.
    for p in "${need_pkgs[@]}"; do
        apt-get install -y -q --no-install-recommends "$p"
    done
fi

if ! have cargo; then
    echo "setup: cargo not found; install Rust with rustup first" >&2
    exit 2
fi
if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
    echo "setup: adding the x86_64-unknown-linux-musl target"
    rustup target add x86_64-unknown-linux-musl
fi

# ESXi-written VMFS images that ../shared/fixtures/vmfs lacks (VMFS-L, the
# OSDATA format of ESXi 7+, with and without LVM; resource-optimized; no
# dense sub-block addresses) come from the same public source as the others:
# dissect.vmfs 3.13's sdist on PyPI (checked by SHA-256), unpacked into
# target/vmfs-pypi/ for tools/vmfs/tests/more_images.rs.
pypi_dir="$(cd "$(dirname "$0")/.." && pwd)/target/vmfs-pypi"
pypi_sha=904a4116b944acfc6a7a9de013ae1db14c760cb76138fd77c6a5b510b98c828d
pypi_files=(vmfs5l vmfs5ld vmfs6l vmfs6ld vmfs5-resource-optimized vmfs6-resource-optimized vmfs5-no-dense-sbpc)
if [ ! -f "$pypi_dir/.complete" ]; then
    if ! have pip3 && ! have pip; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q && apt-get install -y -q --no-install-recommends python3-pip
    fi
    pip=$(command -v pip3 || command -v pip)
    tmp=$(mktemp -d)
    if "$pip" download -q --no-deps --no-binary :all: dissect.vmfs==3.13 -d "$tmp" &&
        echo "$pypi_sha  $tmp/dissect_vmfs-3.13.tar.gz" | sha256sum -c --quiet; then
        mkdir -p "$pypi_dir"
        tar -xzf "$tmp/dissect_vmfs-3.13.tar.gz" -C "$pypi_dir" --strip-components=4 \
            $(for f in "${pypi_files[@]}"; do echo "dissect_vmfs-3.13/tests/_data/vmfs/$f.bin.gz"; done)
        touch "$pypi_dir/.complete"
    else
        echo "setup: could not fetch dissect.vmfs 3.13 from PyPI; the VMFS-L image tests will fail" >&2
    fi
    rm -rf "$tmp"
fi
