//! `numa-two-sockets`: the two-node board `qemu-virt-2s`, each node's RAM a
//! `memory-backend-file` of its own (`qemu::numa_args`). Two test guests pinned to different
//! nodes (`numa-node = 0` / `1`) each write a marker holding a value read at run time (their
//! counter) over a MiB of their RAM and print the value; after QEMU stops, each value must
//! be in its own node's file and not in the other's. A Linux VM with `numa = "spread"` runs
//! one vCPU on each node and must see two NUMA nodes with the board's distances (10/25) and
//! memory on each in `/sys/devices/system/node`. One boot for all of it.

use super::{linux_forbid, write_vms};
use crate::build::workspace_root;
use crate::guest::GuestImages;
use crate::qemu::{self, Scenario};
use crate::Target;
use std::io::Read;
use std::time::Duration;

/// The board (two sockets, two nodes, `numa-distances` 10/25).
pub const BOARD: &str = "qemu-virt-2s";
/// The scenario's name.
pub const NAME: &str = "numa-two-sockets";
/// "NUMAMARK" as the test guest writes it (`isolation_run::NUMA_MARK`): the word before
/// each copy of the value.
const NUMA_MARK: u64 = u64::from_le_bytes(*b"NUMAMARK");
/// Copies each guest writes (1 MiB of 16-byte pairs).
const MARK_COPIES: u64 = (1 << 20) / 16;
/// The pinned test guests: VM name and the node its RAM must come from.
const PINNED: [(&str, u32); 2] = [("near", 0), ("far", 1)];

/// The scenario.
pub fn scenario(images: &GuestImages) -> Result<Scenario, String> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let k61 = images
        .kernel("6.1")
        .ok_or("no 6.1 kernel in the guest cache")?;
    let body = "for n in /sys/devices/system/node/node*; do\n\
        i=${n##*/node}\n\
        echo \"[numa] node$i cpus=$(cat $n/cpulist) distance=$(cat $n/distance)\"\n\
        echo \"[numa] node$i mem_kb=$(awk '/MemTotal/ { print $4 }' $n/meminfo)\"\n\
        done\n\
        echo \"[numa] nodes=$(ls -d /sys/devices/system/node/node* | wc -l)\"";
    let initrd = workspace_root().join("target/scenarios/numa-initramfs.cpio.gz");
    crate::guest::write_initramfs(images, &crate::guest::init_script(body), &initrd)?;
    let test_guest = workspace_root().join("target/guests/test-guest.bin");
    let mut text = String::new();
    for (name, node) in PINNED {
        text += &format!(
            "[[vm]]\nname = \"{name}\"\nvcpus = 1\nmemory_mib = 32\nnuma-node = {node}\nkernel = \"{}\"\ncmdline = \"numa-mark\"\n\n",
            test_guest.display()
        );
    }
    text += &format!(
        "[[vm]]\nname = \"spread\"\nvcpus = 2\nmemory_mib = 384\nnuma = \"spread\"\nkernel = \"{}\"\ninitrd = \"{}\"\ncmdline = \"console=ttyAMA0 rdinit=/init\"\n",
        k61.image.display(),
        initrd.display()
    );
    let vms = write_vms(NAME, &text)?;
    let mut forbid = linux_forbid();
    forbid.push("FAIL".into());
    Ok(Scenario {
        expect_unordered: s(&[
            "[near] [test-guest] numa-mark: value=",
            "[far] [test-guest] numa-mark: value=",
            "[spread] [numa] node0 cpus=0 distance=10 25",
            "[spread] [numa] node1 cpus=1 distance=25 10",
            "[spread] [numa] nodes=2",
        ]),
        forbid,
        timeout: Duration::from_secs(240),
        check_lines: Some(check),
        ..Scenario::new(
            NAME,
            Target {
                board: BOARD.into(),
                board_file: workspace_root().join("boards.kdl"),
                vms,
                allow_experimental: false,
            },
            s(&[
                "[hv] board: qemu-virt-2s ",
                "[hv] 4 of 4 CPUs online",
                "[hv] VM 0 `near`: 1 vCPU(s) on pCPU(s) [0]",
                "[hv] VM 1 `far`: 1 vCPU(s) on pCPU(s) [2]",
                "[hv] VM 2 `spread`: 2 vCPU(s) on pCPU(s) [1, 3]",
                "[hv] VM 2 `spread`: virtual NUMA nodes: vCPUs on [0, 1], distances [[10, 25], [25, 10]]",
                "[hv] all VMs stopped; powering off",
            ]),
        )
    })
}

