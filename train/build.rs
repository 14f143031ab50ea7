//! Embeds libtorch's library folder as an rpath, so that tests, examples and benches find
//! `libtorch_cpu.so` without `LD_LIBRARY_PATH` (see `couplet-build`).
fn main() {
    couplet_build::link_libtorch();
}
