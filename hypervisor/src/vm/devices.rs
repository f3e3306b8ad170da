//! A VM's devices: its virtual GIC and the MMIO bus every emulated device sits on.
//!
//! Every trapped guest access goes through [`VmDevices::mmio_read`] /
//! [`VmDevices::mmio_write`]: the bus finds the device, the device sees `(offset, data)` and
//! an [`IoCtx`] (the trapping vCPU, the VM's virtual GIC to raise its interrupt lines, and a
//! set of vCPUs to kick). Adding a device model means implementing
//! [`MmioDevice<IoCtx>`](MmioDevice) and inserting it with [`VmDevices::add`]; the exit
//! path does not change.
//!
//! ```
//! use hypervisor::mmio::AccessSize;
//! use hypervisor::platform::GicVersion;
//! use hypervisor::types::{GuestPhysAddr, VcpuId};
//! use hypervisor::vm::devices::VmDevices;
//! use hypervisor::vm::layout;
//!
//! fn discard(_tag: &str, _line: &[u8]) {}
//! let mut dev = VmDevices::new(GicVersion::V3, 2, "vm0", discard).unwrap();
//! // GICD_TYPER through the bus: ITLinesNumber from the vGIC's SPI count.
//! let (typer, _) = dev
//!     .mmio_read(VcpuId(0), GuestPhysAddr(layout::GICD_BASE + 4), AccessSize::Word)
//!     .unwrap();
//! assert_eq!(typer & 0x1f, u64::from((layout::vgic_spis(true, []) + 32) / 32 - 1));
//! // Nothing lives just below the GIC: the caller injects an abort.
//! assert!(dev
//!     .mmio_read(VcpuId(0), GuestPhysAddr(layout::GICD_BASE - 4), AccessSize::Word)
//!     .is_err());
//! ```
#![deny(unsafe_code)]

use crate::conmux::{LineSink, VmOutput};
use crate::mmio::{AccessSize, BusError, DeviceHandle, MmioBus, MmioDevice, MmioError};
use crate::pci::ecam::{EcamWindow, PciHost, PciMemWindow, SharedPciHost};
use crate::pci::msi::GicV2mFrame;
use crate::pci::{PciError, PciFunction, PciIrq};
use crate::platform::GicVersion;
use crate::sync::Mutex;
use crate::types::{GuestPhysAddr, IntId, VcpuId};
use crate::vgic::{VGic, VGicError, VcpuSet};
use crate::vgpio::Pl061;
use crate::vm::layout;
use crate::vm::mem::{GuestMemError, GuestMemory};
use crate::vuart::Pl011;
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::any::Any;
use core::sync::atomic::{AtomicBool, Ordering};

/// What a device access gets besides `(offset, data)`.
pub struct IoCtx<'a> {
    /// The vCPU whose access trapped.
    pub vcpu: VcpuId,
    /// The VM's virtual GIC: devices drive their interrupt lines through it.
    pub vgic: &'a mut VGic,
    /// vCPUs with new work because of this access (the caller kicks them once the VM's
    /// device lock is released).
    pub kicks: VcpuSet,
    /// The VM's RAM, for devices that do DMA (lock it only while copying; the VM's device
    /// lock is held, so the order is always devices, then RAM).
    pub mem: &'a Mutex<dyn GuestMemory>,
}

impl IoCtx<'_> {
    /// Drives the level of a device interrupt (an SPI); a vCPU it became deliverable to is
    /// added to [`Self::kicks`].
    pub fn set_irq_level(&mut self, intid: IntId, level: bool) {
        if let Ok(Some(target)) = self.vgic.set_level(intid, VcpuId(0), level) {
            self.kicks.insert(target);
        }
    }
}

