#!/usr/bin/env bash
# usage: scripts/container-setup.sh [--suite forky|trixie] [--no-fallback] [--check] [--help]
#
# Prepares a machine without Docker and without an image registry to build and
# run the image with podman (what CI and the container test use):
#   1. installs podman, runc, catatonit, netavark, mmdebstrap when missing (apt-get, root);
#   2. writes /etc/containers/{containers,storage}.conf: host network only (no bridge
#      is ever created), runc, cgroupfs, rlimits within the machine's hard limits;
#   3. builds a Debian base image with Python from Debian packages (mmdebstrap),
#      cached by content as a tarball, and imports it as localhost/debian-python:<suite>.
# Idempotent: a re-run with everything in place takes about a second.
# Prints the base image name as the last line on stdout; logs go to stderr.
#
#   --suite S      Debian suite: forky (Python 3.14, default) or trixie (3.13)
#   --no-fallback  do not fall back to trixie when the forky root fs cannot be made
#   --check        only report whether podman and the base image are ready (exit 1 if not)
#
# Environment: LAMBDA_COVERAGE_CACHE (cache dir, default ~/.cache/lambda-coverage),
#              DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

SUITE=forky
FALLBACK=1
CHECK=0
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage_from_header; exit 0 ;;
    --suite) SUITE=${2:?--suite needs a value}; shift 2 ;;
    --no-fallback) FALLBACK=0; shift ;;
    --check) CHECK=1; shift ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
case "$SUITE" in forky | trixie) ;; *) die "--suite must be forky or trixie" ;; esac

CACHE=${LAMBDA_COVERAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lambda-coverage}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=(podman runc catatonit netavark mmdebstrap ca-certificates curl)
BASE_PACKAGES=python3,python3-venv,ca-certificates
MARKER="# written by lambda-coverage scripts/container-setup.sh"

tools_present() {
  command -v podman >/dev/null && command -v runc >/dev/null && command -v mmdebstrap >/dev/null \
    && command -v catatonit >/dev/null && [ -x /usr/lib/podman/netavark ]
}

base_tag() { printf 'localhost/debian-python:%s\n' "$1"; }

if [ "$CHECK" = 1 ]; then
  tools_present || { log "podman and its helpers are not installed"; exit 1; }
  podman image exists "$(base_tag "$SUITE")" || { log "no base image $(base_tag "$SUITE")"; exit 1; }
  base_tag "$SUITE"
  exit 0
fi

[ "$(id -u)" = 0 ] || tools_present || die "podman is missing and installing it needs root (apt-get)"

# ------------------------------------------------------------------ 1. packages
install_tools() {
  tools_present && return 0
  need_cmd apt-get "This script installs podman with apt-get (Debian/Ubuntu); elsewhere install podman, runc and mmdebstrap yourself."
  log "installing ${PACKAGES[*]} (apt-get, --no-install-recommends)"
  export DEBIAN_FRONTEND=noninteractive
  timeout 300 apt-get update -qq >&2 || log "warning: apt-get update failed; trying the install anyway"
  # runc, not crun: crun refuses hybrid cgroup v1/v2 hosts. netavark named explicitly so apt
  # does not pick the CNI plugins (which ship a bridge definition).
  timeout 600 apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >&2
}

# ------------------------------------------------------------------ 2. config
write_if_ours() { # write_if_ours FILE CONTENT: never overwrite a file someone else wrote
  local file=$1 content=$2
  if [ -f "$file" ] && ! grep -qF "$MARKER" "$file"; then
    log "keeping $file (not written by this script)"
    return 0
  fi
  if [ "$(cat "$file" 2>/dev/null)" != "$content" ]; then
    log "writing $file"
    printf '%s\n' "$content" > "$file"
  fi
}

