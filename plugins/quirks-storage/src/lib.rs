//! Quirk set `ahci-nvme-guest`: storage controllers whose quirks matter when the hypervisor
//! drives them or hands them to guests. One [`QuirkEntry`] per device, all under the same
//! set name, each matched by PCI id.
//!
//! Sources (Linux):
//! - `pci:144d:a808`, Samsung PM981 / PM983 / 970 EVO Plus NVMe: `drivers/nvme/host/pci.c`
//!   `nvme_id_table` entry `{ PCI_DEVICE(0x144d, 0xa808), /* Samsung PM981/983 */
//!   .driver_data = NVME_QUIRK_IGNORE_DEV_SUBNQN }` (upstream commit 7f991e3f9b8f: the
//!   firmware reports an empty SUBNQN). The older "Samsung X5" quirks on this PCI id
//!   (`DELAY_BEFORE_CHK_RDY | NO_DEEPEST_PS`) were moved to a model-number match in
//!   `nvme/host/core.c` by commit e6487833182a because the 970 EVO Plus shares the id and
//!   "does not need or want" them, so no ready delay is applied here.
//! - `pci:1b4b:9215`, Marvell 88SE9215 AHCI: `drivers/pci/quirks.c`
//!   `DECLARE_PCI_FIXUP_HEADER(PCI_VENDOR_ID_MARVELL_EXT, 0x9215, quirk_dma_func1_alias)`
//!   (upstream commit 059983790a4c, kernel bugzilla 42679): the controller issues DMA with
//!   function 1's requester ID, which the SMMU must also map when the controller is
//!   assigned to a guest. (`drivers/ata/ahci.c` also lists it as `board_ahci_yes_fbs`;
//!   FIS-based switching concerns port multipliers and has no field here.)
//!
//! No Linux quirk for these devices limits queue depth, hides the write cache or forces
//! 512-byte sectors, so those fields stay neutral; `generic-ahci` is deliberately not
//! matched because Linux has no quirk for it.
//!
//! ```ignore
//! use hypervisor::plugin::{match_quirks, QUIRKS};
//! let mut cfg = plugin_quirks_storage::StorageConfig::default();
//! for q in match_quirks(&QUIRKS, "pci:1b4b:9215") {
//!     plugin_quirks_storage::apply(&q.data, &mut cfg);
//! }
//! ```
#![cfg_attr(not(test), no_std)]

use hypervisor::plugin::{QuirkData, QuirkEntry, QUIRKS};

/// Name of the quirk set, as a board's KDL `quirk` refers to it.
pub const SET_NAME: &str = "ahci-nvme-guest";

/// Samsung PM981 / PM983 / 970 EVO Plus NVMe.
pub const SAMSUNG_PM981: &str = "pci:144d:a808";

/// Marvell 88SE9215 4-port SATA AHCI.
pub const MARVELL_88SE9215: &str = "pci:1b4b:9215";

/// How the hypervisor drives one storage controller and what it shows the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StorageConfig {
    /// Queue depth exposed to the guest.
    pub queue_depth: u32,
    /// Advertise a volatile write cache to the guest.
    pub volatile_write_cache: bool,
    /// Logical block size exposed to the guest, in bytes.
    pub logical_block_size: u32,
    /// Pass the controller's own NVMe subsystem NQN through (else synthesize a unique one).
    pub use_device_subnqn: bool,
    /// Milliseconds to wait after CC.EN before polling CSTS.RDY.
    pub ready_delay_ms: u32,
    /// Extra PCI function whose requester ID the SMMU must map for this device's DMA.
    pub dma_alias_function: Option<u8>,
}

impl Default for StorageConfig {
    /// No quirks: 1024-deep queues, write cache advertised, 4 KiB blocks, device SUBNQN.
    fn default() -> Self {
        Self {
            queue_depth: 1024,
            volatile_write_cache: true,
            logical_block_size: 4096,
            use_device_subnqn: true,
            ready_delay_ms: 0,
            dma_alias_function: None,
        }
    }
}

/// Applies a storage quirk to `cfg`; returns false (and changes nothing) for other quirk
/// kinds. Limits only tighten: a smaller queue depth or a longer delay already in `cfg`
/// is kept.
pub fn apply(quirk: &QuirkData, cfg: &mut StorageConfig) -> bool {
    let QuirkData::Storage {
        max_queue_depth,
        no_write_cache,
        force_512_sectors,
        ignore_subnqn,
        ready_delay_ms,
        dma_alias_function,
    } = *quirk
    else {
        return false;
    };
    if max_queue_depth != 0 {
        cfg.queue_depth = cfg.queue_depth.min(max_queue_depth);
    }
    if no_write_cache {
        cfg.volatile_write_cache = false;
    }
    if force_512_sectors {
        cfg.logical_block_size = 512;
    }
    if ignore_subnqn {
        cfg.use_device_subnqn = false;
    }
    cfg.ready_delay_ms = cfg.ready_delay_ms.max(ready_delay_ms);
    if dma_alias_function.is_some() {
        cfg.dma_alias_function = dma_alias_function;
    }
    true
}

