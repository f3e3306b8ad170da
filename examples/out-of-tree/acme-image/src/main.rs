//! The acme-board image: the shared core, a community plugin, and tables from acme-board.kdl.
#![no_std]
#![no_main]

// The driver plugins of [dependencies] (the community plugin-acme-uart, the in-tree
// plugin-gic-v3) need no `use`: their build scripts announce what they drive, and board!()
// links each of them and refuses a board whose console or GIC none of them handles.
macros::board!(file = "../acme-board.kdl", name = "acme-board"); // generated tables + gating
macros::vms!("vms.toml"); // VM table checked at build time
