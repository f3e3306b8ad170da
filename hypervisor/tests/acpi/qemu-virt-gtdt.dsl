/*
 * QEMU virt GTDT (revision 2), as hw/arm/virt-acpi-build.c build_gtdt() writes it for a
 * current machine type (level-triggered timers): INTIDs ARCH_TIMER_S_EL1_IRQ + 16 = 29,
 * ARCH_TIMER_NS_EL1_IRQ + 16 = 30 (always on), ARCH_TIMER_VIRT_IRQ + 16 = 27,
 * ARCH_TIMER_NS_EL2_IRQ + 16 = 26; no platform timers. Compile: iasl qemu-virt-gtdt.dsl.
 */
[0004]                          Signature : "GTDT"    [Generic Timer Description Table]
[0004]                       Table Length : 00000000
[0001]                           Revision : 02
[0001]                           Checksum : 00
[0006]                             Oem ID : "BOCHS "
[0008]                       Oem Table ID : "BXPC    "
[0004]                       Oem Revision : 00000001
[0004]                    Asl Compiler ID : "BXPC"
[0004]              Asl Compiler Revision : 00000001

[0008]              Counter Block Address : FFFFFFFFFFFFFFFF
[0004]                           Reserved : 00000000

[0004]               Secure EL1 Interrupt : 0000001D
[0004]          EL1 Flags (decoded below) : 00000000
                             Trigger Mode : 0
                                 Polarity : 0
                                Always On : 0

[0004]           Non-Secure EL1 Interrupt : 0000001E
[0004]         NEL1 Flags (decoded below) : 00000004
                             Trigger Mode : 0
                                 Polarity : 0
                                Always On : 1

[0004]            Virtual Timer Interrupt : 0000001B
[0004]           VT Flags (decoded below) : 00000000
                             Trigger Mode : 0
                                 Polarity : 0
                                Always On : 0

[0004]           Non-Secure EL2 Interrupt : 0000001A
[0004]         NEL2 Flags (decoded below) : 00000000
                             Trigger Mode : 0
                                 Polarity : 0
                                Always On : 0
[0008]         Counter Read Block Address : FFFFFFFFFFFFFFFF

[0004]               Platform Timer Count : 00000000
[0004]              Platform Timer Offset : 00000000
