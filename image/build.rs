//! Selects the board and VMs (HV_BOARD, HV_BOARD_FILE, HV_VMS) and writes the linker script.

fn main() {
    platform_dsl::image::configure(&platform_dsl::image::Defaults {
        board_file: "../boards.kdl",
        board: "qemu-virt",
        vms: "../examples/vms/test-guest.toml",
    });
}
