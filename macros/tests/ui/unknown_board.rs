// A board name that the file does not define.
macros::board!(name = "test-virtt");

fn main() {}
