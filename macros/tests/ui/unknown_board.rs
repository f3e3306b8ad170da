// A board name that the file does not define.
hypervisor::board!(name = "test-virtt");

fn main() {}
