//! AHCI 1.3.1 register offsets and bits (section 3 of the specification), and the layout
//! of the structures the HBA reads and writes in guest memory (section 4).
#![allow(dead_code)]

// ---- Generic host control (ABAR + 0x00) ----
/// Host Capabilities.
pub const CAP: u64 = 0x00;
/// Global HBA Control.
pub const GHC: u64 = 0x04;
/// Interrupt Status (one bit per port).
pub const IS: u64 = 0x08;
/// Ports Implemented.
pub const PI: u64 = 0x0c;
/// Version.
pub const VS: u64 = 0x10;
/// Host Capabilities Extended.
pub const CAP2: u64 = 0x24;
/// BIOS/OS Handoff Control and Status.
pub const BOHC: u64 = 0x28;

/// CAP.S64A: 64-bit addressing.
pub const CAP_S64A: u32 = 1 << 31;
/// CAP.SNCQ: native command queuing.
pub const CAP_SNCQ: u32 = 1 << 30;
/// CAP.SCLO: command list override.
pub const CAP_SCLO: u32 = 1 << 24;
/// CAP.ISS: interface speed support (bits 23:20), 3 = Gen3 (6 Gbps).
pub const CAP_ISS_GEN3: u32 = 3 << 20;
/// CAP.SAM: supports AHCI mode only.
pub const CAP_SAM: u32 = 1 << 18;
/// CAP.NCS: number of command slots - 1 (bits 12:8).
pub const CAP_NCS_SHIFT: u32 = 8;

/// GHC.AE: AHCI enable.
pub const GHC_AE: u32 = 1 << 31;
/// GHC.IE: interrupt enable.
pub const GHC_IE: u32 = 1 << 1;
/// GHC.HR: HBA reset.
pub const GHC_HR: u32 = 1 << 0;

/// AHCI 1.3.1.
pub const VERSION: u32 = 0x0001_0301;

// ---- Port registers (ABAR + 0x100 + port * 0x80) ----
/// Port 0's registers.
pub const PORT0: u64 = 0x100;
/// Size of one port's register block.
pub const PORT_SIZE: u64 = 0x80;
/// Command List Base Address (1 KiB aligned).
pub const P_CLB: u64 = 0x00;
/// Command List Base Address Upper 32 bits.
pub const P_CLBU: u64 = 0x04;
/// FIS Base Address (256-byte aligned).
pub const P_FB: u64 = 0x08;
/// FIS Base Address Upper 32 bits.
pub const P_FBU: u64 = 0x0c;
/// Interrupt Status.
pub const P_IS: u64 = 0x10;
/// Interrupt Enable.
pub const P_IE: u64 = 0x14;
/// Command and Status.
pub const P_CMD: u64 = 0x18;
/// Task File Data.
pub const P_TFD: u64 = 0x20;
/// Signature.
pub const P_SIG: u64 = 0x24;
/// SATA Status (SCR0: SStatus).
pub const P_SSTS: u64 = 0x28;
/// SATA Control (SCR2: SControl).
pub const P_SCTL: u64 = 0x2c;
/// SATA Error (SCR1: SError).
pub const P_SERR: u64 = 0x30;
/// SATA Active (SCR3: SActive).
pub const P_SACT: u64 = 0x34;
/// Command Issue.
pub const P_CI: u64 = 0x38;
/// SATA Notification (SCR4).
pub const P_SNTF: u64 = 0x3c;
/// FIS-based Switching Control.
pub const P_FBS: u64 = 0x40;

