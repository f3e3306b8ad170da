//! The 64-byte arm64 Image header (Linux `Documentation/arch/arm64/booting.rst`) at the
//! start of the hypervisor Image: where the loader may put it and how much room it needs.

use core::fmt;

/// Length of the header.
pub const HEADER_LEN: usize = 64;
/// `"ARM\x64"` at offset 56.
pub const MAGIC: [u8; 4] = *b"ARM\x64";
/// The 2 MiB alignment of the base the Image is placed at (`text_offset` above it).
pub const ALIGN: u64 = 2 << 20;

/// Flag bit 0: the kernel is big-endian.
const FLAG_BE: u64 = 1 << 0;
/// Flag bit 3: the 2 MiB-aligned base may be anywhere in physical memory.
const FLAG_ANYWHERE: u64 = 1 << 3;

/// What the header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    /// Offset of the Image above a 2 MiB-aligned base.
    pub text_offset: u64,
    /// Bytes from the Image's start that it owns once running (image, .bss, stacks, heap).
    pub image_size: u64,
    /// The flags word.
    pub flags: u64,
}

impl ImageHeader {
    /// Page size the Image was built for (booting.rst flags bits 1-2), in KiB; `None` when
    /// unspecified.
    pub fn page_kib(&self) -> Option<u64> {
        match (self.flags >> 1) & 3 {
            1 => Some(4),
            2 => Some(16),
            3 => Some(64),
            _ => None,
        }
    }
}

/// Why an embedded image cannot be loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Shorter than the header (0: the loader was built without an image).
    TooShort(usize),
    /// No `ARM\x64` magic at offset 56.
    BadMagic([u8; 4]),
    /// Flags bit 0 set.
    BigEndian,
    /// Flags bit 3 clear: the Image wants to sit near the base of DRAM.
    FixedPlacement,
    /// `image_size` smaller than the file.
    ImageSizeTooSmall {
        /// The header's `image_size`.
        image_size: u64,
        /// The file's length.
        file_len: u64,
    },
    /// `text_offset` not below 2 MiB or not 4 KiB-aligned.
    BadTextOffset(u64),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort(0) => write!(
                f,
                "this loader was built without a hypervisor image; build it with \
                 `cargo xtask build --board NAME --uefi`"
            ),
            Self::TooShort(n) => write!(
                f,
                "the embedded hypervisor image is {n} bytes, shorter than an arm64 Image header ({HEADER_LEN})"
            ),
            Self::BadMagic(m) => write!(
                f,
                "the embedded hypervisor image has no arm64 Image header (magic {m:02x?} at offset 56, want \"ARM\\x64\")"
            ),
            Self::BigEndian => write!(f, "the embedded hypervisor image is big-endian (flags bit 0)"),
            Self::FixedPlacement => write!(
                f,
                "the embedded hypervisor image does not say it may be placed anywhere in memory (flags bit 3 clear)"
            ),
            Self::ImageSizeTooSmall { image_size, file_len } => write!(
                f,
                "the embedded hypervisor image's header gives image_size {image_size:#x}, less than its {file_len:#x} bytes"
            ),
            Self::BadTextOffset(o) => write!(
                f,
                "the embedded hypervisor image's text_offset {o:#x} is not a 4 KiB multiple below 2 MiB"
            ),
        }
    }
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Reads and checks the header of `image`.
pub fn parse(image: &[u8]) -> Result<ImageHeader, HeaderError> {
    if image.len() < HEADER_LEN {
        return Err(HeaderError::TooShort(image.len()));
    }
    let mut magic = [0u8; 4];
    magic.copy_from_slice(&image[56..60]);
    if magic != MAGIC {
        return Err(HeaderError::BadMagic(magic));
    }
    let h = ImageHeader {
        text_offset: le64(image, 8),
        image_size: le64(image, 16),
        flags: le64(image, 24),
    };
    if h.flags & FLAG_BE != 0 {
        return Err(HeaderError::BigEndian);
    }
    if h.flags & FLAG_ANYWHERE == 0 {
        return Err(HeaderError::FixedPlacement);
    }
    if h.text_offset >= ALIGN || !h.text_offset.is_multiple_of(4096) {
        return Err(HeaderError::BadTextOffset(h.text_offset));
    }
    if h.image_size < image.len() as u64 {
        return Err(HeaderError::ImageSizeTooSmall {
            image_size: h.image_size,
            file_len: image.len() as u64,
        });
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(text_offset: u64, image_size: u64, flags: u64, len: usize) -> alloc::vec::Vec<u8> {
        let mut v = alloc::vec![0u8; len];
        v[8..16].copy_from_slice(&text_offset.to_le_bytes());
        v[16..24].copy_from_slice(&image_size.to_le_bytes());
        v[24..32].copy_from_slice(&flags.to_le_bytes());
        v[56..60].copy_from_slice(&MAGIC);
        v
    }

    #[test]
    fn a_relocatable_image_header_is_read() {
        let h = parse(&image(0, 0x200_0000, 0b1010, 4096)).unwrap();
        assert_eq!(h.image_size, 0x200_0000);
        assert_eq!(h.text_offset, 0);
        assert_eq!(h.page_kib(), Some(4));
    }

    #[test]
    fn bad_headers_are_refused_with_the_reason() {
        assert_eq!(parse(&[]), Err(HeaderError::TooShort(0)));
        assert!(alloc::format!("{}", HeaderError::TooShort(0)).contains("--uefi"));
        let mut v = image(0, 0x1000, 0b1010, 4096);
        v[59] = 0;
        assert!(matches!(parse(&v), Err(HeaderError::BadMagic(_))));
        assert_eq!(
            parse(&image(0, 0x1_0000, 0b1011, 4096)),
            Err(HeaderError::BigEndian)
        );
        assert_eq!(
            parse(&image(0, 0x1_0000, 0b0010, 4096)),
            Err(HeaderError::FixedPlacement)
        );
        assert_eq!(
            parse(&image(0, 0x800, 0b1010, 4096)),
            Err(HeaderError::ImageSizeTooSmall {
                image_size: 0x800,
                file_len: 4096
            })
        );
        assert_eq!(
            parse(&image(0x8_0001, 0x10_0000, 0b1010, 4096)),
            Err(HeaderError::BadTextOffset(0x8_0001))
        );
    }
}
