//! Fuzz target: any bytes through the KDL board loader and the VM TOML parser never panic.
//!
//! Valid UTF-8 goes in as is; anything else goes in after `String::from_utf8_lossy`, so
//! every input exercises the parser. Errors are rendered too (miette's report code walks
//! spans into the text, a classic place for an out-of-bounds slice).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(e) = platform_dsl::load_str("fuzz.kdl", &text) {
        let _ = e.to_string();
        let _ = e.location();
        if let Some(d) = e.diagnostics() {
            let _ = d.render();
        }
    }
    // A directory that does not exist: image paths resolve against it and are only
    // `stat`ed, never read.
    let _ = platform_dsl::vmconfig::VmConfig::parse(&text, Path::new("/nonexistent-fuzz/vms.toml"))
        .map_err(|e| e.to_string());
});
