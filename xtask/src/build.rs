//! Building: the Rust targets, the bundled test guest, and hypervisor images for a board.

use crate::Target;
use platform_dsl::model::Board;
use platform_dsl::vmconfig::{Plan, VmConfig};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Target triple of hypervisor images: soft-float, so the hypervisor never touches the
/// FP/SIMD registers that belong to the guest.
pub const IMAGE_TRIPLE: &str = "aarch64-unknown-none-softfloat";
/// Target triple of bare-metal guests.
pub const GUEST_TRIPLE: &str = "aarch64-unknown-none";
/// Target triple of static Linux programs that run inside Linux guests (`examples/iobench`).
pub const LINUX_GUEST_TRIPLE: &str = "aarch64-unknown-linux-musl";

/// A built image and what it was built from.
pub struct Image {
    /// The ELF file (QEMU `-kernel` loads it at its entry point at EL2).
    pub elf: PathBuf,
    /// The flat arm64 Image (header at offset 0, position independent) next to it, for
    /// loaders that place it themselves (QEMU `-kernel` of an Image, U-Boot `booti`, the
    /// UEFI loader).
    pub bin: PathBuf,
    /// The board.
    pub board: Board,
    /// Where the guest images go.
    pub plan: Plan,
}

/// The workspace root (parent of `xtask/`).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(Path::to_path_buf).unwrap_or(here)
}

/// The cargo target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// `--quiet` for a cargo build unless standard error is a terminal: someone watching sees
/// cargo's own progress (`Compiling ...` and the progress bar) during a minutes-long build,
/// and logs (CI, scenario runs) stay short.
pub fn quiet() -> Option<&'static str> {
    use std::io::IsTerminal;
    (!std::io::stderr().is_terminal()).then_some("--quiet")
}

pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(workspace_root());
    c
}

/// Runs a command, turning a failure into an error naming it.
pub fn run(cmd: &mut Command) -> Result<(), String> {
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("command failed ({status}): {cmd:?}"))
    }
}

/// Installs the Rust targets if rustup lacks them.
pub fn ensure_rust_targets() -> Result<(), String> {
    ensure_rust_targets_of(&[IMAGE_TRIPLE, GUEST_TRIPLE, crate::uefi::UEFI_TRIPLE])
}

/// Installs each of `triples` that rustup lacks.
fn ensure_rust_targets_of(triples: &[&str]) -> Result<(), String> {
    for &triple in triples {
        let out = Command::new("rustc")
            .current_dir(workspace_root())
            .args(["--print", "target-libdir", "--target", triple])
            .output()
            .map_err(|e| format!("cannot run rustc: {e}"))?;
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if !out.status.success() || !dir.exists() {
            eprintln!("xtask: installing Rust target {triple}");
            run(Command::new("rustup")
                .current_dir(workspace_root())
                .args(["target", "add", triple]))?;
        }
    }
    Ok(())
}

/// Builds the bundled bare-metal test guest to `target/guests/test-guest.bin`.
pub fn test_guest() -> Result<PathBuf, String> {
    bare_metal_bin("test-guest")
}

/// Builds the EL3 firmware stub of scenario `spin-table` (`examples/spin-stub`, linked at
/// 0x0) to `target/guests/spin-stub.bin`, QEMU's `-bios`.
pub fn spin_stub() -> Result<PathBuf, String> {
    bare_metal_bin("spin-stub")
}

/// Builds workspace package `package` (a bare-metal program for [`GUEST_TRIPLE`]) in
/// release and writes its flat binary to `target/guests/PACKAGE.bin`.
fn bare_metal_bin(package: &str) -> Result<PathBuf, String> {
    ensure_rust_targets()?;
    run(cargo()
        .args([
            "build",
            "--release",
            "-p",
            package,
            "--target",
            GUEST_TRIPLE,
        ])
        .args(quiet()))?;
    let elf = target_dir()
        .join(GUEST_TRIPLE)
        .join("release")
        .join(package);
    let out_dir = workspace_root().join("target/guests");
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    let bin = out_dir.join(format!("{package}.bin"));
    elf_to_bin(&elf, &bin)?;
    Ok(bin)
}

