//! Submission entries, completion status codes and the queues' bookkeeping (NVMe 1.4
//! sections 4.2, 4.6 and 4.1).

/// One 64-byte submission queue entry, as sixteen little-endian dwords.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Command(pub [u32; 16]);

impl Command {
    /// Bytes of one submission entry (CC.IOSQES = 6).
    pub const SIZE: usize = 64;

    /// Decodes a 64-byte entry.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        let mut dw = [0u32; 16];
        for (i, d) in dw.iter_mut().enumerate() {
            *d = u32::from_le_bytes([b[i * 4], b[i * 4 + 1], b[i * 4 + 2], b[i * 4 + 3]]);
        }
        Self(dw)
    }

    /// The entry's bytes.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        for (i, d) in self.0.iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&d.to_le_bytes());
        }
        b
    }

    /// Opcode (CDW0 bits 7:0).
    pub fn opcode(&self) -> u8 {
        self.0[0] as u8
    }

    /// Fused operation (CDW0 bits 9:8).
    pub fn fuse(&self) -> u32 {
        (self.0[0] >> 8) & 3
    }

    /// PRP or SGL for data transfer (CDW0 bits 15:14).
    pub fn psdt(&self) -> u32 {
        (self.0[0] >> 14) & 3
    }

    /// Command identifier (CDW0 bits 31:16).
    pub fn cid(&self) -> u16 {
        (self.0[0] >> 16) as u16
    }

    /// Namespace identifier.
    pub fn nsid(&self) -> u32 {
        self.0[1]
    }

    /// PRP entry 1.
    pub fn prp1(&self) -> u64 {
        u64::from(self.0[6]) | (u64::from(self.0[7]) << 32)
    }

    /// PRP entry 2.
    pub fn prp2(&self) -> u64 {
        u64::from(self.0[8]) | (u64::from(self.0[9]) << 32)
    }

    /// Command dword `n` (10..=15).
    pub fn cdw(&self, n: usize) -> u32 {
        self.0.get(n).copied().unwrap_or(0)
    }

    /// CDW10 and CDW11 as one 64-bit value (the starting LBA of I/O commands).
    pub fn cdw10_11(&self) -> u64 {
        u64::from(self.0[10]) | (u64::from(self.0[11]) << 32)
    }
}

/// The 15-bit Status Field of a completion entry: SC bits 7:0, SCT bits 10:8, DNR bit 14.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status(pub u16);

const DNR: u16 = 1 << 14;

const fn generic(sc: u8) -> Status {
    Status(sc as u16 | DNR)
}
const fn specific(sc: u8) -> Status {
    Status(0x100 | sc as u16 | DNR)
}
const fn media(sc: u8) -> Status {
    // Media errors may be transient: the host may retry.
    Status(0x200 | sc as u16)
}

impl Status {
    /// Successful Completion.
    pub const SUCCESS: Self = Self(0);
    /// Invalid Command Opcode.
    pub const INVALID_OPCODE: Self = generic(0x01);
    /// Invalid Field in Command.
    pub const INVALID_FIELD: Self = generic(0x02);
    /// Data Transfer Error.
    pub const DATA_TRANSFER_ERROR: Self = generic(0x04);
    /// Internal Error.
    pub const INTERNAL_ERROR: Self = generic(0x06);
    /// Invalid Namespace or Format.
    pub const INVALID_NAMESPACE: Self = generic(0x0b);
    /// Command Sequence Error.
    pub const COMMAND_SEQUENCE_ERROR: Self = generic(0x0c);
    /// PRP Offset Invalid.
    pub const PRP_OFFSET_INVALID: Self = generic(0x13);
    /// Namespace is Write Protected.
    pub const NAMESPACE_WRITE_PROTECTED: Self = generic(0x20);
    /// LBA Out of Range.
    pub const LBA_OUT_OF_RANGE: Self = generic(0x80);
    /// Completion Queue Invalid.
    pub const INVALID_CQ: Self = specific(0x00);
    /// Invalid Queue Identifier.
    pub const INVALID_QUEUE_ID: Self = specific(0x01);
    /// Invalid Queue Size.
    pub const INVALID_QUEUE_SIZE: Self = specific(0x02);
    /// Asynchronous Event Request Limit Exceeded.
    pub const AER_LIMIT_EXCEEDED: Self = specific(0x05);
    /// Invalid Interrupt Vector.
    pub const INVALID_INTERRUPT_VECTOR: Self = specific(0x08);
    /// Invalid Log Page.
    pub const INVALID_LOG_PAGE: Self = specific(0x09);
    /// Invalid Queue Deletion.
    pub const INVALID_QUEUE_DELETION: Self = specific(0x0c);
    /// Feature Identifier Not Saveable.
    pub const FEATURE_NOT_SAVEABLE: Self = specific(0x0d);
    /// Write Fault.
    pub const WRITE_FAULT: Self = media(0x80);
    /// Unrecovered Read Error.
    pub const UNRECOVERED_READ_ERROR: Self = media(0x81);

