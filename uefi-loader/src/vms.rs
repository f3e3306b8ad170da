//! `\HV\VMS.TOML` on the ESP: the VM file (the syntax of `examples/vms/*.toml`, checked by
//! `vm-config`) and the images it names, each a path relative to `\HV\`.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// The VM file on the ESP.
pub const VMS_PATH: &str = "\\HV\\VMS.TOML";
/// The directory image paths are relative to.
pub const HV_DIR: &str = "\\HV\\";

/// The distinct image paths (kernel, initrd, dtb) of the VMs in `text`, in the order they
/// are first named. The whole file is checked by `vm_config::parse_vms` first, so that a
/// wrong file is refused (with line and column) before anything is read or allocated.
pub fn image_paths(text: &str) -> Result<(usize, Vec<String>), String> {
    let vms = vm_config::parse_vms(text).map_err(|e| match e.line_col() {
        Some((line, col)) => format!("{VMS_PATH} line {line} column {col}: {e}"),
        None => format!("{VMS_PATH}: {e}"),
    })?;
    let mut paths: Vec<String> = Vec::new();
    for vm in &vms {
        for (_, path, _) in vm.images() {
            if !paths.iter().any(|p| p == path) {
                paths.push(path.into());
            }
        }
    }
    Ok((vms.len(), paths))
}

/// The ESP path of the image `path` (relative to `\HV\`, `/` or `\` between components):
/// `IMAGES/vmlinuz` is `\HV\IMAGES\vmlinuz`. Absolute paths, empty components, `.` and
/// `..` are refused: every image comes from under `\HV\`.
pub fn esp_path(path: &str) -> Result<String, String> {
    let comps: Vec<&str> = path.split(['/', '\\']).collect();
    if path.is_empty()
        || comps
            .iter()
            .any(|c| c.is_empty() || *c == "." || *c == "..")
    {
        return Err(format!(
            "image path `{path}` in {VMS_PATH}: write a path relative to {HV_DIR} without \
             empty, `.` or `..` components (e.g. `IMAGES/vmlinuz`)"
        ));
    }
    Ok(format!("{HV_DIR}{}", comps.join("\\")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_image_once_in_order() {
        let text = r#"
[[vm]]
name = "linux"
vcpus = 2
memory_mib = 256
kernel = "IMAGES/Image"
initrd = "IMAGES/initramfs.cpio.gz"
cmdline = "console=ttyAMA0"

[[vm]]
name = "test"
vcpus = 1
memory_mib = 64
kernel = "IMAGES/test-guest.bin"
cmdline = ""

[[vm]]
name = "linux2"
vcpus = 1
memory_mib = 256
kernel = "IMAGES/Image"
cmdline = ""
"#;
        let (n, paths) = image_paths(text).unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            paths,
            [
                "IMAGES/Image",
                "IMAGES/initramfs.cpio.gz",
                "IMAGES/test-guest.bin"
            ]
        );
    }

    #[test]
    fn a_wrong_vm_file_is_refused_with_its_line() {
        let err = image_paths(
            "[[vm]]\nname = \"x\"\nvcpus = 0\nmemory_mib = 64\nkernel = \"k\"\ncmdline = \"\"\n",
        )
        .unwrap_err();
        assert!(err.starts_with("\\HV\\VMS.TOML line 3"), "{err}");
        assert!(image_paths("not toml [").is_err());
    }

    #[test]
    fn esp_paths_stay_under_hv() {
        assert_eq!(esp_path("IMAGES/vmlinuz").unwrap(), "\\HV\\IMAGES\\vmlinuz");
        assert_eq!(esp_path("a\\b").unwrap(), "\\HV\\a\\b");
        for bad in ["", "/abs", "../EFI/BOOT/BOOTAA64.EFI", "a//b", "./a", "a/"] {
            assert!(esp_path(bad).is_err(), "{bad}");
        }
    }
}
