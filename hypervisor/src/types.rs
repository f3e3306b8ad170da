//! Newtypes for each address and ID space, so that none crosses a module boundary as a bare `u64`.
#![deny(unsafe_code)]

use core::fmt;

macro_rules! newtype {
    ($(#[$m:meta])* $name:ident($inner:ty), $fmt:literal) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub $inner);
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "(", $fmt, ")"), self.0)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, $fmt, self.0)
            }
        }
    };
}

newtype!(
    /// An intermediate physical address: what a guest believes is physical.
    GuestPhysAddr(u64), "{:#x}"
);
newtype!(
    /// A host physical address.
    HostPhysAddr(u64), "{:#x}"
);
newtype!(
    /// A GIC interrupt ID (SGI 0-15, PPI 16-31, SPI 32-1019).
    IntId(u32), "{}"
);
newtype!(
    /// A vCPU index within its VM (0-based; vCPU n has MPIDR Aff0 = n).
    VcpuId(usize), "{}"
);
newtype!(
    /// A VM index (0-based); stage-2 VMID is this plus one.
    VmId(usize), "{}"
);
newtype!(
    /// A physical CPU index in the board's CPU table (0 = boot CPU).
    PcpuId(usize), "{}"
);

impl GuestPhysAddr {
    /// Adds a byte offset, `None` on overflow.
    pub const fn checked_add(self, off: u64) -> Option<Self> {
        match self.0.checked_add(off) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }
}

impl HostPhysAddr {
    /// Adds a byte offset, `None` on overflow.
    pub const fn checked_add(self, off: u64) -> Option<Self> {
        match self.0.checked_add(off) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }
}