/// Builds `examples/iobench` (its own workspace, a static `aarch64-unknown-linux-musl`
/// program linked with rust-lld, see its `.cargo/config.toml`) into
/// `target/iobench/aarch64-unknown-linux-musl/release/iobench` and returns that path.
pub fn iobench() -> Result<PathBuf, String> {
    linux_guest_program("iobench")
}

/// Builds `examples/netbench` (the network guests' TCP throughput and raw-frame tool, built
/// like [`iobench`]) and returns the program's path.
pub fn netbench() -> Result<PathBuf, String> {
    linux_guest_program("netbench")
}

/// Builds the static Linux guest program `examples/NAME` (its own workspace) into
/// `target/NAME/aarch64-unknown-linux-musl/release/NAME`.
fn linux_guest_program(name: &str) -> Result<PathBuf, String> {
    ensure_rust_targets_of(&[LINUX_GUEST_TRIPLE])?;
    let dir = workspace_root().join("examples").join(name);
    let target_dir = target_dir().join(name);
    run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(&dir)
            .args(["build", "--release"])
            .args(quiet())
            .env("CARGO_TARGET_DIR", &target_dir),
    )?;
    let exe = target_dir
        .join(LINUX_GUEST_TRIPLE)
        .join("release")
        .join(name);
    if exe.is_file() {
        Ok(exe)
    } else {
        Err(format!(
            "building examples/{name} produced no {}",
            exe.display()
        ))
    }
}

/// Converts an ELF to a raw binary image starting at its lowest loaded address
/// (what `objcopy -O binary` does), keeping the file's zero-filled tail out.
pub fn elf_to_bin(elf: &Path, bin: &Path) -> Result<(), String> {
    let data = std::fs::read(elf).map_err(|e| format!("cannot read {}: {e}", elf.display()))?;
    let (_, out) = flatten(&data).map_err(|e| format!("{}: {e}", elf.display()))?;
    std::fs::write(bin, out).map_err(|e| format!("cannot write {}: {e}", bin.display()))
}

/// The loadable segments of the ELF `data` laid out flat from the lowest one's address:
/// returns that address and the bytes (`.bss`, which has no file bytes, is left out).
pub fn flatten(data: &[u8]) -> Result<(u64, Vec<u8>), String> {
    use object::{Object, ObjectSegment};
    let file = object::File::parse(data).map_err(|e| format!("not an ELF file: {e}"))?;
    let segs: Vec<_> = file
        .segments()
        .filter_map(|s| {
            let (off, size) = s.file_range();
            (size > 0).then_some((s.address(), off, size))
        })
        .collect();
    let base = segs
        .iter()
        .map(|s| s.0)
        .min()
        .ok_or("no loadable segment")?;
    let end = segs.iter().map(|s| s.0 + s.2).max().unwrap_or(base);
    let mut out = vec![0u8; usize::try_from(end - base).map_err(|e| e.to_string())?];
    for (addr, off, size) in segs {
        let dst = (addr - base) as usize;
        let src = data
            .get(off as usize..(off + size) as usize)
            .ok_or("a segment lies outside the file")?;
        out[dst..dst + size as usize].copy_from_slice(src);
    }
    Ok((base, out))
}

/// `R_AARCH64_RELATIVE`, the one relocation type the image's boot code applies.
const R_AARCH64_RELATIVE: u32 = 1027;

/// What [`check_image`] read from an Image's header.
#[derive(Debug, PartialEq, Eq)]
pub struct ImageHeader {
    /// `text_offset`.
    pub text_offset: u64,
    /// `image_size`: bytes from the image's start to the end of its region.
    pub image_size: u64,
    /// `flags`.
    pub flags: u64,
}