/// A device model on a VM's bus: an [`MmioDevice`] over [`IoCtx`] that the runtime can
/// also find again by type (to feed the console its input). Implemented for every such
/// device; nothing to write by hand.
pub trait VmDevice: for<'a> MmioDevice<IoCtx<'a>> + Any {
    /// The device as [`Any`], to downcast it.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: for<'a> MmioDevice<IoCtx<'a>> + Any> VmDevice for T {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// Errors building a VM's devices (configuration mistakes, reported at VM creation).
#[derive(Debug, thiserror::Error)]
pub enum DevicesError {
    /// The virtual GIC cannot be built with this many vCPUs.
    #[error("virtual GIC: {0}")]
    Vgic(#[from] VGicError),
    /// A PCI function cannot be added.
    #[error("PCI device `{name}`: {source}")]
    Pci {
        /// The function that could not be added.
        name: &'static str,
        /// Why.
        source: PciError,
    },
    /// Two devices claim the same guest-physical addresses.
    #[error("device `{name}`: {source}")]
    Bus {
        /// The device that could not be placed.
        name: &'static str,
        /// Why.
        source: BusError,
    },
}

/// The GIC distributor frame (GICv3 or GICv2 view of the VM's virtual GIC).
pub struct GicDistributor {
    version: GicVersion,
}

impl<'a> MmioDevice<IoCtx<'a>> for GicDistributor {
    fn read(
        &mut self,
        ctx: &mut IoCtx<'a>,
        offset: u64,
        size: AccessSize,
    ) -> Result<u64, MmioError> {
        let n = size.bytes() as usize;
        Ok(match self.version {
            GicVersion::V3 => ctx.vgic.gicd_read(offset, n),
            GicVersion::V2 => ctx.vgic.gicd_v2_read(ctx.vcpu, offset, n),
        })
    }

    fn write(
        &mut self,
        ctx: &mut IoCtx<'a>,
        offset: u64,
        size: AccessSize,
        value: u64,
    ) -> Result<(), MmioError> {
        let n = size.bytes() as usize;
        let kicks = match self.version {
            GicVersion::V3 => {
                ctx.vgic.gicd_write(offset, n, value);
                ctx.vgic.take_kicks()
            }
            GicVersion::V2 => ctx.vgic.gicd_v2_write(ctx.vcpu, offset, n, value),
        };
        ctx.kicks.extend(kicks);
        Ok(())
    }
}

/// The GICv3 redistributor frames of every vCPU (offset 0 = vCPU 0's `RD_base`).
pub struct GicRedistributors;

impl<'a> MmioDevice<IoCtx<'a>> for GicRedistributors {
    fn read(
        &mut self,
        ctx: &mut IoCtx<'a>,
        offset: u64,
        size: AccessSize,
    ) -> Result<u64, MmioError> {
        Ok(ctx.vgic.gicr_read(offset, size.bytes() as usize))
    }

    fn write(
        &mut self,
        ctx: &mut IoCtx<'a>,
        offset: u64,
        size: AccessSize,
        value: u64,
    ) -> Result<(), MmioError> {
        ctx.vgic.gicr_write(offset, size.bytes() as usize, value);
        let kicks = ctx.vgic.take_kicks();
        ctx.kicks.extend(kicks);
        Ok(())
    }
}

/// Most console input kept for a VM whose UART does not take it (receiver off, FIFO full);
/// older bytes are dropped beyond it.
pub const MAX_PENDING_INPUT: usize = 4096;

/// The VM's console: a PL011 whose output goes, line by line, to the VM's tagged console
/// stream and whose input comes from the console multiplexer.
pub struct ConsoleUart {
    uart: Pl011,
    intid: IntId,
    /// The level last driven onto the interrupt line (the vGIC is only told of changes).
    driven: Option<bool>,
    /// Lines of output.
    pub output: VmOutput,
    /// Console input the UART has not taken yet (its FIFO was full or its receiver off);
    /// fed as the guest reads.
    input: VecDeque<u8>,
    /// Set while the output ends in a prompt not yet emitted (read without the device).
    prompt: Arc<AtomicBool>,
}

impl ConsoleUart {
    /// A console UART raising `intid`, whose lines go to `sink` tagged `tag`.
    pub fn new(intid: IntId, tag: &'static str, sink: LineSink) -> Self {
        Self {
            uart: Pl011::new(),
            intid,
            driven: None,
            output: VmOutput::new(tag, sink),
            input: VecDeque::new(),
            prompt: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Queues console input for the guest.
    pub fn push_input(&mut self, byte: u8) {
        if self.input.len() >= MAX_PENDING_INPUT {
            self.input.pop_front();
        }
        self.input.push_back(byte);
    }

    /// Moves queued input into the UART while it accepts bytes, hands finished output to
    /// the line buffer, and drives the interrupt line.
    pub fn update(&mut self, ctx: &mut IoCtx<'_>) {
        // Only while the FIFO has room: pushing into a full FIFO is an overrun (the byte
        // is lost), which input arriving faster than the guest reads (a pasted line, the
        // management API's console input) must never cause.
        while let Some(&b) = self.input.front() {
            if !self.uart.can_accept_input() || !self.uart.push_input(b) {
                break;
            }
            self.input.pop_front();
        }
        let out = &mut self.output;
        self.uart.drain_output(|bytes| out.push(bytes));
        self.prompt.store(out.shows_prompt(), Ordering::Relaxed);
        let level = self.uart.irq_level();
        if self.driven != Some(level) {
            self.driven = Some(level);
            ctx.set_irq_level(self.intid, level);
        }
    }
}

impl<'a> MmioDevice<IoCtx<'a>> for ConsoleUart {
    fn read(
        &mut self,
        ctx: &mut IoCtx<'a>,
        offset: u64,
        size: AccessSize,
    ) -> Result<u64, MmioError> {
        let v = self.uart.read(&mut (), offset, size);
        self.update(ctx);
        v
    }

    fn write(
        &mut self,
        ctx: &mut IoCtx<'a>,
        offset: u64,
        size: AccessSize,
        value: u64,
    ) -> Result<(), MmioError> {
        let r = self.uart.write(&mut (), offset, size, value);
        self.update(ctx);
        r
    }

    fn reset(&mut self) {
        self.uart = Pl011::new();
        // The vGIC was reset too: drive the line again on the next access.
        self.driven = None;
    }
}

/// What [`VmDevices::console_access`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsoleAccess {
    /// The value loaded (0 for a store).
    pub value: u64,
    /// vCPUs the access gave work to.
    pub kicks: VcpuSet,
    /// The UART's interrupt line moved (the vGIC changed).
    pub line_moved: bool,
    /// The output now ends in a prompt ([`VmDevices::prompt_waiting`]).
    pub prompt: bool,
}

/// The VM's power button: a PL061 GPIO whose line [`crate::vgpio::POWER_BUTTON_LINE`] is
/// the button, and whose interrupt output drives a level SPI.
pub struct PowerButtonGpio {
    gpio: Pl061,
    intid: IntId,
    /// The level last driven onto the interrupt line (the vGIC is only told of changes).
    driven: Option<bool>,
}

impl PowerButtonGpio {
    /// A GPIO raising `intid`.
    pub fn new(intid: IntId) -> Self {
        Self {
            gpio: Pl061::new(),
            intid,
            driven: None,
        }
    }