    /// Status Code Type.
    pub fn sct(self) -> u8 {
        ((self.0 >> 8) & 7) as u8
    }

    /// Status Code.
    pub fn sc(self) -> u8 {
        self.0 as u8
    }

    /// Do Not Retry.
    pub fn dnr(self) -> bool {
        self.0 & DNR != 0
    }

    /// Successful Completion.
    pub fn is_success(self) -> bool {
        self.0 & 0x7ff == 0
    }
}

/// What a command leaves for its completion entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Post a completion with this status and Dword 0.
    Done(Status, u32),
    /// No completion now (an Asynchronous Event Request, completed when an event occurs).
    Held,
}

impl From<Status> for Outcome {
    fn from(s: Status) -> Self {
        Self::Done(s, 0)
    }
}

impl From<Result<u32, Status>> for Outcome {
    fn from(r: Result<u32, Status>) -> Self {
        match r {
            Ok(dw0) => Self::Done(Status::SUCCESS, dw0),
            Err(s) => Self::Done(s, 0),
        }
    }
}

/// A submission queue: guest-physical base and the controller's view of head and tail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubQueue {
    /// Guest-physical address of entry 0 (physically contiguous, page aligned).
    pub base: u64,
    /// Entries (2..=65536).
    pub size: u32,
    /// Next entry the controller fetches.
    pub head: u32,
    /// Tail, as the host last wrote its doorbell.
    pub tail: u32,
    /// The completion queue it posts to.
    pub cqid: u16,
}

/// A completion queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompQueue {
    /// Guest-physical address of entry 0.
    pub base: u64,
    /// Entries (2..=65536).
    pub size: u32,
    /// Head, as the host last wrote its doorbell.
    pub head: u32,
    /// Next entry the controller posts to.
    pub tail: u32,
    /// Phase tag of the current pass.
    pub phase: bool,
    /// Interrupts enabled.
    pub ien: bool,
    /// MSI-X vector.
    pub iv: u16,
    /// Entries were posted since its interrupt was last sent.
    pub notify: bool,
}

impl CompQueue {
    /// No free entry: one slot always stays empty, so full is tail + 1 == head.
    pub fn is_full(&self) -> bool {
        (self.tail + 1) % self.size == self.head
    }

    /// Entries posted and not yet consumed by the host.
    pub fn used(&self) -> u32 {
        (self.tail + self.size - self.head) % self.size
    }
}

/// Bytes of one completion entry (CC.IOCQES = 4).
pub const CQE_SIZE: u64 = 16;

/// A completion entry's bytes.
pub fn completion_entry(
    dw0: u32,
    sq_head: u32,
    sqid: u16,
    cid: u16,
    phase: bool,
    status: Status,
) -> [u8; 16] {
    let mut e = [0u8; 16];
    e[0..4].copy_from_slice(&dw0.to_le_bytes());
    let dw2 = (sq_head & 0xffff) | (u32::from(sqid) << 16);
    e[8..12].copy_from_slice(&dw2.to_le_bytes());
    let dw3 = u32::from(cid) | (u32::from(phase) << 16) | (u32::from(status.0 & 0x7fff) << 17);
    e[12..16].copy_from_slice(&dw3.to_le_bytes());
    e
}
