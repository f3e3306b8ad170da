// The selected VM file (HV_SELECTED_VMS) is invalid.
hypervisor::board!();
hypervisor::vms!();

fn main() {}