    /// Presses the button (see [`Pl061::press_power_button`]) and drives the interrupt.
    pub fn press(&mut self, ctx: &mut IoCtx<'_>) {
        self.gpio.press_power_button();
        self.update(ctx);
    }

    fn update(&mut self, ctx: &mut IoCtx<'_>) {
        let level = self.gpio.irq_level();
        if self.driven != Some(level) {
            self.driven = Some(level);
            ctx.set_irq_level(self.intid, level);
        }
    }
}

impl<'a> MmioDevice<IoCtx<'a>> for PowerButtonGpio {
    fn read(
        &mut self,
        ctx: &mut IoCtx<'a>,
        offset: u64,
        size: AccessSize,
    ) -> Result<u64, MmioError> {
        let v = self.gpio.read(&mut (), offset, size);
        // A read of the button's level releases it (a new edge).
        self.update(ctx);
        v
    }

    fn write(
        &mut self,
        ctx: &mut IoCtx<'a>,
        offset: u64,
        size: AccessSize,
        value: u64,
    ) -> Result<(), MmioError> {
        let r = self.gpio.write(&mut (), offset, size, value);
        self.update(ctx);
        r
    }

    fn reset(&mut self) {
        self.gpio = Pl061::new();
        self.driven = None;
    }
}

/// The console UART behind `handle` on `bus`.
fn console_in(bus: &mut VmBus, handle: DeviceHandle) -> Option<&mut ConsoleUart> {
    // Through the box: `Box<dyn VmDevice>` is itself a `VmDevice`, whose `Any` is the box.
    let device: &mut dyn VmDevice = &mut **bus.device_mut(handle)?;
    device.as_any_mut().downcast_mut::<ConsoleUart>()
}

/// A virtual GIC of `version` in its reset state, with `spis` SPIs.
fn new_vgic(version: GicVersion, vcpus: usize, spis: u32) -> Result<VGic, VGicError> {
    match version {
        GicVersion::V3 => VGic::new(vcpus, spis),
        GicVersion::V2 => VGic::new_v2(vcpus, spis),
    }
}

/// The bus of a VM's devices.
pub type VmBus = MmioBus<Box<dyn VmDevice>>;

/// A VM's emulated devices, behind the VM's device lock.
pub struct VmDevices {
    /// The virtual GIC (its frames are devices on the bus; the run loop flushes it).
    pub vgic: VGic,
    /// Every emulated device, by guest-physical range.
    pub bus: VmBus,
    console: DeviceHandle,
    power_button: DeviceHandle,
    gic: GicVersion,
    mem: Arc<Mutex<dyn GuestMemory>>,
    /// The console's [`ConsoleUart::prompt`].
    prompt: Arc<AtomicBool>,
    /// The PCIe host bridge, once a PCI function was added.
    pci: Option<SharedPciHost>,
}

/// Where [`VmDevices::add_pci`] put a function: its device number on bus 0 (the guest
/// sees it as `0000:00:SS.0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PciSlot(pub u8);

/// The memory of a VM built without any ([`VmDevices::new`] before
/// [`VmDevices::with_memory`]): every DMA access is refused.
struct NoMemory;

impl GuestMemory for NoMemory {
    fn read(&mut self, addr: GuestPhysAddr, buf: &mut [u8]) -> Result<(), GuestMemError> {
        Err(GuestMemError::OutOfRange {
            addr,
            len: buf.len() as u64,
        })
    }
    fn write(&mut self, addr: GuestPhysAddr, data: &[u8]) -> Result<(), GuestMemError> {
        Err(GuestMemError::OutOfRange {
            addr,
            len: data.len() as u64,
        })
    }
}

impl VmDevices {
    /// The devices every VM has, at the addresses of [`layout`]: the GIC distributor, the
    /// redistributors (GICv3; a GICv2 guest's CPU interface is the hardware GICV frame,
    /// mapped by stage 2, not trapped), the console PL011 whose lines go to `sink`
    /// tagged `name`, and the power button's PL061 GPIO. The vGIC has the SPIs of a VM with PCI functions
    /// ([`layout::vgic_spis`]`(true, [])`); [`Self::with_spis`] sizes it to a VM's devices.
    pub fn new(
        gic: GicVersion,
        vcpus: usize,
        name: &'static str,
        sink: LineSink,
    ) -> Result<Self, DevicesError> {
        Self::with_spis(gic, vcpus, layout::vgic_spis(true, []), name, sink)
    }

