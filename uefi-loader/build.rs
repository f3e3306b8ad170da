//! Embeds the hypervisor Image: `HV_UEFI_IMAGE` names the flat arm64 Image that
//! `cargo xtask build --board NAME --uefi` built for the board; it is copied to
//! `OUT_DIR/hypervisor.bin`, which the UEFI application `include_bytes!`s. Without the
//! variable (a plain `cargo build`, clippy, host tests) the embedded image is empty and
//! the application refuses to start with a message saying how to build it.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=HV_UEFI_IMAGE");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let dest = out.join("hypervisor.bin");
    match std::env::var_os("HV_UEFI_IMAGE") {
        Some(src) => {
            let src = PathBuf::from(src);
            println!("cargo:rerun-if-changed={}", src.display());
            if let Err(e) = std::fs::copy(&src, &dest) {
                panic!(
                    "HV_UEFI_IMAGE={}: cannot copy the hypervisor Image: {e}",
                    src.display()
                );
            }
        }
        None => std::fs::write(&dest, []).expect("cannot write OUT_DIR/hypervisor.bin"),
    }
}
