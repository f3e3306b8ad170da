/*
 * QEMU virt SLIT for two nodes with -numa dist,src=0,dst=1,val=20, as
 * hw/acpi/aml-build.c build_slit() writes it. Compile: iasl qemu-virt-numa-slit.dsl.
 */
[0004]                          Signature : "SLIT"    [System Locality Information Table]
[0004]                       Table Length : 00000000
[0001]                           Revision : 01
[0001]                           Checksum : 00
[0006]                             Oem ID : "BOCHS "
[0008]                       Oem Table ID : "BXPC    "
[0004]                       Oem Revision : 00000001
[0004]                    Asl Compiler ID : "BXPC"
[0004]              Asl Compiler Revision : 00000001

[0008]                         Localities : 0000000000000002
[0002]                       Locality   0 : 0A 14
[0002]                       Locality   1 : 14 0A
