// The selected board file (HV_SELECTED_BOARD_FILE) has a KDL syntax error.
hypervisor::board!();

fn main() {}
