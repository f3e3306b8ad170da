// The selected VM file (HV_VMS) is invalid: the build script's report becomes the error.
macros::board!();
macros::vms!();

fn main() {}