/// Reads and checks the 64-byte arm64 Image header at the start of `bin`
/// (Documentation/arch/arm64/booting.rst): code0 a branch, magic `ARM\x64`, little-endian
/// with 4 KiB pages, placeable anywhere, and an `image_size` that covers the file.
pub fn check_image_header(bin: &[u8]) -> Result<ImageHeader, String> {
    let header = bin
        .get(..platform_dsl::image::IMAGE_HEADER_SIZE)
        .ok_or("shorter than the 64-byte Image header")?;
    let u32_at = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().unwrap_or([0; 4]));
    let u64_at = |i: usize| u64::from_le_bytes(header[i..i + 8].try_into().unwrap_or([0; 8]));
    if &header[56..60] != b"ARM\x64" {
        return Err(format!(
            "no arm64 Image magic at offset 56: {:02x?}",
            &header[56..60]
        ));
    }
    let code0 = u32_at(0);
    if code0 & 0xfc00_0000 != 0x1400_0000 {
        return Err(format!("code0 {code0:#010x} is not a branch (B imm26)"));
    }
    let h = ImageHeader {
        text_offset: u64_at(8),
        image_size: u64_at(16),
        flags: u64_at(24),
    };
    if h.flags != 0b1010 {
        return Err(format!(
            "flags {:#x}: want little-endian, 4 KiB pages, placeable anywhere (0xa)",
            h.flags
        ));
    }
    if h.image_size < bin.len() as u64 {
        return Err(format!(
            "image_size {:#x} is smaller than the file ({:#x} bytes)",
            h.image_size,
            bin.len()
        ));
    }
    Ok(h)
}

/// `SHT_RELR`: relative relocations packed by `-z pack-relative-relocs` (`.relr.dyn`).
const SHT_RELR: u32 = 19;

/// The link-time addresses of the words a RELR table relocates, decoded as the boot code
/// (`hypervisor::arch::boot`) decodes it: an even entry is the address of one word, and
/// the place moves to the word after it; an odd entry is a bitmap whose bit i (1..=63)
/// stands for the (i-1)th word from the place, which then moves on 63 words. A bitmap
/// before any address has no place to start from: an error.
pub fn relr_addresses(entries: &[u64]) -> Result<Vec<u64>, String> {
    let mut out = Vec::new();
    let mut place: Option<u64> = None;
    for (i, &e) in entries.iter().enumerate() {
        if e & 1 == 0 {
            out.push(e);
            place = Some(e.wrapping_add(8));
        } else {
            let from = place.ok_or(format!("RELR entry {i} is a bitmap before any address"))?;
            out.extend(
                (1..64u64)
                    .filter(|bit| e >> bit & 1 == 1)
                    .map(|bit| from.wrapping_add((bit - 1) * 8)),
            );
            place = Some(from.wrapping_add(63 * 8));
        }
    }
    Ok(out)
}

/// Checks that every dynamic relocation of the ELF `data` is one the boot code applies
/// (`R_AARCH64_RELATIVE` in `.rela.dyn`, or packed in `.relr.dyn` at an aligned word;
/// inside the image): a build that produced another would hang at entry, or write outside
/// the image. Returns how many there are.
pub fn check_relocations(data: &[u8]) -> Result<usize, String> {
    use object::read::elf::{ElfFile64, FileHeader, Rela, SectionHeader};
    let file = ElfFile64::<object::Endianness>::parse(data).map_err(|e| e.to_string())?;
    let endian = file.endian();
    let sections = file
        .elf_header()
        .sections(endian, data)
        .map_err(|e| e.to_string())?;
    let (base, flat) = flatten(data)?;
    let end = base + flat.len() as u64;
    let mut count = 0;
    for section in sections.iter() {
        if section.sh_type(endian) == SHT_RELR {
            let bytes = section.data(endian, data).map_err(|e| e.to_string())?;
            if bytes.len() % 8 != 0 {
                return Err(format!(
                    "a RELR table of {} bytes (not whole words)",
                    bytes.len()
                ));
            }
            let entries: Vec<u64> = bytes
                .chunks_exact(8)
                .map(|w| u64::from_le_bytes(w.try_into().unwrap_or([0; 8])))
                .collect();
            for at in relr_addresses(&entries)? {
                if at % 8 != 0 {
                    return Err(format!(
                        "packed relocation at {at:#x} is not an aligned word"
                    ));
                }
                if at < base || at.saturating_add(8) > end {
                    return Err(format!(
                        "relocation at {at:#x} is outside the image {base:#x}..{end:#x}"
                    ));
                }
                count += 1;
            }
            continue;
        }
        let Some((relas, _)) = section.rela(endian, data).map_err(|e| e.to_string())? else {
            continue;
        };
        for r in relas {
            let ty = r.r_type(endian, false);
            let at = r.r_offset(endian);
            if ty != R_AARCH64_RELATIVE {
                return Err(format!(
                    "dynamic relocation of type {ty} at {at:#x}: the boot code applies only \
                     R_AARCH64_RELATIVE ({R_AARCH64_RELATIVE})"
                ));
            }
            if at < base || at + 8 > end {
                return Err(format!(
                    "relocation at {at:#x} is outside the image {base:#x}..{end:#x}"
                ));
            }
            count += 1;
        }
    }
    Ok(count)
}