    /// The GIC version the guest sees.
    pub fn gic_version(&self) -> GicVersion {
        self.gic
    }

    /// As [`Self::new`], with a vGIC of `spis` SPIs (what [`layout::vgic_spis`] computes
    /// from the VM's devices).
    pub fn with_spis(
        gic: GicVersion,
        vcpus: usize,
        spis: u32,
        name: &'static str,
        sink: LineSink,
    ) -> Result<Self, DevicesError> {
        let vgic = new_vgic(gic, vcpus, spis)?;
        let mut bus: VmBus = MmioBus::new();
        let place = |bus: &mut VmBus, name, base, len, d: Box<dyn VmDevice>| {
            bus.insert(GuestPhysAddr(base), len, d)
                .map_err(|source| DevicesError::Bus { name, source })
        };
        place(
            &mut bus,
            "gic-distributor",
            layout::GICD_BASE,
            layout::GICD_SIZE,
            Box::new(GicDistributor { version: gic }),
        )?;
        if gic == GicVersion::V3 {
            place(
                &mut bus,
                "gic-redistributors",
                layout::GICR_BASE,
                layout::GICR_STRIDE * vcpus as u64,
                Box::new(GicRedistributors),
            )?;
        }
        let uart = ConsoleUart::new(IntId(layout::UART_INTID), name, sink);
        let prompt = uart.prompt.clone();
        let console = place(
            &mut bus,
            "console-uart",
            layout::UART_BASE,
            layout::UART_SIZE,
            Box::new(uart),
        )?;
        let power_button = place(
            &mut bus,
            "power-button-gpio",
            layout::GPIO_BASE,
            layout::GPIO_SIZE,
            Box::new(PowerButtonGpio::new(IntId(layout::GPIO_INTID))),
        )?;
        Ok(Self {
            vgic,
            bus,
            console,
            power_button,
            gic,
            mem: Arc::new(Mutex::new(NoMemory)),
            prompt,
            pci: None,
        })
    }

    /// Gives the devices the VM's RAM for their DMA (until then every DMA access fails).
    pub fn with_memory(mut self, mem: Arc<Mutex<dyn GuestMemory>>) -> Self {
        self.mem = mem;
        self
    }

    /// Adds a device model at `[base, base + len)`; refused if it overlaps another device.
    pub fn add(
        &mut self,
        name: &'static str,
        base: GuestPhysAddr,
        len: u64,
        device: Box<dyn VmDevice>,
    ) -> Result<DeviceHandle, DevicesError> {
        self.bus
            .insert(base, len, device)
            .map_err(|source| DevicesError::Bus { name, source })
    }

