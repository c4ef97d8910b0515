//! Make `kiln-train` run without environment variables.
//!
//! torch-sys links libtorch but leaves finding it at run time to
//! `LD_LIBRARY_PATH`, and `--as-needed` linkers drop `libtorch_cuda` because
//! no symbol of it is referenced directly — yet it is what registers the CUDA
//! backend. So: record libtorch's directory as an rpath, and when the install
//! has CUDA, force-link `torch_cuda` so `--device auto` finds a GPU.

use std::path::Path;

fn main() {
    // torch-sys (links = "tch") exports the directory it linked against.
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").unwrap_or_else(|_| {
        panic!(
            "torch-sys did not report libtorch's directory; build through \
             scripts/with-libtorch.sh (or the Makefile), which sets LIBTORCH_USE_PYTORCH=1"
        )
    });
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-L{lib}");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
