//! `cargo xtask`: build, run in QEMU, test and benchmark.
fn main() {}
