#!/usr/bin/env bash
# Install the system tools the test lab uses (Debian 12 / bookworm, as root).
#
# Idempotent: when every needed tool is already present, apt is not touched at all.
# Package postinst scripts must not start services (docker-registry's stock config would listen
# on :5000 on all interfaces), so /usr/sbin/policy-rc.d (exit 101) is created if it is missing;
# an existing one is never overwritten.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

PACKAGES=(
  docker-registry   # distribution 2.8: the lab registry
  skopeo            # judge: copies/inspects every image format
  umoci             # judge: unpacks OCI layouts
  podman            # Docker-API daemon (podman system service)
  runc              # runtime for podman and dockerd (crun fails on hybrid cgroups)
  oci-image-tool    # judge: validates OCI layouts
  busybox-static    # tiny static payload for fixture images
  apache2-utils     # htpasswd (bcrypt) for the basic-auth registry
  openssl
  zstd              # zstd layers
  curl
  docker.io         # dockerd + containerd
  jq
  uidmap            # newuidmap/newgidmap, used by podman
  iptables          # a docker.io dependency; named so a missing one is noticed
  util-linux        # mountpoint/umount for daemon cleanup
)

# tool -> package that provides it; apt runs only if one of these is missing.
declare -A TOOLS=(
  [docker-registry]=docker-registry
  [skopeo]=skopeo
  [umoci]=umoci
  [podman]=podman
  [runc]=runc
  [oci-image-tool]=oci-image-tool
  [htpasswd]=apache2-utils
  [openssl]=openssl
  [zstd]=zstd
  [curl]=curl
  [dockerd]=docker.io
  [containerd]=docker.io
  [docker]=docker.io
  [jq]=jq
  [newuidmap]=uidmap
  [iptables]=iptables
  [umount]=util-linux
)

if [[ $(id -u) -ne 0 ]]; then
  echo "install-system-deps: must run as root" >&2
  exit 1
fi

if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  echo "install-system-deps: created /usr/sbin/policy-rc.d (services will not auto-start)"
fi

has_tool() {
  PATH="$PATH:/usr/sbin:/sbin" command -v "$1" >/dev/null 2>&1
}

busybox_static_ok() {
  # The lab needs the statically linked busybox from busybox-static, not the dynamic one.
  [[ "$(dpkg-query -W -f='${db:Status-Status}' busybox-static 2>/dev/null || true)" == installed ]] &&
    [[ -x /bin/busybox ]]
}

missing=()
for tool in "${!TOOLS[@]}"; do
  has_tool "$tool" || missing+=("$tool")
done
busybox_static_ok || missing+=("busybox(static)")

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-system-deps: all tools present, nothing to do"
  exit 0
fi

echo "install-system-deps: missing ${missing[*]}; installing packages"
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}"

still=()
for tool in "${!TOOLS[@]}"; do
  has_tool "$tool" || still+=("$tool")
done
busybox_static_ok || still+=("busybox(static)")
if [[ ${#still[@]} -ne 0 ]]; then
  echo "install-system-deps: still missing after install: ${still[*]}" >&2
  exit 1
fi
echo "install-system-deps: done"
