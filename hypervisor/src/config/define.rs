//! VMs defined while the host runs (`POST /api/vms`, the datastore's `VMS/*.TOM`): the
//! TOML of one `[[vm]]` to a [`VmDesc`], checked by the same rules (`vm-config`) as the
//! build-time VM file.
//!
//! The core's VM code takes `&'static VmDesc`, as the build-time table gives it. A defined
//! VM's strings and slices are therefore leaked ([`Box::leak`]): a definition costs a few
//! hundred bytes (its name, command line, paths, disks and NICs) for the life of the host,
//! whether or not the VM is later deleted. Giving that memory back (a `forget(desc)`) would
//! need every holder of the `&'static` to be gone first, and is left out on purpose.

use super::{DiskController, ImageDesc, VmDesc, VmDeviceDesc, VmDiskDesc, VmNicDesc, VmNuma};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use vm_config::{ConfigError, ImageKind, Location, VmDevice, MIB};

pub use vm_config::{BoardFacts, DeviceUse};

// Every VM the rules accept fits the guest-physical layout.
const _: () = assert!(vm_config::MAX_VCPUS as u64 <= crate::vm::layout::MAX_VCPUS);

/// Brings a VM's image (kernel, initrd, DTB) into host RAM. The runtime reads the
/// datastore file into pool RAM and returns an [`ImageDesc`] whose `staging_base` and
/// `size` are that RAM; its `path` is replaced by the path as written in the TOML.
pub trait ImageLoader {
    /// Loads the image at `path` (as written in the TOML); `Err` says why it cannot.
    ///
    /// When a later image of the same VM fails, the images loaded before stay loaded: the
    /// loader saw every load and frees them if it wants to.
    fn load(&mut self, path: &str) -> Result<ImageDesc, String>;
}

/// Why a VM definition was refused: the message (what to write instead) and, where it
/// belongs to a key or a table of the TOML, its 1-based line and column.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct DefineError {
    /// What is wrong and what to write.
    pub message: String,
    /// 1-based line in the TOML text.
    pub line: Option<usize>,
    /// 1-based column (characters) in the TOML text.
    pub column: Option<usize>,
}

impl DefineError {
    fn at(message: String, at: &Location) -> Self {
        Self {
            message,
            line: Some(at.line),
            column: Some(at.column),
        }
    }
}

impl fmt::Display for DefineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, "line {line}, column {column}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl From<ConfigError> for DefineError {
    fn from(e: ConfigError) -> Self {
        let (line, column) = e.line_col().unzip();
        Self {
            message: format!("{e}"),
            line,
            column,
        }
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn leak_slice<T>(v: Vec<T>) -> &'static [T] {
    Box::leak(v.into_boxed_slice())
}

/// Parses and checks the definition of one VM (`text`, exactly one `[[vm]]`) against the
/// board, loads its images through `images`, and returns its descriptor, leaked for the
/// life of the host (see the module documentation). Nothing is leaked on error.
///
/// Not checked here, as the caller knows them: that no other VM has the name, a written
/// partition or a MAC address.
pub fn define(
    text: &str,
    facts: &dyn BoardFacts,
    images: &mut dyn ImageLoader,
) -> Result<&'static VmDesc, DefineError> {
    define_spec(vm_config::parse_one(text)?, facts, images)
}

/// One VM of a VM file defined by [`define_file`].
#[derive(Debug)]
pub struct FileVm {
    /// Its name.
    pub name: String,
    /// Its `autostart`.
    pub autostart: bool,
    /// Its descriptor, or why it was refused.
    pub result: Result<&'static VmDesc, DefineError>,
}

/// Defines every VM of a VM file (`text`, one or more `[[vm]]`, the syntax of the
/// build-time VM file; a boot module): the file's own rules (unique names, partitions,
/// MAC addresses) first, then each VM as [`define`] does, on its own (one VM refused does
/// not stop the others). `Err` when the file itself is refused.
pub fn define_file(
    text: &str,
    facts: &dyn BoardFacts,
    images: &mut dyn ImageLoader,
) -> Result<Vec<FileVm>, DefineError> {
    let specs = vm_config::parse_vms(text)?;
    Ok(specs
        .into_iter()
        .map(|spec| FileVm {
            name: spec.name.clone(),
            autostart: spec.autostart,
            result: define_spec(spec, facts, images),
        })
        .collect())
}

