#!/usr/bin/env bash
# Sets up a Cargo package that depends on couplet; run through
#   bash <couplet>/scripts/setup-libtorch.sh --for PATH/TO/CRATE
# which installs libtorch first. Usage here: setup-crate.sh COUPLET_CHECKOUT CRATE_DIR.
#
# After it, plain `cargo build`, `cargo test`, `cargo run` inside the crate need no exported
# variable, and the crate's binaries, tests and examples find libtorch without LD_LIBRARY_PATH.
# Each edit is made only when missing, so running it again changes nothing:
#   1. [dependencies] couplet (path to this checkout), tch 0.26, torch-sys 0.26;
#      [build-dependencies] couplet-build (path). torch-sys must be a direct dependency: it
#      declares `links = "tch"`, and cargo hands its DEP_TCH_LIBTORCH_LIB (libtorch's library
#      folder) only to the build scripts of direct dependents.
#   2. build.rs calling couplet_build::link_libtorch(), which embeds that folder as an rpath
#      (or fails the build naming this command when torch-sys is missing). An existing build.rs
#      without the call is left alone: we print the line to add and exit with status 1.
#   3. .cargo/config.toml [env] LIBTORCH = "<checkout>/.libtorch" (see below for the value).
#   4. Cargo.lock copied from couplet's when the crate has none, so the same versions resolve
#      (another tch/torch-sys patch version would rebuild torch-sys's C++, minutes).
#   5. [profile.dev.package."*"] opt-level = 2 and [profile.dev.build-override] debug = false,
#      as in couplet's workspace, when the crate has no [profile.dev...] section of its own
#      (same profile, so compiled dependencies, torch-sys's C++ among them, are reused).
# cargo reads .cargo/config.toml from the folder it is run in (and its parents), so run cargo
# inside the crate, not with --manifest-path from elsewhere.
set -euo pipefail

repo=$1
crate=$(cd "$2" && pwd -P)
manifest="$crate/Cargo.toml"
python="$repo/.venv/bin/python"

