//! Memory map and CPUs: `CpuDesc` (with NUMA node) and `MemoryDesc` tables.

use crate::lit::{hex, slice};
use platform_dsl::model::{Board, Cpu, EnableMethod, FromFirmware, MemoryRegion};
use proc_macro2::TokenStream;
use quote::quote;

/// NUMA node of a socket: the node declared for it, else node 0 (single-node boards).
pub fn numa_node_of_socket(board: &Board, socket: u32) -> u32 {
    board
        .numa_nodes
        .iter()
        .find(|n| n.socket == socket)
        .map_or(0, |n| n.id)
}

fn cpu(board: &Board, cpu: &Cpu) -> TokenStream {
    let mpidr = hex(cpu.mpidr);
    let Cpu {
        socket,
        cluster,
        core,
        ..
    } = cpu;
    let node = numa_node_of_socket(board, cpu.socket);
    let enable = match cpu.enable_method {
        EnableMethod::Psci => quote! { ::hypervisor::platform::CpuEnable::Psci },
        EnableMethod::SpinTable { release_addr } => {
            let a = hex(release_addr);
            quote! { ::hypervisor::platform::CpuEnable::SpinTable { release_addr: #a } }
        }
    };
    quote! {
        ::hypervisor::platform::CpuDesc {
            mpidr: #mpidr,
            socket: #socket,
            cluster: #cluster,
            numa_node: #node,
            core: #core,
            enable: #enable,
        }
    }
}

/// `&[CpuDesc]`, boot CPU first.
pub fn cpus(board: &Board) -> TokenStream {
    slice(board.cpus.iter().map(|c| cpu(board, c)))
}

fn region(r: &MemoryRegion) -> TokenStream {
    let (name, base, size, node) = (&r.name, hex(r.base), hex(r.size), r.numa_node);
    let from = match r.from_firmware {
        FromFirmware::Nothing => quote! { Nothing },
        FromFirmware::Size => quote! { Size },
        FromFirmware::BaseAndSize => quote! { BaseAndSize },
    };
    quote! {
        ::hypervisor::platform::MemoryDesc {
            name: #name, base: #base, size: #size, numa_node: #node,
            from_firmware: ::hypervisor::platform::FromFirmware::#from,
        }
    }
}

/// `&[MemoryDesc]`, sorted by base as in the model.
pub fn memory(board: &Board) -> TokenStream {
    slice(board.memory.iter().map(region))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;
    use crate::lit::compact;

    #[test]
    fn cpus_carry_their_enable_method() {
        let mut board = fixture::two_socket();
        board.cpus[1].enable_method = EnableMethod::SpinTable { release_addr: 0xe0 };
        let out = compact(&cpus(&board));
        assert!(
            out.contains("enable:::hypervisor::platform::CpuEnable::Psci"),
            "{out}"
        );
        assert!(
            out.contains(
                "enable:::hypervisor::platform::CpuEnable::SpinTable{release_addr:0xe0_u64}"
            ),
            "{out}"
        );
    }

    #[test]
    fn cpus_carry_the_numa_node_of_their_socket() {
        let out = compact(&cpus(&fixture::two_socket()));
        assert!(
            out.contains("mpidr:0x0_u64,socket:0u32,cluster:0u32,numa_node:0u32"),
            "{out}"
        );
        assert!(
            out.contains("mpidr:0x1_0000_0000_u64,socket:1u32,cluster:0u32,numa_node:1u32"),
            "{out}"
        );
        assert!(out.contains("core:\"arm,neoverse-n1\""), "{out}");
    }

    #[test]
    fn boot_cpu_comes_first() {
        let out = compact(&cpus(&fixture::two_socket()));
        assert!(out.find("0x0_u64").unwrap() < out.find("0x1_0000_0000_u64").unwrap());
    }

    #[test]
    fn socket_without_a_node_falls_back_to_node_0() {
        let mut b = fixture::two_socket();
        b.numa_nodes.clear();
        assert_eq!(numa_node_of_socket(&b, 1), 0);
    }

    #[test]
    fn memory_regions_keep_name_base_size_node() {
        let out = compact(&memory(&fixture::two_socket()));
        assert_eq!(
            out,
            "&[::hypervisor::platform::MemoryDesc{name:\"dram0\",base:0x8000_0000_u64,size:0x8000_0000_u64,numa_node:0u32,from_firmware:::hypervisor::platform::FromFirmware::Nothing,},\
             ::hypervisor::platform::MemoryDesc{name:\"dram1\",base:0x100_0000_0000_u64,size:0x4000_0000_u64,numa_node:1u32,from_firmware:::hypervisor::platform::FromFirmware::Nothing,}]"
        );
    }

    #[test]
    fn generated_tables_are_valid_rust() {
        let b = fixture::two_socket();
        syn::parse2::<syn::Expr>(cpus(&b)).unwrap();
        syn::parse2::<syn::Expr>(memory(&b)).unwrap();
    }
}