write_config() {
  if [ "$(id -u)" != 0 ]; then
    log "not root: leaving /etc/containers as it is (rootless podman uses ~/.config/containers)"
    return 0
  fi
  mkdir -p /etc/containers
  local nofile nproc pidmax
  nofile=$(ulimit -Hn)
  nproc=$(ulimit -Hu)
  pidmax=$(cat /proc/sys/kernel/pid_max)
  [ "$nofile" = unlimited ] && nofile=1048576
  if [ "$nproc" = unlimited ] || [ "$nproc" -gt "$pidmax" ]; then nproc=$pidmax; fi
  write_if_ours /etc/containers/containers.conf "$MARKER
[containers]
netns = \"host\"
cgroupns = \"host\"
log_driver = \"k8s-file\"
default_ulimits = [\"nofile=$nofile:$nofile\", \"nproc=$nproc:$nproc\"]

[engine]
cgroup_manager = \"cgroupfs\"
events_logger = \"file\"
runtime = \"runc\"

[network]
network_backend = \"netavark\""
  write_if_ours /etc/containers/storage.conf "$MARKER
[storage]
driver = \"overlay\"
runroot = \"/run/containers/storage\"
graphroot = \"/var/lib/containers/storage\""
  # podman ships an (unused) CNI bridge definition: drop it so nothing can create a bridge.
  rm -f /etc/cni/net.d/87-podman-bridge.conflist
}

# ------------------------------------------------------------------ 3. base image
cache_key() { # everything that goes into the root fs
  {
    echo "suite=$1 mirror=$MIRROR packages=$BASE_PACKAGES recipe=3"
    cat /usr/local/share/ca-certificates/*.crt 2>/dev/null || true
  } | sha256sum | cut -c1-16
}

make_rootfs() { # make_rootfs SUITE TAR
  local suite=$1 tar=$2 tmp="${2%.tar}.tmp.tar" log="${2%.tar}.log"
  [ -s "$tar" ] && return 0
  log "creating the $suite root fs with mmdebstrap (about 20-45 s; log: $log)"
  rm -f "$tmp"
  # Only the host's extra CA certificates go in (a TLS-intercepting proxy needs them for pip);
  # /usr/local/bin/python{,3} mimic the official image.
  if ! timeout 900 mmdebstrap --variant=minbase --include="$BASE_PACKAGES" \
    --aptopt='APT::Install-Recommends "false"' \
    --aptopt='Acquire::Check-Valid-Until "false"' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='for c in /usr/local/share/ca-certificates/*.crt; do [ -e "$c" ] && cp "$c" "$1/usr/local/share/ca-certificates/"; done; chroot "$1" update-ca-certificates >/dev/null 2>&1' \
    --customize-hook='ln -sf /usr/bin/python3 "$1/usr/local/bin/python3"; ln -sf /usr/bin/python3 "$1/usr/local/bin/python"' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    "$suite" "$tmp" "$MIRROR" > "$log" 2>&1; then
    tail -20 "$log" >&2
    rm -f "$tmp"
    return 1
  fi
  mv "$tmp" "$tar"
}

import_base() { # import_base SUITE TAR KEY
  local tag
  tag=$(base_tag "$1")
  if [ "$(podman image inspect --format '{{index .Labels "lambda-coverage.base-key"}}' "$tag" 2>/dev/null)" = "$3" ]; then
    return 0
  fi
  log "importing $2 as $tag"
  podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "LABEL lambda-coverage.base-key=$3" \
    --change 'CMD ["python3"]' "$2" "$tag" > /dev/null 2>&1
}

base_image() { # base_image SUITE -> prints the tag
  local key tar
  key=$(cache_key "$1")
  tar="$CACHE/rootfs-$1-$key.tar"
  make_rootfs "$1" "$tar" || return 1
  import_base "$1" "$tar" "$key" || return 1
  # drop tarballs of older recipes of this suite
  find "$CACHE" -maxdepth 1 -name "rootfs-$1-*.tar" ! -name "rootfs-$1-$key.tar" -delete
  base_tag "$1"
}

mkdir -p "$CACHE"
exec 9> "$CACHE/setup.lock"
flock 9 # one setup at a time (parallel test runs share the cache and the image store)

install_tools
write_config
if tag=$(base_image "$SUITE"); then
  printf '%s\n' "$tag"
elif [ "$FALLBACK" = 1 ] && [ "$SUITE" = forky ]; then
  log "could not make the forky base image; falling back to trixie (Python 3.13)"
  base_image trixie
else
  die "could not make the $SUITE base image"
fi
