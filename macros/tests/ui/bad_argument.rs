// An argument board! does not know.
hypervisor::board!(board = "test-virt");

fn main() {}
