//! Selects the board and VMs (HV_BOARD, HV_BOARD_FILE, HV_VMS), loads them once, and writes
//! the linker script and the model that `macros::board!()`/`macros::vms!()` read.

fn main() {
    platform_dsl::image::configure(&platform_dsl::image::Defaults {
        board_file: "../boards.kdl",
        board: "qemu-virt",
        vms: "../examples/vms/test-guest.toml",
    });
}
