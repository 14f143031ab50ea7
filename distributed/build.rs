//! Compiles couplet's C++ shim over libtorch's c10d (`cpp/`) with the flags torch-sys uses for
//! its own C++ (C++17, the same `_GLIBCXX_USE_CXX11_ABI`, `GLOG_USE_GLOG_EXPORT`), and embeds
//! libtorch's library folder as an rpath (see `couplet-build`).
//!
//! Gloo: the torch 2.13.0 wheel ships c10d's `ProcessGroupGloo.hpp` but not the gloo headers it
//! includes; when `include/gloo/` is missing, `cpp/gloo_decls/` stands in (declarations only, see
//! its README). NCCL: `cpp/nccl.cpp` is compiled only when libtorch has `libtorch_cuda.so` and
//! `nccl.h` (the wheel's `nvidia/nccl/include`) and a complete CUDA toolkit's headers
//! (`$CUDA_HOME/include` or `/usr/local/cuda/include`; the wheel's own CUDA headers are
//! incomplete) are found. Without them `ProcessGroup::nccl` reports that NCCL was not built.

use std::path::{Path, PathBuf};

fn main() {
    couplet_build::link_libtorch();
    for file in ["shim.h", "shim_internal.h", "shim.cpp", "nccl.cpp"] {
        println!("cargo:rerun-if-changed=cpp/{file}");
    }
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    // torch-sys passes libtorch's lib folder to its direct dependents; couplet_build has
    // already failed the build (with the set-up command) when it is missing.
    let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from) else {
        return;
    };
    let lib = std::fs::canonicalize(&lib).unwrap_or(lib);
    let root = lib.parent().unwrap_or(&lib).to_path_buf();
    let include = root.join("include");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    let base = |file: &str| {
        let mut build = cc::Build::new();
        build
            .cpp(true)
            .pic(true)
            .warnings(false)
            .include(&include)
            .include(include.join("torch/csrc/api/include"))
            .include("cpp")
            .flag("-std=c++17")
            .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
            .flag("-DGLOG_USE_GLOG_EXPORT")
            .define("USE_C10D_GLOO", None)
            .file(file);
        if !include.join("gloo/context.h").is_file() {
            build.include("cpp/gloo_decls");
        }
        build
    };
    let nccl = nccl_includes(&root, &lib);
    let mut shim = base("cpp/shim.cpp");
    // The two files parse most of libtorch's headers each: compile them side by side.
    std::thread::scope(|scope| {
        if let Some(dirs) = &nccl {
            shim.define("COUPLET_WITH_NCCL", None);
            let mut build = base("cpp/nccl.cpp");
            build.define("USE_C10D_NCCL", None).includes(dirs);
            scope.spawn(move || build.compile("couplet_c10d_nccl"));
        }
        shim.compile("couplet_c10d");
    });
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=torch_cpu");
    println!("cargo:rustc-link-lib=c10");
    if nccl.is_some() {
        println!("cargo:rustc-link-lib=torch_cuda");
        println!("cargo:rustc-link-lib=c10_cuda");
    }
}

/// The folders holding `nccl.h` and the CUDA runtime headers, when libtorch has CUDA and both exist.
fn nccl_includes(root: &Path, lib: &Path) -> Option<Vec<PathBuf>> {
    if !lib.join("libtorch_cuda.so").is_file() {
        return None;
    }
    let mut candidates = Vec::new();
    // The PyPI wheel: site-packages/torch next to site-packages/nvidia/{nccl,cu13,...}/include.
    if let Some(site) = root.parent() {
        if let Ok(entries) = std::fs::read_dir(site.join("nvidia")) {
            let mut found: Vec<PathBuf> = entries.flatten().map(|e| e.path().join("include")).collect();
            found.sort();
            candidates.extend(found);
        }
    }
    if let Some(cuda) = std::env::var_os("CUDA_HOME") {
        candidates.push(PathBuf::from(cuda).join("include"));
    }
    candidates.push(PathBuf::from("/usr/local/cuda/include"));
    candidates.push(PathBuf::from("/usr/include"));
    let find = |header: &str| candidates.iter().find(|dir| dir.join(header).is_file()).cloned();
    // A complete CUDA toolkit's headers: the wheel's nvidia/cu13 ships cuda_runtime.h without
    // the crt/ headers it includes, and triton's copy lacks CCCL's nv/target.
    let complete = |dir: &&PathBuf| {
        ["cuda_runtime.h", "crt/host_config.h", "nv/target"].iter().all(|h| dir.join(h).is_file())
    };
    let (nccl, cuda) = (find("nccl.h")?, candidates.iter().find(complete).cloned()?);
    let mut dirs = vec![nccl];
    if !dirs.contains(&cuda) {
        dirs.push(cuda);
    }
    Some(dirs)
}