/// Writes the flat Image of the ELF `elf` to `bin` after checking it: the header at the
/// image's first byte, which is also the ELF's entry point, and only relocations the boot
/// code applies.
pub fn write_image_bin(elf: &Path, bin: &Path) -> Result<ImageHeader, String> {
    use object::Object;
    let data = std::fs::read(elf).map_err(|e| format!("cannot read {}: {e}", elf.display()))?;
    let what = |e: String| format!("{}: {e}", elf.display());
    let (base, out) = flatten(&data).map_err(what)?;
    let entry = object::File::parse(&*data)
        .map_err(|e| what(e.to_string()))?
        .entry();
    if entry != base {
        return Err(what(format!(
            "the entry point {entry:#x} is not the image's first byte {base:#x}"
        )));
    }
    let header = check_image_header(&out).map_err(what)?;
    check_relocations(&data).map_err(what)?;
    std::fs::write(bin, out).map_err(|e| format!("cannot write {}: {e}", bin.display()))?;
    Ok(header)
}

/// Builds the hypervisor image for `t` (and the test guest, which the default VM uses).
pub fn image(t: &Target) -> Result<Image, String> {
    image_with_features(t, &[])
}

/// [`image`] with extra cargo features of the `image` crate (a scenario's self-test).
pub fn image_with_features(t: &Target, features: &[&str]) -> Result<Image, String> {
    test_guest()?;
    // Debian guest images are fetched on first use (a VM file naming target/guest-cache).
    let vms_text = std::fs::read_to_string(&t.vms).unwrap_or_default();
    if vms_text.contains("guest-cache") {
        crate::guest::ensure()?;
    }
    let board =
        platform_dsl::image::load_board(&t.board_file, &t.board).map_err(|e| e.to_string())?;
    let config = VmConfig::load(&t.vms).map_err(|e| e.to_string())?;
    let plan = platform_dsl::vmconfig::plan(&board, &config).map_err(|e| e.to_string())?;
    run(cargo()
        .args([
            "build",
            "--release",
            "-p",
            "image",
            "--target",
            IMAGE_TRIPLE,
            "--features",
            &features.join(","),
        ])
        .args(quiet())
        .env("HV_BOARD", &t.board)
        .env("HV_BOARD_FILE", &t.board_file)
        .env("HV_VMS", &t.vms)
        .env(
            "HV_ALLOW_EXPERIMENTAL",
            if t.allow_experimental { "1" } else { "0" },
        ))?;
    let built = target_dir().join(IMAGE_TRIPLE).join("release/image");
    let out_dir = workspace_root().join("target/images");
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    let elf = out_dir.join(format!("{}.elf", t.board));
    std::fs::copy(&built, &elf).map_err(|e| format!("cannot copy {}: {e}", built.display()))?;
    let bin = out_dir.join(format!("hypervisor-{}.bin", t.board));
    write_image_bin(&elf, &bin)?;
    Ok(Image {
        elf,
        bin,
        board,
        plan,
    })
}

