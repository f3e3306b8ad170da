// The selected board file (HV_BOARD_FILE) has a KDL syntax error: the build script's report becomes the error.
macros::board!();

fn main() {}
