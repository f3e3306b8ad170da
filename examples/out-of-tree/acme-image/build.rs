//! Selects acme-board and the VM file (HV_BOARD_FILE / HV_BOARD / HV_VMS override), loads them
//! once, and writes link.x and the model the macros read.

fn main() {
    platform_dsl::image::configure(&platform_dsl::image::Defaults {
        board_file: "../acme-board.kdl",
        board: "acme-board",
        vms: "vms.toml",
    });
}
