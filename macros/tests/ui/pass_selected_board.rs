// The build's selection (the model in HV_MODEL): tables and symbols for a supported board.
macros::board!();
macros::vms!();

fn main() {
    assert_eq!(HV_BOARD.name, "test-virt");
    assert_eq!(HV_BOARD.cpus.len(), 2);
    assert_eq!(HV_BOARD.console_device().map(|d| d.name), Some("uart0"));
    assert_eq!(HV_BOARD.hypervisor_base, Some(0x4020_0000));
    assert_eq!(HV_VMS.vms[0].name, "test");
    // The staging area starts at the first 2 MiB boundary after the hypervisor.
    assert_eq!(HV_VMS.staging_base, 0x4220_0000);
    assert_eq!(HV_VMS.vms[0].kernel.staging_base, 0x4220_0000);
    assert_eq!(HV_VMS.vms[0].kernel.size, 8192);
}