    /// Puts a PCI function on the VM's PCI bus and returns its slot. The first call
    /// creates the PCIe host bridge: its ECAM window at [`layout::PCI_ECAM_BASE`], its
    /// memory window at [`layout::PCI_MMIO_BASE`] and, for a GICv2 VM, the GICv2m MSI
    /// frame at [`layout::GICV2M_BASE`]. The guest finds the bridge in its device tree
    /// when [`Self::has_pci`] (see [`crate::fdt::PciHostDt`]).
    pub fn add_pci(
        &mut self,
        name: &'static str,
        function: Box<dyn PciFunction>,
    ) -> Result<PciSlot, DevicesError> {
        let host = match &self.pci {
            Some(host) => host.clone(),
            None => self.create_pci_host()?,
        };
        let slot = host
            .lock()
            .add(name, function)
            .map_err(|source| DevicesError::Pci { name, source })?;
        Ok(PciSlot(slot))
    }

    fn create_pci_host(&mut self) -> Result<SharedPciHost, DevicesError> {
        let host: SharedPciHost = Arc::new(Mutex::new(PciHost::new(self.gic)));
        self.add(
            "pci-ecam",
            GuestPhysAddr(layout::PCI_ECAM_BASE),
            layout::PCI_ECAM_SIZE,
            Box::new(EcamWindow(host.clone())),
        )?;
        self.add(
            "pci-mmio-window",
            GuestPhysAddr(layout::PCI_MMIO_BASE),
            layout::PCI_MMIO_SIZE,
            Box::new(PciMemWindow {
                host: host.clone(),
                base: layout::PCI_MMIO_BASE,
            }),
        )?;
        if self.gic == GicVersion::V2 {
            self.add(
                "gicv2m-frame",
                GuestPhysAddr(layout::GICV2M_BASE),
                layout::GICV2M_SIZE,
                Box::new(GicV2mFrame::new()),
            )?;
        }
        self.pci = Some(host.clone());
        Ok(host)
    }

    /// The VM has a PCI bus (at least one [`Self::add_pci`]): its device tree needs the
    /// host bridge node.
    pub fn has_pci(&self) -> bool {
        self.pci.is_some()
    }

