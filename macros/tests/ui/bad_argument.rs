// An argument board! does not know.
macros::board!(board = "test-virt");

fn main() {}
