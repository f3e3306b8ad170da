//! The image's bytes by part (EL2 core, drivers, management, VM definitions, Rust's `core`
//! and `alloc`), for the image budget row: what the 480 KiB is spent on, run after run.
//!
//! Attribution is by symbol: each defined function or data object of the ELF counts for the
//! crate its mangled name starts with (legacy `_ZN` and v0 `_R` manglings), so generic code
//! counts for the crate that defines it (`alloc`'s `Vec::push` for every type it is
//! instantiated with, `serde`'s visitors for the VM definitions). Bytes in no symbol
//! (string and table constants, relocations) are reported apart.

use object::{Object, ObjectSegment, ObjectSymbol, SymbolKind};

/// The parts the budget is discussed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Part {
    /// The hypervisor crate: exits, vGIC, scheduling, device models, boot, VM management.
    Core,
    /// The host drivers (the `plugin_*` crates).
    Drivers,
    /// The management plane: HTTP API and web client, TLS and its crypto, the TCP/IP stack,
    /// JSON, the FAT datastore.
    Management,
    /// VM definitions at run time: TOML and serde.
    VmDefinitions,
    /// Rust's own `core`, `alloc` and `compiler_builtins`.
    Rust,
    /// Any other crate (the board tables, `vm-fdt`, utility crates).
    Other,
}

impl Part {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Part::Core => "EL2 core",
            Part::Drivers => "drivers",
            Part::Management => "management",
            Part::VmDefinitions => "VM definitions",
            Part::Rust => "core/alloc",
            Part::Other => "other crates",
        }
    }
}

/// Crates of the management plane.
const MANAGEMENT: &[&str] = &[
    "mgmt",
    "smoltcp",
    "httparse",
    "serde_json",
    "embedded_sdmmc",
    "der",
    "spki",
    "pkcs8",
    "sec1",
    "const_oid",
    "base64ct",
    "p256",
    "primeorder",
    "elliptic_curve",
    "ecdsa",
    "rfc6979",
    "crypto_bigint",
    "untrusted",
    "argon2",
    "password_hash",
    "blake2",
    "x25519_dalek",
    "curve25519_dalek",
    "aes",
    "aes_gcm",
    "ghash",
    "polyval",
    "universal_hash",
    "chacha20",
    "chacha20poly1305",
    "poly1305",
    "sha2",
    "hmac",
    "hkdf",
    "digest",
    "signature",
    "subtle",
    "zeroize",
    "ring",
];

/// Crates of the VM definitions parsed at run time.
const VM_DEFINITIONS: &[&str] = &[
    "vm_config",
    "toml",
    "toml_parser",
    "toml_datetime",
    "toml_edit",
    "winnow",
    "serde",
    "serde_core",
    "serde_spanned",
];

/// The part crate `krate` (as it appears in symbols, `-` written `_`) belongs to.
pub(crate) fn part_of(krate: &str) -> Part {
    if krate == "hypervisor" {
        Part::Core
    } else if krate.starts_with("plugin_") {
        Part::Drivers
    } else if krate.starts_with("rustls")
        || krate.starts_with("webpki")
        || MANAGEMENT.contains(&krate)
    {
        Part::Management
    } else if VM_DEFINITIONS.contains(&krate) {
        Part::VmDefinitions
    } else if matches!(krate, "core" | "alloc" | "compiler_builtins") {
        Part::Rust
    } else {
        Part::Other
    }
}

/// The crate a mangled symbol name belongs to: the first path segment of a legacy
/// (`_ZN6rustls...`, or `_ZN<n>_$LT$hypervisor..` for an impl block) or v0 (`_R...C..6rustls`)
/// name. `None` for a name that is not Rust's.
pub(crate) fn crate_of(symbol: &str) -> Option<&str> {
    if let Some(rest) = symbol.strip_prefix("_ZN") {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let len: usize = rest[..digits].parse().ok()?;
        let first = rest.get(digits..digits + len)?;
        // `<T as Trait>` and `<T>` impl blocks: the crate of T's path, through `&`, `&mut`,
        // `*const`, `*mut` and `dyn`.
        let first = match first.strip_prefix("_$LT$") {
            Some(mut t) => {
                while let Some(r) = ["$RF$", "$BP$", "mut$u20$", "const$u20$", "dyn$u20$"]
                    .iter()
                    .find_map(|p| t.strip_prefix(p))
                {
                    t = r;
                }
                match t.split_once("..") {
                    // A bare type parameter (`<T as Trait>`): the trait's crate.
                    Some((head, _)) if head.contains('$') => t
                        .split_once("$u20$as$u20$")
                        .and_then(|(_, tr)| tr.split("..").next())
                        .unwrap_or(head),
                    Some((head, _)) => head,
                    None => t,
                }
            }
            None => first,
        };
        let end = first
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(first.len());
        return Some(&first[..end]).filter(|c| !c.is_empty());
    }
    let rest = symbol.strip_prefix("_R")?;
    // The first crate root: `C`, an optional disambiguator `s<base62>_`, then `<len><name>`.
    let bytes = rest.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'C' {
            let mut j = i + 1;
            if bytes.get(j) == Some(&b's') {
                while j < bytes.len() && bytes[j] != b'_' {
                    j += 1;
                }
                j += 1;
            }
            let digits = rest[j.min(rest.len())..]
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
            if digits > 0 {
                let len: usize = rest[j..j + digits].parse().ok()?;
                return rest.get(j + digits..j + digits + len);
            }
        }
        i += 1;
    }
    None
}

