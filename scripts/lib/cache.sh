# Sourced by scripts/install-deps, scripts/package and scripts/image:
# the machine's cache of what those scripts build that does not depend on
# the checkout (tools from crates.io at pinned versions, the QEMU base root
# filesystems). A fresh clone on the same machine finds them there instead
# of spending 5 to 25 minutes building them again; a fresh machine builds
# them once. Every entry is named by what it was built from (a version, a
# hash of a recipe), so a stale entry is never used.
#
#   SEALCAM_CACHE   the cache's directory; by default /var/cache/sealcam for
#                   root, else ${XDG_CACHE_HOME:-~/.cache}/sealcam.
#
# Deleting the directory is always safe.

if [ -z "${SEALCAM_CACHE:-}" ]; then
  if [ "$(id -u)" -eq 0 ]; then
    SEALCAM_CACHE=/var/cache/sealcam
  else
    SEALCAM_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/sealcam"
  fi
fi

# cached_cargo_install REPO CRATE VERSION [CARGO INSTALL ARGUMENTS...]:
# CRATE@VERSION built once into the cache (with --locked), its binaries
# linked into REPO/.tools/bin. Concurrent callers wait for one build.
cached_cargo_install() {
  local repo="$1" crate="$2" version="$3"
  shift 3
  local root="$SEALCAM_CACHE/tools/$crate-$version"
  mkdir -p "$SEALCAM_CACHE/tools" "$repo/.tools/bin"
  (
    flock 8
    if [ ! -f "$root/.done" ]; then
      echo "building $crate $version into $root (once per machine; a few minutes)" >&2
      rm -rf "$root"
      cargo install "$crate" --version "$version" --locked --quiet --root "$root" "$@" >&2
      touch "$root/.done"
    fi
  ) 8>"$SEALCAM_CACHE/tools/$crate.lock"
  local bin
  for bin in "$root"/bin/*; do
    ln -sfn "$bin" "$repo/.tools/bin/$(basename "$bin")"
  done
}