fn define_spec(
    spec: vm_config::VmSpec,
    facts: &dyn BoardFacts,
    images: &mut dyn ImageLoader,
) -> Result<&'static VmDesc, DefineError> {
    spec.check_board(facts)?;
    let mut loaded = [None, None, None];
    for (kind, path, at) in spec.images() {
        let image = images.load(path).map_err(|why| {
            let msg = format!(
                "VM `{}`: {kind} `{path}` cannot be loaded: {why}",
                spec.name
            );
            DefineError::at(msg, at)
        })?;
        if image.size == 0 {
            let msg = format!(
                "VM `{}`: {kind} `{path}` is empty; write the path of a {kind} image",
                spec.name
            );
            return Err(DefineError::at(msg, at));
        }
        let slot = match kind {
            ImageKind::Kernel => 0,
            ImageKind::Initrd => 1,
            ImageKind::Dtb => 2,
        };
        loaded[slot] = Some((image, path));
    }
    let mut nics = Vec::with_capacity(spec.nics.len());
    for (n, spans) in spec.nics.iter().zip(&spec.spans.nics) {
        let mac = match &n.mac {
            Some(m) => Some(vm_config::parse_mac(m).map_err(|why| {
                let msg = format!("VM `{}`: MAC address `{m}`: {why}", spec.name);
                DefineError::at(msg, spans.mac.as_ref().unwrap_or(&spans.table))
            })?),
            None => None,
        };
        nics.push((mac, n.port_group.clone()));
    }
    let [kernel, initrd, dtb] = loaded.map(|l| {
        l.map(|(image, path)| ImageDesc {
            path: leak(path.into()),
            ..image
        })
    });
    let Some(kernel) = kernel else {
        // parse_one always yields a kernel path, and it was loaded above.
        let msg = format!("VM `{}`: no kernel was loaded", spec.name);
        return Err(DefineError::at(msg, &spec.spans.kernel));
    };
    let devices = spec
        .devices
        .into_iter()
        .map(|VmDevice::Passthrough(d)| VmDeviceDesc::Passthrough { device: leak(d) })
        .collect();
    let disks = spec
        .disks
        .into_iter()
        .map(|d| VmDiskDesc {
            partition: leak(d.partition),
            controller: match d.controller {
                vm_config::DiskController::Nvme => DiskController::Nvme,
                vm_config::DiskController::VirtioBlk => DiskController::VirtioBlk,
                vm_config::DiskController::Ahci => DiskController::Ahci,
            },
            read_only: d.read_only,
            // vm-config refuses sizes whose byte count overflows.
            size: d.size_mib.map(|m| m.saturating_mul(MIB)),
        })
        .collect();
    let nics = nics
        .into_iter()
        .map(|(mac, group)| VmNicDesc {
            mac,
            port_group: group.map(leak),
        })
        .collect();
    Ok(Box::leak(Box::new(VmDesc {
        name: leak(spec.name),
        vcpus: spec.vcpus,
        memory_size: spec.memory_bytes,
        kernel,
        initrd,
        dtb,
        cmdline: leak(spec.cmdline),
        devices: leak_slice(devices),
        disks: leak_slice(disks),
        nics: leak_slice(nics),
        numa: match spec.numa {
            vm_config::NumaPolicy::Local => VmNuma::Local,
            vm_config::NumaPolicy::Node(n) => VmNuma::Node(n),
            vm_config::NumaPolicy::Spread => VmNuma::Spread,
        },
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::borrow::ToOwned;
    use alloc::string::ToString;
    use alloc::vec;

    struct Board;

    impl BoardFacts for Board {
        fn board_name(&self) -> &str {
            "test"
        }
        fn port_groups(&self) -> Vec<String> {
            vec!["default".into(), "lan".into()]
        }
        fn device(&self, name: &str) -> Option<DeviceUse> {
            (name == "uart1").then_some(DeviceUse::Passable)
        }
        fn passable_devices(&self) -> Vec<String> {
            vec!["uart1".into()]
        }
        fn numa_nodes(&self) -> u32 {
            1
        }
    }

    /// Places each image at the next 2 MiB of a fake pool; refuses `refused`, gives
    /// `empty` zero bytes.
    #[derive(Default)]
    struct Loader {
        asked: Vec<String>,
        refused: &'static str,
        empty: &'static str,
    }

    impl ImageLoader for Loader {
        fn load(&mut self, path: &str) -> Result<ImageDesc, String> {
            self.asked.push(path.to_owned());
            if path == self.refused {
                return Err("no such file on the datastore".into());
            }
            let n = self.asked.len() as u64;
            Ok(ImageDesc {
                path: "",
                staging_base: 0x8000_0000 + n * 0x20_0000,
                size: if path == self.empty { 0 } else { 0x1000 * n },
            })
        }
    }

    const VM: &str = "[[vm]]\nname = \"web\"\nvcpus = 2\nmemory_mib = 128\n\
                      kernel = \"IMAGES/Image\"\ninitrd = \"IMAGES/initrd\"\n\
                      cmdline = \"console=ttyAMA0\"\nautostart = true\n";

    fn define_with(text: &str, loader: &mut Loader) -> Result<&'static VmDesc, DefineError> {
        define(text, &Board, loader)
    }

    #[test]
    fn a_valid_vm_becomes_a_descriptor_with_its_loaded_images() {
        let text = format!(
            "{VM}devices = [{{ passthrough = \"uart1\" }}]\n\
             [[vm.disk]]\npartition = \"web-root\"\ncontroller = \"virtio-blk\"\nsize-mib = 16\n\
             [[vm.nic]]\nmac = \"52:54:00:AB:00:01\"\nport-group = \"lan\"\n[[vm.nic]]\n"
        );
        let mut loader = Loader::default();
        let vm = define_with(&text, &mut loader).unwrap();
        assert_eq!(loader.asked, vec!["IMAGES/Image", "IMAGES/initrd"]);
        assert_eq!((vm.name, vm.vcpus, vm.memory_size), ("web", 2, 128 * MIB));
        assert_eq!(
            vm.kernel,
            ImageDesc {
                path: "IMAGES/Image",
                staging_base: 0x8020_0000,
                size: 0x1000
            }
        );
        assert_eq!(
            vm.initrd,
            Some(ImageDesc {
                path: "IMAGES/initrd",
                staging_base: 0x8040_0000,
                size: 0x2000
            })
        );
        assert_eq!(vm.dtb, None);
        assert_eq!(vm.cmdline, "console=ttyAMA0");
        assert_eq!(vm.devices, &[VmDeviceDesc::Passthrough { device: "uart1" }]);
        assert_eq!(
            vm.disks,
            &[VmDiskDesc {
                partition: "web-root",
                controller: DiskController::VirtioBlk,
                read_only: false,
                size: Some(16 * MIB)
            }]
        );
        assert_eq!(
            vm.nics,
            &[
                VmNicDesc {
                    mac: Some([0x52, 0x54, 0, 0xab, 0, 1]),
                    port_group: Some("lan")
                },
                VmNicDesc {
                    mac: None,
                    port_group: None
                }
            ]
        );
    }

    #[test]
    fn a_syntax_error_has_its_line_and_column() {
        let text = VM.replace("vcpus = 2", "vcpus = = 2");
        let e = define_with(&text, &mut Loader::default()).unwrap_err();
        assert_eq!((e.line, e.column), (Some(3), Some(9)), "{e}");
        assert!(e.to_string().starts_with("line 3, column 9: "), "{e}");
    }

    #[test]
    fn a_rule_error_points_at_its_key() {
        let mut loader = Loader::default();
        let text = VM.replace("memory_mib = 128", "memory_mib = 3");
        let e = define_with(&text, &mut loader).unwrap_err();
        assert_eq!((e.line, e.column), (Some(4), Some(14)), "{e}");
        assert!(e.message.contains("write 4"), "{e}");
        assert!(loader.asked.is_empty(), "images loaded for an invalid VM");
        let text = format!("{VM}[[vm.nic]]\nport-group = \"dmz\"\n");
        let e = define_with(&text, &mut loader).unwrap_err();
        assert_eq!((e.line, e.column), (Some(10), Some(14)), "{e}");
        assert!(e.message.contains("`default`, `lan`"), "{e}");
    }

    #[test]
    fn a_second_vm_is_refused_at_its_table() {
        let text = format!("{VM}{}", VM.replace("web", "db"));
        let e = define_with(&text, &mut Loader::default()).unwrap_err();
        assert_eq!((e.line, e.column), (Some(9), Some(1)), "{e}");
        assert!(e.message.contains("exactly one"), "{e}");
    }

    #[test]
    fn no_vm_is_refused_without_a_place() {
        let e = define_with("# empty\n", &mut Loader::default()).unwrap_err();
        assert_eq!((e.line, e.column), (None, None));
        assert!(e.message.contains("[[vm]]"), "{e}");
    }

    #[test]
    fn an_image_the_loader_refuses_is_named_at_its_key() {
        let mut loader = Loader {
            refused: "IMAGES/initrd",
            ..Loader::default()
        };
        let e = define_with(VM, &mut loader).unwrap_err();
        assert_eq!((e.line, e.column), (Some(6), Some(10)), "{e}");
        assert!(
            e.message
                .contains("initrd `IMAGES/initrd` cannot be loaded")
                && e.message.contains("no such file on the datastore"),
            "{e}"
        );
        let mut loader = Loader {
            empty: "IMAGES/Image",
            ..Loader::default()
        };
        let e = define_with(VM, &mut loader).unwrap_err();
        assert_eq!((e.line, e.column), (Some(5), Some(10)), "{e}");
        assert!(e.message.contains("kernel `IMAGES/Image` is empty"), "{e}");
    }
}
