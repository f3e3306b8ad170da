// An experimental board builds with `allow_experimental = true`; disabled devices keep their reason.
macros::board!(name = "test-experimental", allow_experimental = true);

fn main() {
    let gpu = HV_BOARD.devices.iter().find(|d| d.name == "gpu").unwrap();
    assert!(!gpu.is_enabled());
    assert_eq!(
        gpu.status,
        hypervisor::platform::DeviceStatus::Disabled { reason: "integrated GPU cannot be shared" }
    );
}
