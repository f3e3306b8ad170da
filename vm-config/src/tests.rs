use super::*;
use alloc::string::ToString;
use alloc::vec;
use alloc::{format, string::String};

const ONE: &str = "[[vm]]\nname = \"linux\"\nvcpus = 2\nmemory_mib = 64\nkernel = \"Image\"\ncmdline = \"console=ttyAMA0\"\n";

/// Line and column of the first occurrence of `needle` in `text` (1-based).
fn where_is(text: &str, needle: &str) -> (usize, usize) {
    let at = text.find(needle).expect("needle in text");
    let l = Location::of(text, at..at + needle.len());
    (l.line, l.column)
}

fn err(text: &str) -> ConfigError {
    parse_vms(text).expect_err(text)
}

#[test]
fn a_valid_vm_keeps_every_field() {
    let text = format!(
        "{ONE}initrd = \"i\"\ndtb = \"d\"\nautostart = true\ndevices = [{{ passthrough = \"uart1\" }}]\n\
         [[vm.disk]]\npartition = \"root\"\ncontroller = \"virtio-blk\"\nread-only = true\nsize-mib = 16\n\
         [[vm.nic]]\nmac = \"52:54:00:AB:cd:01\"\nport-group = \"lan\"\n"
    );
    let vm = parse_one(&text).unwrap();
    assert_eq!(vm.name, "linux");
    assert_eq!(
        (vm.vcpus, vm.memory_mib, vm.memory_bytes),
        (2, 64, 64 * MIB)
    );
    assert_eq!(vm.kernel, "Image");
    assert_eq!(
        (vm.initrd.as_deref(), vm.dtb.as_deref()),
        (Some("i"), Some("d"))
    );
    assert_eq!(vm.cmdline, "console=ttyAMA0");
    assert!(vm.autostart);
    assert_eq!(vm.devices, vec![VmDevice::Passthrough("uart1".into())]);
    assert_eq!(
        vm.disks,
        vec![VmDisk {
            partition: "root".into(),
            controller: DiskController::VirtioBlk,
            read_only: true,
            size_mib: Some(16)
        }]
    );
    assert_eq!(
        vm.nics,
        vec![VmNic {
            mac: Some("52:54:00:ab:cd:01".into()),
            port_group: Some("lan".into())
        }]
    );
    let kinds: Vec<(ImageKind, &str)> = vm.images().map(|(k, p, _)| (k, p)).collect();
    assert_eq!(
        kinds,
        vec![
            (ImageKind::Kernel, "Image"),
            (ImageKind::Initrd, "i"),
            (ImageKind::Dtb, "d")
        ]
    );
    let l = &vm.spans.memory_mib;
    assert_eq!((l.line, l.column), where_is(&text, "64\n"));
    assert_eq!((vm.spans.table.line, vm.spans.table.column), (1, 1));
}

#[test]
fn autostart_defaults_to_false() {
    assert!(!parse_one(ONE).unwrap().autostart);
}

#[test]
fn syntax_errors_carry_tomls_line_and_column() {
    let text = format!("{ONE}cmdline2 = = 3\n");
    let e = err(&text);
    assert!(matches!(*e.kind(), ErrorKind::Syntax { .. }), "{e}");
    assert_eq!(e.line_col().map(|(l, _)| l), Some(7), "{e}");
    let e = err(&format!("{ONE}memory = 3\n"));
    assert!(e.to_string().contains("unknown field `memory`"), "{e}");
    assert!(e.to_string().ends_with("did you mean `memory_mib`?"), "{e}");
    assert_eq!(e.line_col(), Some((7, 1)));
    // A typo gets the closest key; a key like none of them gets no guess.
    let e = err(&format!("{ONE}cmdlin = \"x\"\n"));
    assert!(e.to_string().ends_with("did you mean `cmdline`?"), "{e}");
    assert_eq!(e.line_col(), Some((7, 1)));
    let e = err(&format!("{ONE}frobnicate = 1\n"));
    assert!(!e.to_string().contains("did you mean"), "{e}");
    let e = err("[[vm]]\nname = \"a\"\nvcpus = 1\nmemory_mib = 2\ncmdline = \"\"\n");
    assert!(e.to_string().contains("missing field `kernel`"), "{e}");
    assert_eq!(e.line_col(), Some((1, 1)));
    let e = err(&ONE.replace("vcpus = 2", "vcpus = \"two\""));
    assert_eq!(e.line_col(), Some(where_is(ONE, "2\n")));
}

