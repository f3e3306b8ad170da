//! What this driver handles, said once. The image crate's build script gets it through
//! `links` metadata (`platform_dsl::image::configure`), so that a board whose console or GIC
//! no linked driver handles fails to build, and the image links every driver it depends on;
//! `src/lib.rs` includes the same list as its `DriverEntry` compatibles.

const DRIVER: &str = "uart-bcm2835-aux";
const COMPATIBLE: &[&str] = &["brcm,bcm2835-aux-uart"];

fn main() {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let list: Vec<String> = COMPATIBLE.iter().map(|c| format!("{c:?}")).collect();
    std::fs::write(out.join("compatible.rs"), format!("&[{}]", list.join(", ")))
        .expect("OUT_DIR is writable");
    let krate = std::env::var("CARGO_PKG_NAME").expect("cargo sets CARGO_PKG_NAME");
    println!("cargo::metadata=driver={DRIVER}");
    println!("cargo::metadata=crate={}", krate.replace('-', "_"));
    println!("cargo::metadata=compatible={}", COMPATIBLE.join(" "));
    println!("cargo::rerun-if-changed=build.rs");
}