/// The storage configuration of a device after the quirk entries that apply to it (e.g.
/// those `hypervisor::plugin::pci::quirks_for` finds), applied in order.
pub fn configured<'a>(quirks: impl IntoIterator<Item = &'a QuirkData>) -> StorageConfig {
    let mut cfg = StorageConfig::default();
    for q in quirks {
        apply(q, &mut cfg);
    }
    cfg
}

/// Samsung PM981/983: firmware reports no usable SUBNQN.
#[linkme::distributed_slice(QUIRKS)]
static SAMSUNG_PM981_QUIRKS: QuirkEntry = QuirkEntry {
    name: SET_NAME,
    matches: &[SAMSUNG_PM981],
    description: "Samsung PM981/983 NVMe: synthesize the subsystem NQN (firmware leaves it empty)",
    data: QuirkData::Storage {
        max_queue_depth: 0,
        no_write_cache: false,
        force_512_sectors: false,
        ignore_subnqn: true,
        ready_delay_ms: 0,
        dma_alias_function: None,
    },
};

/// Marvell 88SE9215: DMA also appears as function 1.
#[linkme::distributed_slice(QUIRKS)]
static MARVELL_88SE9215_QUIRKS: QuirkEntry = QuirkEntry {
    name: SET_NAME,
    matches: &[MARVELL_88SE9215],
    description: "Marvell 88SE9215 AHCI: map DMA from PCI function 1 as well",
    data: QuirkData::Storage {
        max_queue_depth: 0,
        no_write_cache: false,
        force_512_sectors: false,
        ignore_subnqn: false,
        ready_delay_ms: 0,
        dma_alias_function: Some(1),
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use hypervisor::plugin::match_quirks;

    fn configured(key: &str) -> StorageConfig {
        let mut cfg = StorageConfig::default();
        let mut applied = 0;
        for q in match_quirks(&QUIRKS, key) {
            assert_eq!(q.name, SET_NAME);
            assert!(apply(&q.data, &mut cfg));
            applied += 1;
        }
        assert_eq!(applied, 1, "exactly one entry for {key}");
        cfg
    }

    #[test]
    fn samsung_pm981_gets_synthesized_subnqn_and_nothing_else() {
        let cfg = configured(SAMSUNG_PM981);
        assert!(!cfg.use_device_subnqn);
        assert_eq!(
            cfg,
            StorageConfig {
                use_device_subnqn: false,
                ..StorageConfig::default()
            }
        );
    }

    #[test]
    fn samsung_pm981_gets_no_x5_ready_delay() {
        assert_eq!(configured(SAMSUNG_PM981).ready_delay_ms, 0);
    }

    #[test]
    fn marvell_88se9215_aliases_dma_to_function_1() {
        let cfg = configured(MARVELL_88SE9215);
        assert_eq!(cfg.dma_alias_function, Some(1));
        assert!(cfg.use_device_subnqn);
    }

    #[test]
    fn generic_ahci_has_no_quirk() {
        assert_eq!(match_quirks(&QUIRKS, "generic-ahci").count(), 0);
    }

    #[test]
    fn apply_only_tightens_limits() {
        let quirk = QuirkData::Storage {
            max_queue_depth: 32,
            no_write_cache: true,
            force_512_sectors: true,
            ignore_subnqn: false,
            ready_delay_ms: 2300,
            dma_alias_function: None,
        };
        let mut cfg = StorageConfig {
            queue_depth: 8,
            ready_delay_ms: 5000,
            ..StorageConfig::default()
        };
        assert!(apply(&quirk, &mut cfg));
        assert_eq!(cfg.queue_depth, 8);
        assert_eq!(cfg.ready_delay_ms, 5000);
        assert!(!cfg.volatile_write_cache);
        assert_eq!(cfg.logical_block_size, 512);
    }

    #[test]
    fn apply_ignores_non_storage_quirks() {
        let mut cfg = StorageConfig::default();
        assert!(!apply(&QuirkData::Soc { cpu_on_delay_us: 1 }, &mut cfg));
        assert_eq!(cfg, StorageConfig::default());
    }
}