#[test]
fn no_vm_is_an_error_without_a_place() {
    for text in ["", "# nothing\n"] {
        let e = err(text);
        assert_eq!(e.kind(), &ErrorKind::NoVms);
        assert_eq!(e.line_col(), None);
        assert_eq!(parse_one(text).unwrap_err().kind(), &ErrorKind::NoVms);
    }
    // Said on purpose: an image without build-time VMs.
    assert_eq!(parse_vms("vm = []\n").map(|v| v.len()), Ok(0));
    assert_eq!(
        parse_one("vm = []\n").unwrap_err().kind(),
        &ErrorKind::NoVms
    );
}

#[test]
fn parse_one_refuses_a_second_vm_pointing_at_it() {
    let text = format!("{ONE}{}", ONE.replace("linux", "other"));
    let e = parse_one(&text).unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::MoreThanOne);
    assert_eq!(e.line_col(), Some((7, 1)));
    assert_eq!(parse_vms(&text).unwrap().len(), 2);
}

#[test]
fn rule_errors_point_at_their_key() {
    let cases: &[(&str, &str, &str)] = &[
        ("vcpus = 2", "vcpus = 0", "0\n"),
        ("vcpus = 2", "vcpus = 65", "65"),
        ("memory_mib = 64", "memory_mib = 1", "1\n"),
        ("memory_mib = 64", "memory_mib = 65", "65"),
        (
            "memory_mib = 64",
            "memory_mib = 9223372036854775806",
            "92233",
        ),
        ("\"linux\"", "\" \"", "\" \""),
        ("\"Image\"", "\"\"", "\"\"\n"),
    ];
    for (from, to, needle) in cases {
        let text = ONE.replace(from, to);
        let e = err(&text);
        assert_eq!(e.line_col(), Some(where_is(&text, needle)), "{to}: {e}");
    }
}

