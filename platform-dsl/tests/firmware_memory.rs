//! `memory ... from="firmware"` and device windows that are not page aligned: the valid
//! forms load to the model the image build, the hypervisor and xtask read.

use platform_dsl::model::FromFirmware;
use std::path::PathBuf;

fn load(name: &str) -> platform_dsl::model::Board {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/valid")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("read fixture");
    let mut boards = platform_dsl::load_str(name, &text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(boards.len(), 1);
    boards.remove(0)
}

#[test]
fn a_known_base_with_the_size_from_the_firmware() {
    let b = load("firmware-memory.kdl");
    let m = &b.memory[0];
    assert_eq!(m.from_firmware, FromFirmware::Size);
    assert_eq!((m.known_base(), m.known_size()), (Some(0x8000_0000), None));
    assert_eq!(b.hypervisor.load_address, Some(0x8200_0000));
    // Device windows keep the device tree's exact address and size.
    let uart1 = b.devices.iter().find(|d| d.name == "uart1").unwrap();
    assert_eq!(
        (uart1.regs[0].base, uart1.regs[0].size),
        (0x0900_04c0, 0x18)
    );
}

#[test]
fn base_and_size_from_the_firmware_and_no_load_address() {
    let b = load("firmware-memory-no-base.kdl");
    let m = &b.memory[0];
    assert_eq!(m.from_firmware, FromFirmware::BaseAndSize);
    assert_eq!((m.known_base(), m.known_size()), (None, None));
    assert_eq!(b.hypervisor.load_address, None);
    // The linker script links such an image at 0 (it relocates itself at boot).
    let script = platform_dsl::image::linker_script(&b);
    assert!(script.contains(". = 0x0;"), "{script}");
}

#[test]
fn firmware_memory_round_trips_through_the_model_json() {
    for name in ["firmware-memory.kdl", "firmware-memory-no-base.kdl"] {
        let b = load(name);
        let json = serde_json::to_string(&b).unwrap();
        let back: platform_dsl::model::Board = serde_json::from_str(&json).unwrap();
        assert_eq!(back, b, "{name}");
    }
}

#[test]
fn a_board_without_a_console_says_why() {
    let b = load("no-console.kdl");
    assert_eq!(b.console, None);
    assert_eq!(
        b.console_unavailable.as_deref(),
        Some("every UART of the device tree is disabled")
    );
    assert!(b.console_device().is_none());
    // Its UART is not the console: it can be passed through.
    assert!(!b.is_console("uart0"));
}
