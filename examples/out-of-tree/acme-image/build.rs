//! Selects acme-board and the VM file (HV_BOARD_FILE / HV_BOARD / HV_VMS override) and writes link.x.

fn main() {
    platform_dsl::image::configure(&platform_dsl::image::Defaults {
        board_file: "../acme-board.kdl",
        board: "acme-board",
        vms: "vms.toml",
    });
}
