// An experimental board without opt-in does not build.
hypervisor::board!(name = "test-experimental");

fn main() {}
