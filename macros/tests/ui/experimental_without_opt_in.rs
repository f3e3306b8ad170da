// An experimental board without opt-in does not build.
macros::board!(name = "test-experimental");

fn main() {}