#[test]
fn rule_messages_say_what_to_write() {
    let e = err(&ONE.replace("vcpus = 2", "vcpus = 0"));
    assert!(matches!(
        *e.kind(),
        ErrorKind::VcpusOutOfRange { vcpus: 0, .. }
    ));
    assert!(e.to_string().contains("1..=64"), "{e}");
    assert_eq!(
        parse_one(&ONE.replace("vcpus = 2", "vcpus = 64"))
            .unwrap()
            .vcpus,
        64
    );
    let e = err(&ONE.replace("memory_mib = 64", "memory_mib = 65"));
    assert!(matches!(
        *e.kind(),
        ErrorKind::MemoryNotAligned { rounded: 66, .. }
    ));
    assert!(e.to_string().contains("VM `linux`") && e.to_string().contains("write 66"));
    for v in ["0", "1"] {
        let e = err(&ONE.replace("memory_mib = 64", &format!("memory_mib = {v}")));
        assert!(matches!(*e.kind(), ErrorKind::MemoryTooSmall { .. }), "{e}");
    }
    let e = err(&ONE.replace("memory_mib = 64", "memory_mib = 9223372036854775806"));
    assert!(matches!(*e.kind(), ErrorKind::MemoryTooLarge { .. }), "{e}");
    let e = err(&ONE.replace("\"linux\"", "\"\""));
    assert_eq!(e.kind(), &ErrorKind::EmptyName { index: 0 });
    let e = err(&format!("{ONE}initrd = \"\"\n"));
    assert!(
        matches!(
            *e.kind(),
            ErrorKind::EmptyImagePath {
                field: ImageKind::Initrd,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.line_col(), Some((7, 10)));
}

#[test]
fn duplicate_names_point_at_the_second() {
    let text = format!("{ONE}{ONE}");
    let e = err(&text);
    assert_eq!(
        *e.kind(),
        ErrorKind::DuplicateName {
            name: "linux".into()
        }
    );
    assert_eq!(e.line_col(), Some((8, 8)));
    assert!(e.to_string().contains("unique"), "{e}");
}

#[test]
fn disks_follow_the_label_and_size_rules() {
    for label in ["", " ", &"x".repeat(MAX_PARTITION_LABEL + 1)] {
        let text = format!("{ONE}[[vm.disk]]\npartition = \"{label}\"\ncontroller = \"nvme\"\n");
        let e = err(&text);
        assert!(
            matches!(*e.kind(), ErrorKind::BadPartitionLabel { .. }),
            "{e}"
        );
        assert_eq!(e.line_col(), Some((8, 13)));
    }
    let ok = format!(
        "{ONE}[[vm.disk]]\npartition = \"{}\"\ncontroller = \"nvme\"\n",
        "x".repeat(MAX_PARTITION_LABEL)
    );
    assert!(parse_one(&ok).is_ok());
    for size in ["0", "17592186044416"] {
        let text = format!(
            "{ONE}[[vm.disk]]\npartition = \"a\"\ncontroller = \"ahci\"\nsize-mib = {size}\n"
        );
        let e = err(&text);
        assert!(matches!(*e.kind(), ErrorKind::DiskSizeZero { .. }), "{e}");
        assert_eq!(e.line_col(), Some((10, 12)));
    }
    let e = err(&format!(
        "{ONE}[[vm.disk]]\npartition = \"a\"\ncontroller = \"scsi\"\n"
    ));
    let msg = e.to_string();
    assert!(
        msg.contains("scsi") && msg.contains("nvme") && msg.contains("virtio-blk"),
        "{msg}"
    );
}

#[test]
fn a_partition_written_by_one_vm_is_nobody_elses() {
    let vm = |name: &str, ro: bool| {
        format!(
            "[[vm]]\nname = \"{name}\"\nvcpus = 1\nmemory_mib = 64\nkernel = \"Image\"\n\
             cmdline = \"\"\n[[vm.disk]]\npartition = \"p\"\ncontroller = \"nvme\"\n\
             read-only = {ro}\n"
        )
    };
    let e = err(&format!("{}{}", vm("a", true), vm("b", false)));
    assert_eq!(
        *e.kind(),
        ErrorKind::DiskShared {
            label: "p".into(),
            first: "a".into(),
            second: "b".into()
        }
    );
    assert_eq!(e.line_col(), Some((18, 13)));
    assert!(parse_vms(&format!("{}{}", vm("a", true), vm("b", true))).is_ok());
    // Two disks of one VM on one partition: the same rule.
    let one = format!(
        "{}[[vm.disk]]\npartition = \"p\"\ncontroller = \"ahci\"\n",
        vm("a", false)
    );
    assert!(matches!(
        parse_one(&one).unwrap_err().kind(),
        ErrorKind::DiskShared { .. }
    ));
}

#[test]
fn bad_and_shared_macs_are_refused_with_what_to_write() {
    for (mac, why) in [
        ("52:54:00:12:34", "fewer than six"),
        ("52:54:00:12:34:56:78", "more than six"),
        ("52:54:0:12:34:56", "two hex digits"),
        ("52:54:00:12:34:zz", "two hex digits"),
        ("01:00:5e:00:00:01", "multicast"),
        ("00:00:00:00:00:00", "all zeros"),
    ] {
        let e = err(&format!("{ONE}[[vm.nic]]\n[[vm.nic]]\nmac = \"{mac}\"\n"));
        let msg = e.to_string();
        assert!(
            msg.contains(why) && msg.contains("52:54:00:12:34:56"),
            "{mac}: {msg}"
        );
        assert!(
            matches!(*e.kind(), ErrorKind::BadMac { index: 1, .. }),
            "{e}"
        );
        assert_eq!(e.line_col(), Some((9, 7)));
    }
    let two = format!(
        "{ONE}[[vm.nic]]\nmac = \"52:54:00:00:00:01\"\n\
         [[vm]]\nname = \"b\"\nvcpus = 1\nmemory_mib = 2\nkernel = \"Image\"\ncmdline = \"\"\n\
         [[vm.nic]]\nmac = \"52:54:00:00:00:01\"\n"
    );
    let e = err(&two);
    assert!(
        e.to_string().contains("52:54:00:00:00:01") && e.to_string().contains("own"),
        "{e}"
    );
    assert_eq!(e.line_col(), Some((16, 7)));
}

struct Board;

impl BoardFacts for Board {
    fn board_name(&self) -> &str {
        "test"
    }
    fn port_groups(&self) -> Vec<String> {
        vec!["default".into(), "lan".into()]
    }
    fn device(&self, name: &str) -> Option<DeviceUse> {
        match name {
            "uart0" => Some(DeviceUse::Console),
            "uart1" => Some(DeviceUse::Passable),
            "uart2" => Some(DeviceUse::SharesPage {
                page: 0x1000,
                other: "device \"uart3\" window `regs` [0x1400, +0x100]".into(),
            }),
            "gpu" => Some(DeviceUse::Disabled {
                reason: "cannot be shared".into(),
            }),
            _ => None,
        }
    }
    fn passable_devices(&self) -> Vec<String> {
        vec!["uart1".into()]
    }
    fn numa_nodes(&self) -> u32 {
        2
    }
}

fn board_err(extra: &str) -> ConfigError {
    let text = format!("{ONE}{extra}");
    parse_one(&text)
        .unwrap()
        .check_board(&Board)
        .expect_err(extra)
}

#[test]
fn board_checks_name_the_choices_and_point_at_the_entry() {
    let e = board_err("devices = [{ passthrough = \"uart1\" }, { passthrough = \"uart9\" }]\n");
    assert!(
        matches!(e.kind(), ErrorKind::UnknownDevice { known, .. } if known == "uart1"),
        "{e}"
    );
    assert_eq!(e.line_col(), Some((7, 39)));
    let e = board_err("devices = [{ passthrough = \"gpu\" }]\n");
    assert!(e.to_string().contains("(cannot be shared)"), "{e}");
    let e = board_err("devices = [{ passthrough = \"uart0\" }]\n");
    assert!(
        matches!(*e.kind(), ErrorKind::ConsolePassthrough { .. }),
        "{e}"
    );
    let e = board_err("devices = [{ passthrough = \"uart2\" }]\n");
    assert!(
        matches!(
            *e.kind(),
            ErrorKind::PassthroughSharesPage { page: 0x1000, .. }
        ) && e.to_string().contains("device \"uart3\""),
        "{e}"
    );
    let e = board_err("[[vm.nic]]\n[[vm.nic]]\nport-group = \"dmz\"\n");
    let msg = e.to_string();
    assert!(
        msg.contains("`dmz`") && msg.contains("`default`, `lan`") && msg.contains("NIC 1"),
        "{msg}"
    );
    assert_eq!(e.line_col(), Some((9, 14)));
    let ok = format!(
        "{ONE}devices = [{{ passthrough = \"uart1\" }}]\n[[vm.nic]]\nport-group = \"lan\"\n"
    );
    assert!(parse_one(&ok).unwrap().check_board(&Board).is_ok());
}

#[test]
fn board_checks_without_spans_have_no_place() {
    let e = check_board(
        &Board,
        "x",
        &[VmDevice::Passthrough("nope".into())],
        &[],
        None,
    )
    .unwrap_err();
    assert_eq!(e.line_col(), None);
    assert!(
        e.to_string().contains("not a device of board `test`"),
        "{e}"
    );
}

#[test]
fn hostile_text_gives_errors_not_panics() {
    for text in [
        "[[vm]",
        "[[vm]]\nname = \"\u{0}\"",
        "\u{feff}[[vm]]",
        "[vm]\nname=1",
        "vm = 3",
        "[[vm]]\n\"é\" = 1",
    ] {
        assert!(parse_vms(text).is_err(), "{text}");
        assert!(parse_one(text).is_err(), "{text}");
    }
}

#[test]
fn numa_keys_give_the_policy() {
    assert_eq!(parse_one(ONE).unwrap().numa, NumaPolicy::Local);
    let pinned = parse_one(&format!("{ONE}numa-node = 1\n")).unwrap();
    assert_eq!(pinned.numa, NumaPolicy::Node(1));
    assert!(pinned.check_board(&Board).is_ok());
    let spread = parse_one(&format!("{ONE}numa = \"spread\"\n")).unwrap();
    assert_eq!(spread.numa, NumaPolicy::Spread);
    let local = parse_one(&format!("{ONE}numa = \"local\"\n")).unwrap();
    assert_eq!(local.numa, NumaPolicy::Local);
}

#[test]
fn numa_node_and_spread_together_is_an_error_at_the_node() {
    let text = format!("{ONE}numa = \"spread\"\nnuma-node = 1\n");
    let e = err(&text);
    assert!(
        matches!(e.kind(), ErrorKind::NumaNodeAndSpread { node: 1, .. }),
        "{e}"
    );
    let (line, _) = where_is(&text, "numa-node");
    assert_eq!(e.line_col(), Some((line, 13)));
}

#[test]
fn a_numa_node_the_board_lacks_is_an_error_at_the_key() {
    let e = board_err("numa-node = 2\n");
    assert!(
        matches!(
            e.kind(),
            ErrorKind::UnknownNumaNode {
                node: 2,
                nodes: 2,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("0..2"), "{e}");
    assert_eq!(e.line_col(), Some((7, 13)));
}

#[test]
fn an_unknown_numa_mode_is_a_located_syntax_error() {
    let text = format!("{ONE}numa = \"everywhere\"\n");
    let e = err(&text);
    assert!(
        e.to_string().contains("local") && e.to_string().contains("spread"),
        "{e}"
    );
    assert_eq!(e.line_col().map(|l| l.0), Some(7));
}

#[test]
fn console_escape_key_is_read_from_the_host_file() {
    let text = format!("[console]\nescape = \"ctrl-b\"\n\n{ONE}");
    assert_eq!(
        parse_host_settings(&text).unwrap().console_escape,
        Some(0x02)
    );
    assert_eq!(parse_vms(&text).unwrap().len(), 1);
    assert_eq!(parse_host_settings(ONE).unwrap(), HostSettings::default());
    assert_eq!(escape_key("Ctrl-]"), Some(DEFAULT_ESCAPE));
    assert_eq!(escape_key("^A"), Some(0x01));
    assert_eq!(escape_key("ctrl-\\"), Some(0x1c));
    assert_eq!(escape_key_name(0x02).to_string(), "Ctrl-B");
    assert_eq!(escape_key_name(DEFAULT_ESCAPE).to_string(), "Ctrl-]");
}

#[test]
fn a_console_escape_key_terminals_need_is_refused_where_written() {
    for bad in [
        "ctrl-m", "ctrl-J", "ctrl-h", "ctrl-i", "ctrl-[", "ctrl-@", "b", "ctrl-bb", "",
    ] {
        let text = format!("{ONE}\n[console]\nescape = \"{bad}\"\n");
        let e = err(&text);
        assert_eq!(
            e.kind(),
            &ErrorKind::BadEscapeKey {
                written: bad.into()
            },
            "{bad}: {e}"
        );
        assert_eq!(e.line_col().map(|(l, _)| l), Some(9), "{bad}: {e}");
        assert!(e.to_string().contains("e.g. escape = \"ctrl-b\""), "{e}");
    }
    let typo = err(&format!("{ONE}\n[console]\nescap = \"ctrl-b\"\n"));
    assert!(typo.to_string().contains("did you mean `escape`"), "{typo}");
}

#[test]
fn a_single_vm_definition_may_not_set_the_hosts_console() {
    let text = format!("{ONE}\n[console]\nescape = \"ctrl-b\"\n");
    let e = parse_one(&text).expect_err("console in a VM definition");
    assert_eq!(e.kind(), &ErrorKind::HostSettingInVm);
    assert_eq!(e.line_col().map(|(l, _)| l), Some(8), "{e}");
}

#[test]
fn page_neighbours_are_windows_in_the_same_4k_pages() {
    let others = || {
        vec![
            ("a".to_string(), 0x1_0000, 0x1000),
            ("b".to_string(), 0x2_0400, 0x100),
        ]
    };
    // Its own pages: nothing else there.
    assert_eq!(page_neighbour(&[(0x3_0000, 0x1000)], others()), None);
    // Byte-disjoint but in the same page as `b`.
    assert_eq!(
        page_neighbour(&[(0x2_0000, 0x100)], others()),
        Some((0x2_0000, "b".to_string()))
    );
    // The page after `a`'s last byte is not `a`'s.
    assert_eq!(page_neighbour(&[(0x1_1000, 0x10)], others()), None);
    // A window that ends in `a`'s page.
    assert_eq!(
        page_neighbour(&[(0xf000, 0x1001)], others()),
        Some((0x1_0000, "a".to_string()))
    );
}

#[test]
fn covering_pages_round_out_and_merge() {
    assert_eq!(covering_pages(&[(0x1000, 0x1000)]), vec![(0x1000, 0x1000)]);
    // Two windows of one device in one page: one page.
    assert_eq!(
        covering_pages(&[(0x2_04c0, 0x18), (0x2_0400, 0x40)]),
        vec![(0x2_0000, 0x1000)]
    );
    // A window straddling a page boundary covers both pages; a distant one stays apart.
    assert_eq!(
        covering_pages(&[(0x3_0ff0, 0x20), (0x9_0000, 0x4)]),
        vec![(0x3_0000, 0x2000), (0x9_0000, 0x1000)]
    );
    assert_eq!(covering_pages(&[(0x5000, 0)]), vec![]);
}
