//! Build-script support for crates that link libtorch through couplet.
//!
//! Cargo hands link arguments of a library's build script to that library's own targets
//! only, never to its dependents, so every crate whose binaries, tests or examples call
//! libtorch needs one line in its own `build.rs`:
//!
//! ```text
//! // build.rs
//! fn main() {
//!     couplet_build::link_libtorch();
//! }
//! ```
//!
//! with `couplet-build` under `[build-dependencies]` and `torch-sys = "0.26"` under
//! `[dependencies]` (`torch-sys` declares `links = "tch"`, so only a direct dependent
//! receives libtorch's library folder as `DEP_TCH_LIBTORCH_LIB`).
//! `bash <couplet>/scripts/setup-libtorch.sh --for PATH/TO/CRATE` makes all of these edits.
//!
//! A crate set up wrong fails here, at build time, with the command that fixes it, rather
//! than building a binary that exits with `error while loading shared libraries:
//! libtorch_cpu.so` when it is run.

use std::path::{Path, PathBuf};

/// The variable through which `torch-sys` passes libtorch's library folder to the build
/// scripts of its direct dependents.
const LIB_VAR: &str = "DEP_TCH_LIBTORCH_LIB";

/// Embeds libtorch's library folder as an rpath in every binary, test, example and bench
/// of the calling crate, so they find `libtorch_cpu.so` without `LD_LIBRARY_PATH`.
///
/// Call it from a build script. When the crate does not depend on `torch-sys` directly (so
/// the folder is unknown), it prints what to run and exits the build script with status 1,
/// which fails the build.
pub fn link_libtorch() {
    println!("cargo:rerun-if-env-changed={LIB_VAR}");
    match rpath_arg(std::env::var_os(LIB_VAR).map(PathBuf::from)) {
        Ok(arg) => println!("cargo:rustc-link-arg={arg}"),
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(1);
        }
    }
}

/// The linker argument for `lib`, or the message that says how to set the crate up.
fn rpath_arg(lib: Option<PathBuf>) -> Result<String, String> {
    let lib = lib.ok_or_else(setup_message)?;
    let lib = std::fs::canonicalize(&lib).unwrap_or(lib);
    Ok(format!("-Wl,-rpath,{}", lib.display()))
}

/// What a crate set up wrong is told, naming this couplet checkout's set-up script.
fn setup_message() -> String {
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| "PATH/TO/YOUR/CRATE".into());
    format!(
        "couplet-build: {LIB_VAR} is not set, so the binaries of this crate would not find \
         libtorch_cpu.so at run time.\n\
         The crate must depend on torch-sys directly (torch-sys passes libtorch's folder only to \
         its direct dependents). Run\n\n    bash {} --for {crate_dir}\n\n\
         which adds `torch-sys = \"0.26\"` to [dependencies] and points the crate at libtorch \
         2.13.0.",
        setup_script().display()
    )
}

/// `scripts/setup-libtorch.sh` of the couplet checkout this crate was built from.
fn setup_script() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/setup-libtorch.sh");
    std::fs::canonicalize(&script).unwrap_or(script)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_folder_becomes_an_rpath() {
        let dir = std::env::temp_dir();
        let arg = rpath_arg(Some(dir.clone())).unwrap();
        assert_eq!(arg, format!("-Wl,-rpath,{}", std::fs::canonicalize(dir).unwrap().display()));
    }

    #[test]
    fn a_missing_folder_names_the_command_to_run() {
        let message = rpath_arg(None).unwrap_err();
        assert!(message.contains(LIB_VAR), "{message}");
        assert!(message.contains("scripts/setup-libtorch.sh --for "), "{message}");
        assert!(message.contains("torch-sys"), "{message}");
        assert!(setup_script().is_file(), "{} is not the set-up script", setup_script().display());
    }
}