/// The board's RAM regions as (node, base, end), from its KDL (QEMU lays the nodes out the
/// same way: `qemu::numa_args`).
fn node_ranges() -> Result<Vec<(u32, u64, u64)>, String> {
    let board = platform_dsl::image::load_board(&workspace_root().join("boards.kdl"), BOARD)
        .map_err(|e| e.to_string())?;
    Ok(board
        .memory
        .iter()
        .map(|m| (m.numa_node, m.base, m.base + m.size))
        .collect())
}

/// The NUMA node whose RAM holds `addr`.
fn node_at(ranges: &[(u32, u64, u64)], addr: u64) -> Option<u32> {
    ranges
        .iter()
        .find(|&&(_, b, e)| b <= addr && addr < e)
        .map(|&(n, _, _)| n)
}

/// The hex number after `key` in `line`.
fn hex_after(line: &str, key: &str) -> Option<u64> {
    let rest = line.split_once(key)?.1;
    let digits: String = rest
        .trim_start_matches("0x")
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .collect();
    u64::from_str_radix(&digits, 16).ok()
}

/// The hypervisor's own memory is node-local: the second node's heap is in that node's
/// RAM, CPUs 2 and 3 (node 1) start on stacks there, and each pinned VM's state and
/// stage-2 tables are on its node. Addresses from the hypervisor's lines, nodes from the
/// board's memory map, so a wrong claim of the hypervisor's is caught.
fn check_hypervisor_memory(lines: &[String], ranges: &[(u32, u64, u64)]) -> Result<(), String> {
    let find = |prefix: &str| {
        lines
            .iter()
            .find(|l| l.contains(prefix))
            .ok_or(format!("no line with `{prefix}`"))
    };
    let want = |what: &str, addr: Option<u64>, node: u32| -> Result<(), String> {
        let addr = addr.ok_or(format!("{what}: no address"))?;
        match node_at(ranges, addr) {
            Some(n) if n == node => Ok(()),
            got => Err(format!(
                "{what} is at host {addr:#x}, on node {got:?} of {BOARD}'s memory map, not node {node}"
            )),
        }
    };
    let heap = find("[hv] NUMA node 1: hypervisor heap ")?;
    want("node 1's heap", hex_after(heap, "at host "), 1)?;
    for cpu in [2, 3] {
        let l = find(&format!("[hv] CPU {cpu}: stack on NUMA node 1 at host "))?;
        want(&format!("CPU {cpu}'s stack"), hex_after(l, "at host "), 1)?;
    }
    for (name, node) in PINNED {
        let l = find(&format!("`{name}`: hypervisor state on NUMA node {node}: "))?;
        want(
            &format!("VM `{name}`'s state"),
            hex_after(l, "VM at host "),
            node,
        )?;
        want(
            &format!("VM `{name}`'s stage-2 root table"),
            hex_after(l, "stage-2 root at host "),
            node,
        )?;
    }
    Ok(())
}

/// After QEMU stopped: each pinned guest's RAM lines name its node, its value is in its
/// node's RAM file (every copy) and in no other's; the spread VM's nodes both have memory;
/// the hypervisor's heap, stacks and VM state are on the nodes of the CPUs that use them.
fn check(lines: &[String]) -> Result<(), String> {
    check_hypervisor_memory(lines, &node_ranges()?)?;
    let dir = qemu::numa_ram_dir(BOARD);
    let files: Vec<_> = (0..2).map(|n| qemu::numa_ram_file(&dir, n)).collect();
    for (name, node) in PINNED {
        let tag = format!("`{name}`: RAM ");
        let ram_lines: Vec<&String> = lines.iter().filter(|l| l.contains(&tag)).collect();
        let want = format!("on NUMA node {node}");
        if ram_lines.is_empty() || !ram_lines.iter().all(|l| l.ends_with(&want)) {
            return Err(format!(
                "VM `{name}` is pinned to node {node}, its RAM lines say {ram_lines:?}"
            ));
        }
        let value = mark_value(lines, name)?;
        for (n, file) in files.iter().enumerate() {
            let found = count_marks(file, value)?;
            let own = n as u32 == node;
            eprintln!(
                "    {}: VM `{name}` value {value:#x} found {found} times",
                file.display()
            );
            if own && found < MARK_COPIES {
                return Err(format!(
                    "VM `{name}` (numa-node = {node}) wrote value {value:#x} {MARK_COPIES} times; its node's RAM file {} holds it {found} times",
                    file.display()
                ));
            }
            if !own && found > 0 {
                return Err(format!(
                    "VM `{name}` (numa-node = {node}) wrote value {value:#x}; node {n}'s RAM file {} holds it {found} times",
                    file.display()
                ));
            }
        }
    }
    // The spread VM's RAM comes from both nodes (the guest's view above is what its DT
    // says; these lines say where the hypervisor really took the RAM).
    for node in 0..2 {
        let want = format!("on NUMA node {node}");
        if !lines
            .iter()
            .any(|l| l.contains("`spread`: RAM ") && l.ends_with(&want))
        {
            return Err(format!("no RAM line of VM `spread` ends with `{want}`"));
        }
    }
    for node in 0..2 {
        let key = format!("[spread] [numa] node{node} mem_kb=");
        let kb = lines
            .iter()
            .find_map(|l| l.split_once(&key).map(|(_, v)| v.trim().to_owned()))
            .ok_or(format!("no `{key}` line"))?;
        let kb: u64 = kb
            .parse()
            .map_err(|_| format!("`{key}{kb}` is no number"))?;
        // Half of 384 MiB, less what the kernel keeps for itself.
        if kb < 100 * 1024 {
            return Err(format!(
                "the spread VM's node {node} has {kb} kB of memory; it should have about 192 MiB"
            ));
        }
    }
    Ok(())
}