// PxIS / PxIE bits.
/// Device to Host Register FIS received.
pub const IS_DHRS: u32 = 1 << 0;
/// PIO Setup FIS received.
pub const IS_PSS: u32 = 1 << 1;
/// DMA Setup FIS received.
pub const IS_DSS: u32 = 1 << 2;
/// Set Device Bits FIS received.
pub const IS_SDBS: u32 = 1 << 3;
/// Unknown FIS.
pub const IS_UFS: u32 = 1 << 4;
/// Descriptor Processed (a PRD with the I bit was transferred).
pub const IS_DPS: u32 = 1 << 5;
/// Port Connect Change (mirrors PxSERR.DIAG.X).
pub const IS_PCS: u32 = 1 << 6;
/// PhyRdy Change (mirrors PxSERR.DIAG.N).
pub const IS_PRCS: u32 = 1 << 22;
/// Overflow: the device moved more data than the PRDT describes.
pub const IS_OFS: u32 = 1 << 24;
/// Interface Fatal Error.
pub const IS_IFS: u32 = 1 << 27;
/// Host Bus Fatal Error.
pub const IS_HBFS: u32 = 1 << 29;
/// Task File Error (PxTFD.STS.ERR was set by a received FIS).
pub const IS_TFES: u32 = 1 << 30;
/// The PxIS / PxIE bits that exist.
pub const IS_MASK: u32 = 0xfdc0_00ff;
/// PxIS bits software clears by writing 1 (PCS and PRCS clear with PxSERR).
pub const IS_W1C: u32 = IS_MASK & !(IS_PCS | IS_PRCS);
/// PxIS bits after which the port stops processing commands until PxCMD.ST is cleared.
pub const IS_FATAL: u32 = IS_TFES | IS_HBFS | IS_IFS | IS_OFS;

// PxCMD bits.
/// Start: process the command list.
pub const CMD_ST: u32 = 1 << 0;
/// Spin-Up Device (read-only 1 without staggered spin-up).
pub const CMD_SUD: u32 = 1 << 1;
/// Power On Device (read-only 1 without cold presence detection).
pub const CMD_POD: u32 = 1 << 2;
/// Command List Override: clears PxTFD.STS.BSY and DRQ.
pub const CMD_CLO: u32 = 1 << 3;
/// FIS Receive Enable.
pub const CMD_FRE: u32 = 1 << 4;
/// Current Command Slot (bits 12:8).
pub const CMD_CCS_SHIFT: u32 = 8;
/// FIS Receive Running.
pub const CMD_FR: u32 = 1 << 14;
/// Command List Running.
pub const CMD_CR: u32 = 1 << 15;
/// Bits software may set and read back: ATAPI, DLAE (ALPE and ASP need CAP.SALP).
pub const CMD_RW: u32 = 0x0300_0000;
/// Interface Communication Control (bits 31:28).
pub const CMD_ICC_MASK: u32 = 0xf000_0000;

// PxTFD.STS (ATA status) bits.
/// Error.
pub const ATA_ERR: u8 = 0x01;
/// Data request.
pub const ATA_DRQ: u8 = 0x08;
/// Device ready.
pub const ATA_DRDY: u8 = 0x40;
/// Busy.
pub const ATA_BSY: u8 = 0x80;

// PxSERR bits.
/// ERR.P: protocol error.
pub const SERR_PROTOCOL: u32 = 1 << 10;
/// ERR.E: internal error (a master abort reaching system memory).
pub const SERR_INTERNAL: u32 = 1 << 11;
/// DIAG.N: PhyRdy changed.
pub const SERR_DIAG_N: u32 = 1 << 16;
/// DIAG.X: device exchanged (COMINIT received).
pub const SERR_DIAG_X: u32 = 1 << 26;

/// Device signature of an ATA disk (PxSIG after its first D2H Register FIS).
pub const SIG_ATA: u32 = 0x0000_0101;

// ---- Memory structures ----
/// Command slots (CAP.NCS + 1).
pub const SLOTS: u32 = 32;
/// Bytes per command header in the command list.
pub const HEADER_SIZE: u64 = 32;
/// Offset of the PRDT in a command table.
pub const PRDT_OFFSET: u64 = 0x80;
/// Bytes per PRD entry.
pub const PRD_SIZE: u64 = 16;
/// Received-FIS area offsets: PIO Setup FIS.
pub const RFIS_PSFIS: u64 = 0x20;
/// Received-FIS area offsets: D2H Register FIS.
pub const RFIS_RFIS: u64 = 0x40;
/// Received-FIS area offsets: Set Device Bits FIS.
pub const RFIS_SDBFIS: u64 = 0x58;

/// FIS type: Register, host to device.
pub const FIS_H2D: u8 = 0x27;
/// FIS type: Register, device to host.
pub const FIS_D2H: u8 = 0x34;
/// FIS type: Set Device Bits.
pub const FIS_SDB: u8 = 0xa1;
/// FIS type: PIO Setup.
pub const FIS_PIO_SETUP: u8 = 0x5f;