    /// Runs `f` on the PCI function in `slot` with an access context for vCPU 0 and its
    /// interrupt handle: how work finished outside a guest access (a back-end's
    /// completion) reaches the guest. Returns `f`'s result (`None` for an empty slot) and
    /// the vCPUs to kick.
    pub fn with_pci_function<R>(
        &mut self,
        slot: PciSlot,
        f: impl FnOnce(&mut dyn PciFunction, &mut IoCtx<'_>, &mut dyn PciIrq) -> R,
    ) -> (Option<R>, VcpuSet) {
        let mut ctx = IoCtx {
            vcpu: VcpuId(0),
            vgic: &mut self.vgic,
            kicks: VcpuSet::EMPTY,
            mem: &*self.mem,
        };
        let r = match &self.pci {
            Some(host) => host.lock().with_function(&mut ctx, slot.0, f),
            None => None,
        };
        (r, ctx.kicks)
    }

    /// Lets every PCI function complete work that arrived outside a guest access (frames
    /// the virtual switch queued for the VM's NICs) and raise its interrupt, with an
    /// access context for vCPU 0. The runtime calls it on one of the VM's vCPUs when a
    /// back-end flagged the VM (a switch port's `notify`); returns the vCPUs to kick.
    pub fn poll_io(&mut self) -> VcpuSet {
        let mut ctx = IoCtx {
            vcpu: VcpuId(0),
            vgic: &mut self.vgic,
            kicks: VcpuSet::EMPTY,
            mem: &*self.mem,
        };
        if let Some(host) = &self.pci {
            host.lock().poll_all(&mut ctx);
        }
        ctx.kicks
    }

    /// A guest load of `size` bytes at `addr` by `vcpu`: the value, and the vCPUs the
    /// access gave work to.
    pub fn mmio_read(
        &mut self,
        vcpu: VcpuId,
        addr: GuestPhysAddr,
        size: AccessSize,
    ) -> Result<(u64, VcpuSet), MmioError> {
        let mut ctx = IoCtx {
            vcpu,
            vgic: &mut self.vgic,
            kicks: VcpuSet::EMPTY,
            mem: &*self.mem,
        };
        let v = self.bus.dispatch_read(&mut ctx, addr, size)?;
        Ok((v, ctx.kicks))
    }

    /// A guest store of the low `size` bytes of `value` at `addr` by `vcpu`: the vCPUs the
    /// access gave work to.
    pub fn mmio_write(
        &mut self,
        vcpu: VcpuId,
        addr: GuestPhysAddr,
        size: AccessSize,
        value: u64,
    ) -> Result<VcpuSet, MmioError> {
        let mut ctx = IoCtx {
            vcpu,
            vgic: &mut self.vgic,
            kicks: VcpuSet::EMPTY,
            mem: &*self.mem,
        };
        self.bus.dispatch_write(&mut ctx, addr, size, value)?;
        Ok(ctx.kicks)
    }

    /// Runs `f` on the console UART with an access context for vCPU 0; returns the vCPUs
    /// to kick.
    fn with_console(&mut self, f: impl FnOnce(&mut ConsoleUart, &mut IoCtx<'_>)) -> VcpuSet {
        let mut ctx = IoCtx {
            vcpu: VcpuId(0),
            vgic: &mut self.vgic,
            kicks: VcpuSet::EMPTY,
            mem: &*self.mem,
        };
        let console = self.console;
        if let Some(c) = console_in(&mut self.bus, console) {
            f(c, &mut ctx);
        }
        ctx.kicks
    }

    /// A guest load (`store` is `None`) or store of `size` bytes at `addr` if it falls in
    /// the console UART's window, done exactly as [`Self::mmio_read`] / [`Self::mmio_write`]
    /// do it through the bus, without the bus lookup: for the run loop's exit fast path
    /// (Linux's console polls `UARTFR` and writes `UARTDR` for every character). `None` if
    /// `addr` is outside the window (nothing done).
    pub fn console_access(
        &mut self,
        vcpu: VcpuId,
        addr: GuestPhysAddr,
        size: AccessSize,
        store: Option<u64>,
    ) -> Option<Result<ConsoleAccess, MmioError>> {
        let offset = addr
            .0
            .checked_sub(layout::UART_BASE)
            .filter(|&o| o + size.bytes() <= layout::UART_SIZE)?;
        let mut ctx = IoCtx {
            vcpu,
            vgic: &mut self.vgic,
            kicks: VcpuSet::EMPTY,
            mem: &*self.mem,
        };
        let c = console_in(&mut self.bus, self.console)?;
        let driven = c.driven;
        let value = match store {
            None => c.read(&mut ctx, offset, size).map(|v| v & size.mask()),
            Some(v) => c.write(&mut ctx, offset, size, v & size.mask()).map(|()| 0),
        };
        Some(value.map(|value| ConsoleAccess {
            value,
            kicks: ctx.kicks,
            line_moved: c.driven != driven,
            prompt: self.prompt.load(Ordering::Relaxed),
        }))
    }

    /// Console input for this VM; returns the vCPUs to kick (its UART interrupt rose).
    pub fn console_input(&mut self, byte: u8) -> VcpuSet {
        self.with_console(|c, ctx| {
            c.push_input(byte);
            c.update(ctx);
        })
    }

    /// Presses the VM's power button (a guest with `gpio-keys` sees `KEY_POWER` and shuts
    /// down); returns the vCPUs to kick (the GPIO interrupt rose).
    pub fn press_power_button(&mut self) -> VcpuSet {
        let mut ctx = IoCtx {
            vcpu: VcpuId(0),
            vgic: &mut self.vgic,
            kicks: VcpuSet::EMPTY,
            mem: &*self.mem,
        };
        let device: Option<&mut dyn VmDevice> = self
            .bus
            .device_mut(self.power_button)
            .map(|d| &mut **d as &mut dyn VmDevice);
        if let Some(b) = device.and_then(|d| d.as_any_mut().downcast_mut::<PowerButtonGpio>()) {
            b.press(&mut ctx);
        }
        ctx.kicks
    }

    /// The console's line buffer (to flush a prompt or a partial line).
    pub fn console_output(&mut self) -> Option<&mut VmOutput> {
        console_in(&mut self.bus, self.console).map(|c| &mut c.output)
    }

    /// True while the console's output ends in a shell prompt not yet emitted: the runtime
    /// then traps the guest's `WFI`, so that it sees the VM go idle and calls
    /// [`Self::flush_prompt`].
    pub fn prompt_waiting(&self) -> bool {
        self.prompt.load(Ordering::Relaxed)
    }

    /// Emits the console's partial line if it is a shell prompt (the VM went idle).
    pub fn flush_prompt(&mut self) {
        if let Some(out) = self.console_output() {
            out.flush_prompt();
        }
        self.prompt.store(false, Ordering::Relaxed);
    }

    /// Puts every device and the virtual GIC in its reset state (the VM was reset);
    /// console output and input queued for the VM are kept.
    pub fn reset(&mut self) -> Result<(), DevicesError> {
        self.vgic = new_vgic(self.gic, self.vgic.vcpu_count(), self.vgic.spi_count())?;
        for (_, d) in self.bus.devices_mut() {
            d.reset();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vgic::dist::GICD_CTLR;
    use std::sync::Mutex;
    use std::vec::Vec;

    static LINES: Mutex<Vec<(std::string::String, Vec<u8>)>> = Mutex::new(Vec::new());

    fn record(tag: &str, line: &[u8]) {
        LINES.lock().unwrap().push((tag.into(), line.to_vec()));
    }

    fn discard(_: &str, _: &[u8]) {}

    const UART: u64 = layout::UART_BASE;
    const UARTDR: u64 = 0x00;
    const UARTCR: u64 = 0x30;
    const UARTIMSC: u64 = 0x38;
    const UARTLCR_H: u64 = 0x2c;

    fn a(x: u64) -> GuestPhysAddr {
        GuestPhysAddr(x)
    }

    #[test]
    fn gicd_write_through_the_bus_reaches_the_vgic() {
        let mut d = VmDevices::new(GicVersion::V3, 1, "t", discard).unwrap();
        d.mmio_write(
            VcpuId(0),
            a(layout::GICD_BASE + GICD_CTLR),
            AccessSize::Word,
            2,
        )
        .unwrap();
        assert!(d.vgic.grp1_enabled());
    }

    #[test]
    fn gicr_window_covers_exactly_the_vms_vcpus() {
        let mut d = VmDevices::new(GicVersion::V3, 2, "t", discard).unwrap();
        let last = layout::GICR_BASE + 2 * layout::GICR_STRIDE;
        assert!(d
            .mmio_read(VcpuId(0), a(last - 4), AccessSize::Word)
            .is_ok());
        assert_eq!(
            d.mmio_read(VcpuId(0), a(last), AccessSize::Word),
            Err(MmioError::Unmapped { addr: a(last) })
        );
    }

    #[test]
    fn gicv2_vm_has_no_redistributors_on_its_bus() {
        let mut d = VmDevices::new(GicVersion::V2, 2, "t", discard).unwrap();
        assert!(matches!(
            d.mmio_read(VcpuId(0), a(layout::GICR_BASE), AccessSize::Word),
            Err(MmioError::Unmapped { .. })
        ));
    }

    #[test]
    fn access_to_nothing_is_unmapped() {
        let mut d = VmDevices::new(GicVersion::V3, 1, "t", discard).unwrap();
        for addr in [0, layout::UART_BASE + layout::UART_SIZE, layout::RAM_BASE] {
            assert_eq!(
                d.mmio_write(VcpuId(0), a(addr), AccessSize::Word, 0),
                Err(MmioError::Unmapped { addr: a(addr) })
            );
        }
    }

    #[test]
    fn a_device_overlapping_the_gic_is_refused() {
        let mut d = VmDevices::new(GicVersion::V3, 1, "t", discard).unwrap();
        let r = d.add(
            "rogue",
            a(layout::GICD_BASE + 0x1000),
            0x1000,
            Box::new(GicRedistributors),
        );
        assert!(matches!(
            r,
            Err(DevicesError::Bus {
                name: "rogue",
                source: BusError::Overlap { .. }
            })
        ));
    }

    #[test]
    fn uart_output_reaches_the_line_sink_tagged() {
        let mut d = VmDevices::new(GicVersion::V3, 1, "vmtag", record).unwrap();
        d.mmio_write(VcpuId(0), a(UART + UARTCR), AccessSize::Word, 0x301)
            .unwrap();
        for &b in b"hi\n" {
            d.mmio_write(VcpuId(0), a(UART + UARTDR), AccessSize::Byte, u64::from(b))
                .unwrap();
        }
        let lines = LINES.lock().unwrap();
        assert!(lines.contains(&("vmtag".into(), b"hi".to_vec())));
    }

    #[test]
    fn console_input_raises_the_uart_interrupt_and_names_the_vcpu_to_kick() {
        let mut d = VmDevices::new(GicVersion::V3, 2, "t", discard).unwrap();
        // Linux's start-up: FIFOs, UART and RX on, RX interrupt unmasked; the distributor
        // and SPI 1 enabled.
        for (off, v) in [(UARTLCR_H, 0x70), (UARTCR, 0x301), (UARTIMSC, 0x50)] {
            d.mmio_write(VcpuId(1), a(UART + off), AccessSize::Word, v)
                .unwrap();
        }
        d.mmio_write(VcpuId(0), a(layout::GICD_BASE), AccessSize::Word, 0x12)
            .unwrap();
        d.mmio_write(VcpuId(0), a(layout::GICD_BASE + 0x104), AccessSize::Word, 2)
            .unwrap();
        let kicks = d.console_input(b'x');
        assert!(kicks.contains(VcpuId(0)));
        let (dr, _) = d
            .mmio_read(VcpuId(0), a(UART + UARTDR), AccessSize::Word)
            .unwrap();
        assert_eq!(dr & 0xff, u64::from(b'x'));
    }

    #[test]
    fn a_burst_of_input_waits_for_room_instead_of_overrunning() {
        let mut d = VmDevices::new(GicVersion::V3, 1, "t", discard).unwrap();
        for (off, v) in [(UARTLCR_H, 0x70), (UARTCR, 0x301), (UARTIMSC, 0x50)] {
            d.mmio_write(VcpuId(0), a(UART + off), AccessSize::Word, v)
                .unwrap();
        }
        // A line pasted at once: longer than the 16-byte FIFO.
        let line = b"echo web-$((7*6))-console\n";
        for &b in line {
            d.console_input(b);
        }
        let mut got = Vec::new();
        for _ in 0..line.len() {
            let (dr, _) = d
                .mmio_read(VcpuId(0), a(UART + UARTDR), AccessSize::Word)
                .unwrap();
            // Bits 11:8 are the error flags (OE is bit 11): none may be set.
            assert_eq!(dr & 0xf00, 0, "error flags on byte {}", got.len());
            got.push(dr as u8);
        }
        assert_eq!(got, line);
    }

    #[test]
    fn pending_input_is_bounded() {
        let mut d = VmDevices::new(GicVersion::V3, 1, "t", discard).unwrap();
        for _ in 0..3 * MAX_PENDING_INPUT {
            d.console_input(b'a');
        }
        let c = console_in(&mut d.bus, d.console).unwrap();
        assert_eq!(c.input.len(), MAX_PENDING_INPUT);
    }

    #[test]
    fn power_button_raises_the_gpio_spi_and_kicks() {
        use crate::vgpio::regs::{GPIOIBE, GPIOIC, GPIOIE, GPIOMIS};
        const GPIO: u64 = layout::GPIO_BASE;
        let mut d = VmDevices::new(GicVersion::V3, 2, "t", discard).unwrap();
        // The distributor and INTID 39 (SPI 7: GICD_ISENABLER1 bit 7) enabled.
        d.mmio_write(VcpuId(0), a(layout::GICD_BASE), AccessSize::Word, 0x12)
            .unwrap();
        d.mmio_write(
            VcpuId(0),
            a(layout::GICD_BASE + 0x104),
            AccessSize::Word,
            1 << 7,
        )
        .unwrap();
        // Masked at the GPIO: nothing to deliver.
        assert!(d.press_power_button().is_empty());
        d.mmio_write(VcpuId(0), a(GPIO + GPIOIC), AccessSize::Byte, 0xff)
            .unwrap();
        // gpio-keys: both edges on line 3, unmasked.
        for off in [GPIOIBE, GPIOIE] {
            d.mmio_write(VcpuId(0), a(GPIO + off), AccessSize::Byte, 1 << 3)
                .unwrap();
        }
        let kicks = d.press_power_button();
        assert!(kicks.contains(VcpuId(0)));
        let (mis, _) = d
            .mmio_read(VcpuId(0), a(GPIO + GPIOMIS), AccessSize::Byte)
            .unwrap();
        assert_eq!(mis, 1 << 3);
    }

    #[test]
    fn reset_restores_the_uart_and_the_vgic() {
        let mut d = VmDevices::new(GicVersion::V3, 1, "t", discard).unwrap();
        d.mmio_write(VcpuId(0), a(UART + UARTCR), AccessSize::Word, 0x301)
            .unwrap();
        d.mmio_write(VcpuId(0), a(layout::GICD_BASE), AccessSize::Word, 2)
            .unwrap();
        d.reset().unwrap();
        let (cr, _) = d
            .mmio_read(VcpuId(0), a(UART + UARTCR), AccessSize::Word)
            .unwrap();
        assert_eq!(cr, 0x300);
        assert!(!d.vgic.grp1_enabled());
    }
}