/// The value VM `name` printed in its `numa-mark: value=0x...` line.
fn mark_value(lines: &[String], name: &str) -> Result<u64, String> {
    let prefix = format!("[{name}] [test-guest] numa-mark: value=");
    let text = lines
        .iter()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .ok_or(format!("VM `{name}` printed no `numa-mark: value=` line"))?;
    u64::from_str_radix(text.trim_start_matches("0x"), 16)
        .map_err(|_| format!("VM `{name}`: `{text}` is not a hex value"))
}

/// How many 8-byte-aligned `NUMA_MARK, value` pairs the file holds.
fn count_marks(path: &std::path::Path, value: u64) -> Result<u64, String> {
    let mut f =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut buf = vec![0u8; 16 << 20];
    let mut count = 0;
    let mut prev_mark = false;
    loop {
        let mut len = 0;
        while len < buf.len() {
            match f.read(&mut buf[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
            }
        }
        if len == 0 {
            break;
        }
        for w in buf[..len - len % 8].chunks_exact(8) {
            let word = u64::from_le_bytes(w.try_into().unwrap_or([0; 8]));
            if prev_mark && word == value {
                count += 1;
            }
            prev_mark = word == NUMA_MARK;
        }
        if len < buf.len() {
            break;
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_counted_only_next_to_their_value() {
        let dir = std::env::temp_dir().join(format!("numa-count-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("node.ram");
        let mut bytes = vec![0u8; 64];
        for (i, w) in [NUMA_MARK, 7, NUMA_MARK, 8, 7, NUMA_MARK, 0, NUMA_MARK]
            .iter()
            .enumerate()
        {
            bytes[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(count_marks(&path, 7).unwrap(), 1);
        assert_eq!(count_marks(&path, 8).unwrap(), 1);
        assert_eq!(count_marks(&path, 9).unwrap(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn hypervisor_memory_off_its_node_is_caught() {
        let ranges = node_ranges().unwrap();
        let good = vec![
            "[hv] NUMA node 1: hypervisor heap 24 MiB at host 0x80000000".to_owned(),
            "[hv] CPU 2: stack on NUMA node 1 at host 0x80008000".to_owned(),
            "[hv] CPU 3: stack on NUMA node 1 at host 0x80010000".to_owned(),
            "[hv] VM 0 `near`: hypervisor state on NUMA node 0: VM at host 0x41234560, stage-2 root at host 0x41300000".to_owned(),
            "[hv] VM 1 `far`: hypervisor state on NUMA node 1: VM at host 0x80123450, stage-2 root at host 0x80200000".to_owned(),
        ];
        assert_eq!(check_hypervisor_memory(&good, &ranges), Ok(()));
        // The far VM's stage-2 tables on node 0, whatever the line claims.
        let mut bad = good.clone();
        bad[4] = bad[4].replace("root at host 0x80200000", "root at host 0x41400000");
        let err = check_hypervisor_memory(&bad, &ranges).unwrap_err();
        assert!(err.contains("`far`'s stage-2 root table"), "{err}");
        // A CPU of node 1 that kept its .bss stack.
        let err = check_hypervisor_memory(&good[..2], &ranges).unwrap_err();
        assert!(err.contains("CPU 3"), "{err}");
    }

    #[test]
    fn the_value_comes_from_the_guests_line() {
        let lines = vec![
            "[far] [test-guest] numa-mark: value=0x00000000deadbeef written 65536 times at 0x4010_0000".to_owned(),
        ];
        assert_eq!(mark_value(&lines, "far"), Ok(0xdead_beef));
        assert!(mark_value(&lines, "near").is_err());
    }
}
