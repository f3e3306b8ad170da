//! Fuzz target: any bytes through the KDL board loader and the VM TOML parser never panic
//! or overflow the stack.
//!
//! The raw bytes go to `platform_dsl::load_bytes` (the path of `load_file`: the size limit,
//! the located UTF-8 error, then the nesting limits before the recursive `kdl` parser).
//! Bytes that are not UTF-8 also go in after `String::from_utf8_lossy`, so every input
//! exercises the parser. Errors are rendered too (miette's report code walks spans into
//! the text, a classic place for an out-of-bounds slice). The seeds in
//! `corpus/kdl_front_end/` include nesting 10,000 deep (blocks, slashdashed blocks,
//! comments) and invalid UTF-8.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fn load(result: Result<Vec<platform_dsl::model::Board>, platform_dsl::Error>) {
    if let Err(e) = result {
        let _ = e.to_string();
        let _ = e.location();
        if let Some(d) = e.diagnostics() {
            let _ = d.render();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    load(platform_dsl::load_bytes("fuzz.kdl", data));
    let text = String::from_utf8_lossy(data);
    if std::str::from_utf8(data).is_err() {
        load(platform_dsl::load_str("fuzz.kdl", &text));
    }
    // A directory that does not exist: image paths resolve against it and are only
    // `stat`ed, never read.
    let _ = platform_dsl::vmconfig::VmConfig::parse(&text, Path::new("/nonexistent-fuzz/vms.toml"))
        .map_err(|e| e.to_string());
});