say() { printf '[setup-libtorch --for] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# The value couplet's own workspace resolves: its .cargo/config.toml says
# `LIBTORCH = { value = ".libtorch", relative = true }`, which cargo turns into
# "<checkout>/.libtorch" (the checkout's physical path). torch-sys's build script reruns, and
# recompiles its C++, whenever LIBTORCH changes, so writing the very same string (not the
# link's target, not a copy) lets a dependent crate that shares a target folder with couplet
# reuse the compiled torch-sys, and `setup-libtorch.sh` refreshing the link after a
# re-install keeps the crate working without editing it again.
libtorch="$repo/.libtorch"
case "$libtorch" in *'"'*|*'\'*) die "the checkout's path $repo contains a quote or backslash; move it" ;; esac

# --- Read the manifest (cargo metadata --no-deps needs no network and resolves nothing). ----
meta=$(cd "$crate" && cargo metadata --no-deps --format-version 1 --manifest-path "$manifest") \
  || die "cargo could not read $manifest (see its message above)"
read_meta() { printf '%s' "$meta" | "$python" -c "$1" "$manifest"; }
# shellcheck disable=SC2016
fields=$(read_meta '
import json, os, sys
meta = json.load(sys.stdin)
pkg = next((p for p in meta["packages"] if os.path.samefile(p["manifest_path"], sys.argv[1])), None)
if pkg is None:
    sys.exit("not a package")
deps = {(d.get("rename") or d["name"], d["kind"] or "normal") for d in pkg["dependencies"]}
build = [t["src_path"] for t in pkg["targets"] if "custom-build" in t["kind"]]
print(pkg["name"])
print(meta["workspace_root"])
print(build[0] if build else "")
for name, kind in [("couplet", "normal"), ("tch", "normal"), ("torch-sys", "normal"), ("couplet-build", "build")]:
    print("yes" if (name, kind) in deps else "no")
') || die "$manifest has no [package] (a virtual workspace manifest?): point --for at the crate itself"
{ read -r name; read -r workspace_root; read -r build_rs; read -r has_couplet; read -r has_tch; read -r has_torch_sys; read -r has_couplet_build; } <<<"$fields"

# --- Refuse what we cannot fix before changing anything. ------------------------------------
if grep -Eq '^[[:space:]]*build[[:space:]]*=[[:space:]]*false' "$manifest"; then
  die "$manifest says build = false; remove it so that build.rs runs couplet_build::link_libtorch()"
fi
if [ -n "$build_rs" ] && ! grep -q 'couplet_build::link_libtorch' "$build_rs"; then
  say "$build_rs exists and does not call couplet_build::link_libtorch()."
  say "Add this line to its fn main(), then run this command again:"
  printf '\n    couplet_build::link_libtorch();\n\n' >&2
  exit 1
fi
config_dir="$crate/.cargo"
config="$config_dir/config.toml"
[ -f "$config" ] || { [ -f "$config_dir/config" ] && config="$config_dir/config"; }
if [ -f "$config" ] && grep -Eq '^[[:space:]]*env[[:space:]]*(\.|=)' "$config"; then
  die "$config sets env with a dotted key or an inline table; add LIBTORCH = \"$libtorch\" to it by hand"
fi

# --- 4. Cargo.lock first, so that `cargo add` resolves against couplet's versions. ---------
lock="$workspace_root/Cargo.lock"
if [ ! -f "$lock" ]; then
  cp "$repo/Cargo.lock" "$lock"
  say "seeded $lock from couplet's Cargo.lock (same tch/torch-sys and dependency versions)"
fi

# --- 1. Dependencies. ------------------------------------------------------------------------
add() { (cd "$crate" && cargo add --quiet --manifest-path "$manifest" "$@") || die "cargo add $* failed (see above)"; }
[ "$has_couplet" = yes ] || { add couplet --path "$repo"; say "added couplet (path $repo)"; }
[ "$has_tch" = yes ] || { add tch@0.26; say "added tch 0.26"; }
[ "$has_torch_sys" = yes ] || { add torch-sys@0.26; say "added torch-sys 0.26"; }
[ "$has_couplet_build" = yes ] || { add --build couplet-build --path "$repo/couplet-build"; say "added couplet-build (path) to [build-dependencies]"; }

# --- 2. build.rs. ------------------------------------------------------------------------------
if [ -z "$build_rs" ]; then
  cat >"$crate/build.rs" <<'RUST'
//! Embeds libtorch's library folder as an rpath, so that this crate's binaries, tests and
//! examples find libtorch_cpu.so without LD_LIBRARY_PATH (see the couplet-build crate).
fn main() {
    couplet_build::link_libtorch();
}
RUST
  say "created $crate/build.rs"
fi

# --- 3. .cargo/config.toml [env] LIBTORCH. ---------------------------------------------------
line="LIBTORCH = \"$libtorch\""
if [ ! -f "$config" ]; then
  mkdir -p "$config_dir"
  cat >"$config" <<TOML
# Written by couplet's scripts/setup-libtorch.sh --for: the libtorch that couplet's checkout
# links as .libtorch. cargo's [env] never overrides a LIBTORCH you export yourself.
[env]
$line
TOML
  say "created $config"
else
  # Replace LIBTORCH inside [env], or add it right under [env], or append an [env] table;
  # every other line is kept as it is, and the old file is kept as config.toml.orig.
  updated=$(awk -v line="$line" '
    /^[[:space:]]*\[/ {
      in_env = ($0 ~ /^[[:space:]]*\[[[:space:]]*env[[:space:]]*\][[:space:]]*(#.*)?$/)
      print
      if (in_env && !done) { print line; done = 1 }
      next
    }
    in_env && /^[[:space:]]*"?LIBTORCH"?[[:space:]]*=/ { next }
    { print }
    END { if (!done) { print ""; print "[env]"; print line } }
  ' "$config")
  if [ "$updated" != "$(cat "$config")" ]; then
    cp "$config" "$config.orig"
    printf '%s\n' "$updated" >"$config"
    say "set $line in $config (previous file kept as $config.orig)"
  fi
fi

# --- 5. The workspace's dependency profile. ---------------------------------------------------
root_manifest="$workspace_root/Cargo.toml"
if ! grep -Eq '^[[:space:]]*\[profile\.dev' "$root_manifest"; then
  cat >>"$root_manifest" <<'TOML'

# couplet's workspace profile (added by couplet's scripts/setup-libtorch.sh --for): optimised
# dependencies in debug builds, so that their compiled artifacts match couplet's and libtorch's
# wrappers are not slow in tests.
[profile.dev.package."*"]
opt-level = 2

# Build scripts without debuginfo in every build, as in couplet's workspace: cargo's default
# depends on which packages a build contains, and a different choice here than there would
# recompile torch-sys's C++ (minutes) instead of reusing couplet's.
[profile.dev.build-override]
debug = false
TOML
  say "added [profile.dev.package.\"*\"] opt-level = 2 and [profile.dev.build-override] debug = false to $root_manifest"
fi

say "$name is set up: run cargo build / cargo test / cargo run inside $crate"
