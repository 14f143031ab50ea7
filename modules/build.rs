//! Embeds libtorch's library folder as an rpath, so that tests, examples and benches find
//! `libtorch_cpu.so` without `LD_LIBRARY_PATH` (see `couplet-build`), and compiles the small
//! C++ tracing shim of `export` (`cpp/trace.cpp`) against libtorch's headers.
use std::path::PathBuf;

fn main() {
    couplet_build::link_libtorch();
    println!("cargo:rerun-if-changed=cpp/trace.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    // link_libtorch has already failed the build with the set-up command when this is unset.
    let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from) else { return };
    let include = lib.join("../include");
    // The same flags torch-sys compiles its own libtch shim with.
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    cc::Build::new()
        .cpp(true)
        .file("cpp/trace.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .warnings(false)
        .extra_warnings(false)
        .flag_if_supported("-w")
        .compile("couplet_trace");
}
