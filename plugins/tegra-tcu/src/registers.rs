//! Tegra HSP (hardware synchronization primitives) registers that the TCU uses, and the TCU's
//! message format.
//!
//! Sources: Linux `drivers/mailbox/tegra-hsp.c` (register offsets, the shared-mailbox
//! layout, the shared interrupt's enable register, Tegra194's per-mailbox interrupt
//! enables), Linux `drivers/tty/serial/tegra-tcu.c` (the message: up to three bytes and
//! their count), and Trusted Firmware-A `plat/nvidia/tegra/drivers/spe/shared_console.S`
//! (the same message from the secure world, with its "flush to port" bit).

use safe_mmio::fields::ReadPureWrite;

/// Offset of shared mailbox 0 from its HSP block's base; mailbox `n` is at
/// `SM_BASE + n * SM_STRIDE` (tegra-hsp.c `tegra_hsp_add_mailboxes`:
/// `hsp->regs + SZ_64K + i * SZ_32K`).
pub const SM_BASE: u64 = 0x1_0000;
/// Distance between two shared mailboxes (`SZ_32K`).
pub const SM_STRIDE: u64 = 0x8000;
/// Mailboxes whose FULL events a shared interrupt can take: `HSP_INT_FULL_MASK` is 0xff.
pub const SM_MAX: u64 = 8;

/// One shared mailbox's registers.
#[repr(C, align(4))]
pub struct SharedMailbox {
    /// 0x00 `HSP_SM_SHRD_MBOX`: the 32-bit message; bit 31 says it is full.
    pub mbox: ReadPureWrite<u32>,
    /// 0x04 `HSP_SM_SHRD_MBOX_FULL_INT_IE`: 1 raises the FULL event (Tegra194 has these
    /// per-mailbox enables: `has_per_mb_ie`).
    pub full_int_ie: ReadPureWrite<u32>,
    /// 0x08 `HSP_SM_SHRD_MBOX_EMPTY_INT_IE`.
    pub empty_int_ie: ReadPureWrite<u32>,
}

/// The HSP block's common registers up to the shared interrupts' enables.
#[repr(C, align(4))]
pub struct HspCommon {
    _reserved: [u32; 0x40],
    /// 0x100 + 4 * si `HSP_INT_IE(si)`: which mailbox events drive shared interrupt `si`;
    /// bit `n` is mailbox n's EMPTY event, bit `8 + n` its FULL event
    /// (`HSP_INT_EMPTY_SHIFT` 0, `HSP_INT_FULL_SHIFT` 8).
    pub int_ie: [ReadPureWrite<u32>; 8],
}

/// `HSP_INT_IE` bit of mailbox `n`'s FULL event.
pub const fn int_ie_full(n: u32) -> u32 {
    1 << (8 + n)
}

/// The TCU's 32-bit message.
pub mod msg {
    /// Bit 31: the mailbox holds a message (`HSP_SM_SHRD_MBOX_FULL`; TF-A's
    /// `CONSOLE_RING_DOORBELL`/`CONSOLE_IS_BUSY`). The producer sets it, the consumer clears
    /// the whole word when it has taken the message.
    pub const FULL: u32 = 1 << 31;
    /// Bit 26: the SPE firmware is to push its buffer out to the UART now (TF-A's
    /// `CONSOLE_FLUSH_DATA_TO_PORT`, set on every TF-A message; Linux never sets it).
    pub const FLUSH: u32 = 1 << 26;
    /// Bits 25:24: how many of the bytes in bits 23:0 are valid (`TCU_MBOX_NUM_BYTES`).
    pub const COUNT_SHIFT: u32 = 24;
    /// Mask of the count after the shift (`TCU_MBOX_NUM_BYTES_V`).
    pub const COUNT_MASK: u32 = 0x3;
    /// At most three bytes per message.
    pub const MAX_BYTES: usize = 3;

    /// The message for up to three `bytes` (byte i in bits 8i+7:8i, `TCU_MBOX_BYTE`), marked
    /// full, with [`FLUSH`] when `flush`. More than three bytes is a caller bug: only the
    /// first three are packed.
    pub fn pack(bytes: &[u8], flush: bool) -> u32 {
        let bytes = &bytes[..bytes.len().min(MAX_BYTES)];
        let data = bytes
            .iter()
            .enumerate()
            .fold(0u32, |w, (i, &b)| w | (u32::from(b) << (8 * i)));
        FULL | if flush { FLUSH } else { 0 } | ((bytes.len() as u32) << COUNT_SHIFT) | data
    }

    /// The bytes of a received message and how many are valid (0..=3).
    pub fn unpack(word: u32) -> ([u8; MAX_BYTES], usize) {
        let n = ((word >> COUNT_SHIFT) & COUNT_MASK) as usize;
        let [b0, b1, b2, _] = word.to_le_bytes();
        ([b0, b1, b2], n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn offsets_match_tegra_hsp() {
        assert_eq!(offset_of!(SharedMailbox, mbox), 0x0);
        assert_eq!(offset_of!(SharedMailbox, full_int_ie), 0x4);
        assert_eq!(offset_of!(SharedMailbox, empty_int_ie), 0x8);
        assert_eq!(offset_of!(HspCommon, int_ie), 0x100);
        assert_eq!(int_ie_full(0), 1 << 8);
        assert_eq!(int_ie_full(1), 1 << 9);
    }

    /// The Tegra194 windows boards.kdl gives the TCU: hsp_aon (0x0c15_0000) mailbox 1 and
    /// hsp_top0 (0x03c0_0000) mailbox 0, as the device tree's `mboxes` name them.
    #[test]
    fn tegra194_tcu_mailboxes() {
        assert_eq!(0x0c15_0000 + SM_BASE + SM_STRIDE, 0x0c16_8000);
        assert_eq!(0x03c0_0000 + SM_BASE, 0x03c1_0000);
    }

    #[test]
    fn a_message_packs_bytes_low_first_with_count_and_full() {
        assert_eq!(msg::pack(b"abc", false), (1 << 31) | (3 << 24) | 0x63_62_61);
        assert_eq!(
            msg::pack(b"\n", true),
            (1 << 31) | (1 << 26) | (1 << 24) | 0x0a
        );
        assert_eq!(msg::pack(b"abcd", false), msg::pack(b"abc", false));
    }

    #[test]
    fn a_message_unpacks_its_count_of_bytes() {
        assert_eq!(
            msg::unpack((1 << 31) | (2 << 24) | 0x69_68),
            ([b'h', b'i', 0], 2)
        );
        assert_eq!(msg::unpack(1 << 31).1, 0);
    }
}