/// Bytes of the ELF's loadable file contents by part, largest first, and the bytes no
/// symbol covers. `None` if `data` is not an ELF with loadable segments.
pub(crate) fn image_parts(data: &[u8]) -> Option<(Vec<(Part, u64)>, u64)> {
    let file = object::File::parse(data).ok()?;
    // Only what a loader copies: the file-backed part of each loadable segment.
    let loaded: Vec<(u64, u64)> = file
        .segments()
        .map(|s| (s.address(), s.file_range().1))
        .filter(|s| s.1 > 0)
        .collect();
    let total: u64 = loaded.iter().map(|s| s.1).sum();
    if total == 0 {
        return None;
    }
    let in_file = |addr: u64, size: u64| {
        loaded
            .iter()
            .any(|&(base, len)| addr >= base && addr + size <= base + len)
    };
    let mut by_part: Vec<(Part, u64)> = Vec::new();
    let mut attributed = 0;
    // Identical code folding leaves one function under several names: count it once.
    let mut seen = std::collections::HashSet::new();
    for sym in file.symbols() {
        let size = sym.size();
        if size == 0
            || !sym.is_definition()
            || !matches!(sym.kind(), SymbolKind::Text | SymbolKind::Data)
            || !in_file(sym.address(), size)
            || !seen.insert(sym.address())
        {
            continue;
        }
        let part = sym
            .name()
            .ok()
            .and_then(crate_of)
            .map_or(Part::Other, part_of);
        attributed += size;
        match by_part.iter_mut().find(|(p, _)| *p == part) {
            Some((_, n)) => *n += size,
            None => by_part.push((part, size)),
        }
    }
    by_part.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Some((by_part, total.saturating_sub(attributed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crates_come_from_legacy_and_v0_names() {
        assert_eq!(
            crate_of("_ZN10hypervisor7runtime3vms7run_cpu17h2702845c1e55f83dE"),
            Some("hypervisor")
        );
        assert_eq!(
            crate_of("_ZN48_$LT$rustls..conn..ConnectionCommon$LT$T$GT$$GT$4read17hE"),
            Some("rustls")
        );
        assert_eq!(
            crate_of("_ZN61_$LT$$RF$mut$u20$serde_json..ser..Serializer$LT$W$C$F$GT$$GT$3end17hE"),
            Some("serde_json")
        );
        assert_eq!(
            crate_of("_ZN50_$LT$T$u20$as$u20$core..convert..Into$LT$U$GT$$GT$4into17hE"),
            Some("core")
        );
        assert_eq!(
            crate_of("_ZN5alloc3vec16Vec$LT$T$C$A$GT$4push17h0123456789abcdefE"),
            Some("alloc")
        );
        assert_eq!(crate_of("_RNvCs1234_7smoltcp5iface4poll"), Some("smoltcp"));
        assert_eq!(crate_of("memcpy"), None);
        assert_eq!(crate_of("_ZN"), None);
        assert_eq!(crate_of("_ZN99short"), None);
    }

    #[test]
    fn crates_fall_into_their_parts() {
        assert_eq!(part_of("hypervisor"), Part::Core);
        assert_eq!(part_of("plugin_xhci"), Part::Drivers);
        assert_eq!(part_of("rustls_rustcrypto"), Part::Management);
        assert_eq!(part_of("smoltcp"), Part::Management);
        assert_eq!(part_of("toml_parser"), Part::VmDefinitions);
        assert_eq!(part_of("serde_core"), Part::VmDefinitions);
        assert_eq!(part_of("alloc"), Part::Rust);
        assert_eq!(part_of("vm_fdt"), Part::Other);
    }
}