/// The machine's own target triple (`rustc -vV`'s `host:`).
fn host_triple() -> Result<String, String> {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .map_err(|e| format!("cannot run rustc -vV: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .ok_or("rustc -vV printed no `host:` line".into())
}

/// `cargo run --release` in the out-of-tree example: its Cargo runner boots the image built
/// by [`out_of_tree_image`] under QEMU.
pub fn out_of_tree_run() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(workspace_root().join("examples/out-of-tree"))
        .args(["run", "--quiet", "--release", "--"])
        .env("CARGO_TARGET_DIR", target_dir());
    c
}

/// Builds the out-of-tree example (`examples/out-of-tree`, its own workspace) the way its
/// README says, with one `cargo build`, and describes the result for QEMU. `t` names the
/// example's board file, board and VM file.
pub fn out_of_tree_image(t: &Target) -> Result<Image, String> {
    test_guest()?;
    let dir = workspace_root().join("examples/out-of-tree");
    // The workspace's own target directory: the dependencies the in-tree images already
    // built are reused (a separate one rebuilt all of them, two minutes of `cargo xtask
    // test`). The build is still the example's own `cargo build` in its own workspace.
    let target_dir = target_dir();
    run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(&dir)
            .args(["build", "--release"])
            .args(quiet())
            .env("CARGO_TARGET_DIR", &target_dir),
    )?;
    // Its Cargo runner's tool, built as `run-qemu` builds it, so that `cargo run` then only
    // boots (the scenario's time limit is for the boot).
    let host = host_triple()?;
    run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(&dir)
            .args(["build", "--release", "--manifest-path"])
            .arg(workspace_root().join("platform-dsl/Cargo.toml"))
            .args(["--target", &host, "--bin", "hv-run"])
            .args(quiet())
            .env("CARGO_TARGET_DIR", &target_dir),
    )?;
    let board =
        platform_dsl::image::load_board(&t.board_file, &t.board).map_err(|e| e.to_string())?;
    let config = VmConfig::load(&t.vms).map_err(|e| e.to_string())?;
    let plan = platform_dsl::vmconfig::plan(&board, &config).map_err(|e| e.to_string())?;
    let elf = target_dir.join(IMAGE_TRIPLE).join("release/acme-image");
    if !elf.exists() {
        return Err(format!(
            "the out-of-tree build produced no {}",
            elf.display()
        ));
    }
    let bin = elf.with_file_name("hypervisor-acme-board.bin");
    write_image_bin(&elf, &bin)?;
    Ok(Image {
        elf,
        bin,
        board,
        plan,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The out-of-tree example builds into the workspace's target directory
    /// ([`out_of_tree_image`]) so that it reuses the crates.io dependencies the in-tree
    /// images compiled (the path crates are compiled again: cargo hashes a path package
    /// relative to its workspace's root). That holds only while its release profile and the
    /// versions its lock file picks are the workspace's own: at `opt-level = "s"`, with one
    /// crate a patch version apart, it rebuilt everything (97 s of `cargo xtask test`).
    #[test]
    fn out_of_tree_example_builds_with_the_workspace_profile_and_versions() {
        let read = |p: &str| -> toml::Table {
            let path = workspace_root().join(p);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            text.parse()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        };
        let release = |t: &toml::Table| t["profile"]["release"].clone();
        let ours = read("Cargo.toml");
        let theirs = read("examples/out-of-tree/Cargo.toml");
        assert_eq!(
            release(&theirs),
            release(&ours),
            "examples/out-of-tree/Cargo.toml's [profile.release] differs from the workspace's"
        );
        let versions = |p: &str| -> Vec<(String, String)> {
            read(p)["package"]
                .as_array()
                .expect("a lock file's `package` is an array")
                .iter()
                .map(|pkg| {
                    (
                        pkg["name"].as_str().unwrap_or_default().to_owned(),
                        pkg["version"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        };
        let ours = versions("Cargo.lock");
        let drifted: Vec<String> = versions("examples/out-of-tree/Cargo.lock")
            .into_iter()
            .filter(|(name, version)| {
                ours.iter().any(|(n, _)| n == name)
                    && !ours.iter().any(|p| p == &(name.clone(), version.clone()))
            })
            .map(|(name, version)| format!("{name} {version}"))
            .collect();
        assert!(
            drifted.is_empty(),
            "examples/out-of-tree/Cargo.lock picks versions the workspace does not: {drifted:?} \
             (`cargo update -p NAME --precise VERSION` in examples/out-of-tree)"
        );
    }

    /// A minimal little-endian ELF64 for AArch64: `segs` are (address, file bytes, memory
    /// size) PT_LOADs, `relas` (offset, type, addend) go into a `.rela.dyn` section.
    fn elf(entry: u64, segs: &[(u64, Vec<u8>, u64)], relas: &[(u64, u32, u64)]) -> Vec<u8> {
        elf_with_relr(entry, segs, relas, &[])
    }

    /// [`elf`] with a `.relr.dyn` section holding the RELR entries `relr`.
    fn elf_with_relr(
        entry: u64,
        segs: &[(u64, Vec<u8>, u64)],
        relas: &[(u64, u32, u64)],
        relr: &[u64],
    ) -> Vec<u8> {
        let phnum = segs.len();
        let mut body: Vec<u8> = Vec::new();
        let data_start = 64 + 56 * phnum;
        let mut seg_offsets = Vec::new();
        for (_, bytes, _) in segs {
            seg_offsets.push(data_start + body.len());
            body.extend_from_slice(bytes);
            while !body.len().is_multiple_of(8) {
                body.push(0);
            }
        }
        let rela_off = data_start + body.len();
        for &(off, ty, addend) in relas {
            body.extend_from_slice(&off.to_le_bytes());
            body.extend_from_slice(&(ty as u64).to_le_bytes());
            body.extend_from_slice(&addend.to_le_bytes());
        }
        let relr_off = data_start + body.len();
        for e in relr {
            body.extend_from_slice(&e.to_le_bytes());
        }
        let shstr_off = data_start + body.len();
        let shstr = b"\0.rela.dyn\0.shstrtab\0.relr.dyn\0";
        body.extend_from_slice(shstr);
        while !body.len().is_multiple_of(8) {
            body.push(0);
        }
        let shoff = data_start + body.len();
        let mut f = Vec::new();
        f.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&3u16.to_le_bytes()); // ET_DYN
        f.extend_from_slice(&183u16.to_le_bytes()); // EM_AARCH64
        f.extend_from_slice(&1u32.to_le_bytes());
        f.extend_from_slice(&entry.to_le_bytes());
        f.extend_from_slice(&64u64.to_le_bytes());
        f.extend_from_slice(&(shoff as u64).to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes());
        for v in [64u16, 56, phnum as u16, 64, 4, 2] {
            f.extend_from_slice(&v.to_le_bytes());
        }
        for ((addr, bytes, memsz), off) in segs.iter().zip(&seg_offsets) {
            f.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
            f.extend_from_slice(&5u32.to_le_bytes());
            for v in [*off as u64, *addr, *addr, bytes.len() as u64, *memsz, 8] {
                f.extend_from_slice(&v.to_le_bytes());
            }
        }
        f.extend_from_slice(&body);
        let shdr = |f: &mut Vec<u8>, name: u32, ty: u32, off: usize, size: usize, entsize: u64| {
            f.extend_from_slice(&name.to_le_bytes());
            f.extend_from_slice(&ty.to_le_bytes());
            for v in [0u64, 0, off as u64, size as u64] {
                f.extend_from_slice(&v.to_le_bytes());
            }
            f.extend_from_slice(&0u32.to_le_bytes());
            f.extend_from_slice(&0u32.to_le_bytes());
            f.extend_from_slice(&8u64.to_le_bytes());
            f.extend_from_slice(&entsize.to_le_bytes());
        };
        shdr(&mut f, 0, 0, 0, 0, 0);
        shdr(&mut f, 1, 4, rela_off, relas.len() * 24, 24); // SHT_RELA
        shdr(&mut f, 11, 3, shstr_off, shstr.len(), 0); // SHT_STRTAB
        shdr(&mut f, 21, SHT_RELR, relr_off, relr.len() * 8, 8);
        f
    }

    /// A valid Image header for `len` bytes.
    fn header(image_size: u64) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[0..4].copy_from_slice(&0x1400_0010u32.to_le_bytes()); // b +0x40
        h[16..24].copy_from_slice(&image_size.to_le_bytes());
        h[24..32].copy_from_slice(&0xau64.to_le_bytes());
        h[56..60].copy_from_slice(b"ARM\x64");
        h
    }

    #[test]
    fn flattening_lays_segments_out_from_the_lowest_and_drops_bss() {
        let base = 0x4020_0000;
        let data = elf(
            base,
            &[
                (base, vec![1; 0x10], 0x10),
                (base + 0x1000, vec![2; 8], 8),
                (base + 0x2000, vec![], 0x5000), // .bss: no file bytes
            ],
            &[],
        );
        let (at, flat) = flatten(&data).unwrap();
        assert_eq!(at, base);
        assert_eq!(flat.len(), 0x1008);
        assert_eq!(&flat[..0x10], &[1; 0x10]);
        assert!(flat[0x10..0x1000].iter().all(|&b| b == 0));
        assert_eq!(&flat[0x1000..], &[2; 8]);
        assert!(flatten(b"not an elf").is_err());
    }

    #[test]
    fn image_header_is_checked() {
        let mut bin = header(0x200_0000);
        bin.resize(0x1000, 0);
        let h = check_image_header(&bin).unwrap();
        assert_eq!(
            h,
            ImageHeader {
                text_offset: 0,
                image_size: 0x200_0000,
                flags: 0xa
            }
        );
        let bad = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = bin.clone();
            f(&mut b);
            check_image_header(&b).unwrap_err()
        };
        assert!(bad(&|b| b[56] = b'X').contains("magic"));
        assert!(bad(&|b| b[3] = 0xd5).contains("not a branch"));
        assert!(bad(&|b| b[24] = 0x2).contains("placeable anywhere"));
        assert!(bad(&|b| b[16..24].copy_from_slice(&0x800u64.to_le_bytes()))
            .contains("smaller than the file"));
        assert!(check_image_header(&bin[..40]).is_err());
    }

    #[test]
    fn only_relative_relocations_inside_the_image_pass() {
        let base = 0x4020_0000;
        let seg = |relas: &[(u64, u32, u64)]| elf(base, &[(base, header(0x10_0000), 64)], relas);
        assert_eq!(
            check_relocations(&seg(&[(base + 8, 1027, base + 0x20)])),
            Ok(1)
        );
        let e = check_relocations(&seg(&[(base + 8, 257, 0)])).unwrap_err();
        assert!(e.contains("type 257"), "{e}");
        let e = check_relocations(&seg(&[(base + 0x1000, 1027, 0)])).unwrap_err();
        assert!(e.contains("outside the image"), "{e}");
    }

    #[test]
    fn relr_tables_decode_as_the_boot_code_applies_them() {
        // lld's encoding of words 0x1000, 0x1008, 0x1018 and 0x1000 + 8 * 64: an address,
        // then a bitmap from 0x1008 (bits 1 and 3: 0x1008, 0x1018; bit 63: 0x1008 + 62 * 8).
        let bitmap = 1 | (1 << 1) | (1 << 3) | (1 << 63);
        assert_eq!(
            relr_addresses(&[0x1000, bitmap]),
            Ok(vec![0x1000, 0x1008, 0x1018, 0x1008 + 62 * 8])
        );
        // A second bitmap continues 63 words on; a new address restarts the place.
        assert_eq!(
            relr_addresses(&[0x1000, 1, 0b11, 0x2000]),
            Ok(vec![0x1000, 0x1008 + 63 * 8, 0x2000])
        );
        assert!(relr_addresses(&[0b101])
            .unwrap_err()
            .contains("before any address"));
        assert_eq!(relr_addresses(&[]), Ok(vec![]));
    }

    #[test]
    fn packed_relocations_are_checked_like_the_others() {
        let base = 0x4020_0000;
        let seg = |relr: &[u64]| elf_with_relr(base, &[(base, header(0x10_0000), 64)], &[], relr);
        // 0x8, 0x10 and 0x20 from the base: three relocations.
        assert_eq!(check_relocations(&seg(&[base + 8, 0b1011])), Ok(3));
        let e = check_relocations(&seg(&[base + 8, 1 << 63 | 1])).unwrap_err();
        assert!(e.contains("outside the image"), "{e}");
        let e = check_relocations(&seg(&[base + 4])).unwrap_err();
        assert!(e.contains("not an aligned word"), "{e}");
        let e = check_relocations(&seg(&[0b11])).unwrap_err();
        assert!(e.contains("before any address"), "{e}");
    }

    #[test]
    fn the_bin_is_written_only_for_a_good_image() {
        let dir = std::env::temp_dir().join(format!("xtask-bin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (elf_path, bin_path) = (dir.join("hv.elf"), dir.join("hv.bin"));
        let base = 0x4020_0000;
        let good = elf(
            base,
            &[(base, header(0x10_0000), 64)],
            &[(base + 8, 1027, 0)],
        );
        std::fs::write(&elf_path, &good).unwrap();
        write_image_bin(&elf_path, &bin_path).unwrap();
        assert_eq!(std::fs::read(&bin_path).unwrap(), header(0x10_0000));
        // The entry point must be the header (offset 0), where loaders enter.
        let _ = std::fs::remove_file(&bin_path);
        let off = elf(base + 0x40, &[(base, header(0x10_0000), 64)], &[]);
        std::fs::write(&elf_path, &off).unwrap();
        let e = write_image_bin(&elf_path, &bin_path).unwrap_err();
        assert!(e.contains("entry point"), "{e}");
        assert!(!bin_path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
