//! Builds the eBPF programs (the `ebpf` crate) and tells the agent where the object is, so
//! that a plain `cargo build` never embeds a stale or missing object.

#[path = "../xtask/src/ebpf_build.rs"]
mod ebpf_build;

use std::{env, path::PathBuf};

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest
        .parent()
        .expect("the agent crate sits in the workspace")
        .to_path_buf();
    let target = match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    };
    for watched in [
        "ebpf/src",
        "ebpf/Cargo.toml",
        "ebpf-common/src",
        "ebpf-common/Cargo.toml",
        "xtask/src/ebpf_build.rs",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    match ebpf_build::build(&cargo, &root, &target) {
        Ok(object) => println!("cargo:rustc-env=SKIFF_EBPF_OBJECT={}", object.display()),
        Err(message) => {
            eprintln!("error: {message}");
            panic!("cannot build the eBPF programs: {message}");
        }
    }
}
