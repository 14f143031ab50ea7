#!/usr/bin/env bash
# CI test of "Using couplet from your own crate": a fresh crate made by `cargo new` in a
# temporary folder is set up with the README's one command, built (sharing this workspace's
# target folder, so the compiled dependencies are reused) and run without LD_LIBRARY_PATH;
# then the same crate without torch-sys must fail at build time naming that command, and a
# crate whose own build.rs lacks the call must be refused by the command.
#
# Run by .ci/run after `cargo test --workspace` (never from inside `cargo test`: cargo holds
# the target folder's lock while tests run). Usage: bash scripts/check-dependent-crate.sh
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
target=${CARGO_TARGET_DIR:-$repo/target}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/couplet-dependent.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

say() { printf '[check-dependent-crate] %s\n' "$*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

# Nothing of the caller's linker set-up may help the crate. An exported LIBTORCH is kept: it
# is what this workspace was built with, and cargo's [env] never overrides it anyway.
unset LD_LIBRARY_PATH LIBTORCH_USE_PYTORCH

cd "$tmp"
cargo new --quiet --vcs none --bin dependent
crate="$tmp/dependent"
cat >"$crate/src/main.rs" <<'RUST'
use couplet::tch::{Device, Kind, Tensor};
use couplet::{Linear, LinearConfig, Store};

fn main() -> couplet::Result<()> {
    let store = Store::new(Device::Cpu);
    let layer = Linear::new(&store.root(), LinearConfig::new(2).with_input_size(3))?;
    let x = Tensor::ones([4, 3], (Kind::Float, Device::Cpu));
    let y = layer.forward(&x)?;
    let expected = x.matmul(layer.w()?) + layer.b()?.expect("a Linear has a bias by default");
    let gap = (&y - expected).abs().max().double_value(&[]);
    println!("linear {:?} -> {:?}, |y - (x w + b)| = {gap}", x.size(), y.size());
    assert_eq!(y.size(), [4, 2]);
    assert_eq!(gap, 0.0);
    Ok(())
}
RUST

say "setting up $crate"
bash "$repo/scripts/setup-libtorch.sh" --for "$crate"
grep -q '^LIBTORCH = ' "$crate/.cargo/config.toml" || fail ".cargo/config.toml has no LIBTORCH"
snapshot() { cat "$crate/Cargo.toml" "$crate/build.rs" "$crate/.cargo/config.toml"; }
before=$(snapshot)
bash "$repo/scripts/setup-libtorch.sh" --for "$crate" 2>/dev/null
[ "$before" = "$(snapshot)" ] || fail "a second set-up run changed the crate"

cd "$crate"
start=$(date +%s.%N)
CARGO_TARGET_DIR="$target" cargo build --quiet
build_s=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
say "cargo build of the dependent crate: ${build_s} s (target folder $target)"
out=$("$target/debug/dependent") || fail "the dependent binary failed (exit $?)"
printf '%s\n' "$out"
case "$out" in "linear [4, 3] -> [4, 2], |y - (x w + b)| = 0") ;; *) fail "unexpected output" ;; esac

say "without torch-sys the build must fail, naming the set-up command"
cargo remove --quiet torch-sys
if log=$(CARGO_TARGET_DIR="$target" cargo build 2>&1); then
  fail "the crate without torch-sys built"
fi
printf '%s\n' "$log" | grep -q "scripts/setup-libtorch.sh --for $crate" \
  || { printf '%s\n' "$log" >&2; fail "the build error does not name the set-up command"; }

say "a build.rs without couplet_build::link_libtorch() is refused, not rewritten"
cargo new --quiet --vcs none --lib "$tmp/own-build"
printf 'fn main() {}\n' >"$tmp/own-build/build.rs"
if bash "$repo/scripts/setup-libtorch.sh" --for "$tmp/own-build" 2>"$tmp/own-build.log"; then
  fail "the set-up accepted a build.rs without the call"
fi
grep -q 'couplet_build::link_libtorch();' "$tmp/own-build.log" || fail "the refusal does not say what to add"
[ "$(cat "$tmp/own-build/build.rs")" = "fn main() {}" ] || fail "the crate's own build.rs was changed"

say "ok (build ${build_s} s)"
