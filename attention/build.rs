//! Embeds libtorch's library folder as an rpath, so that tests, examples and benches find
//! `libtorch_cpu.so` at run time without `LD_LIBRARY_PATH`. `torch-sys` declares
//! `links = "tch"`, so a direct dependent receives its folder as `DEP_TCH_LIBTORCH_LIB`.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        let lib = std::fs::canonicalize(&lib).map_or(lib, |p| p.display().to_string());
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
