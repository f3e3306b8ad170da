//! `board!`: takes the selected board from the build's model and emits `BOARD_DESC` and the
//! `HV_BOARD` symbol.

use crate::args::BoardArgs;
use crate::lit::hex;
use crate::select::{self, Env};
use crate::{devices, gating, interrupts, memory, quirks, track};
use platform_dsl::image::Model;
use platform_dsl::model::{Board, SupportLevel, Verification};
use proc_macro2::{Span, TokenStream};
use quote::quote;

fn support(level: SupportLevel) -> TokenStream {
    match level {
        SupportLevel::Supported => quote!(::hypervisor::platform::SupportLevel::Supported),
        SupportLevel::Described => quote!(::hypervisor::platform::SupportLevel::Described),
        SupportLevel::Experimental => quote!(::hypervisor::platform::SupportLevel::Experimental),
        SupportLevel::Community => quote!(::hypervisor::platform::SupportLevel::Community),
    }
}

fn verification(v: &Verification) -> TokenStream {
    match v {
        Verification::Qemu { machine, .. } => {
            quote!(::hypervisor::platform::VerificationDesc::Qemu { machine: #machine })
        }
        Verification::DeviceTree { dtb } => {
            quote!(::hypervisor::platform::VerificationDesc::DeviceTree { dtb: #dtb })
        }
        Verification::Hardware { log } => {
            quote!(::hypervisor::platform::VerificationDesc::Hardware { log: #log })
        }
        Verification::None => quote!(::hypervisor::platform::VerificationDesc::None),
    }
}

/// The `BoardDesc` expression for a board.
pub fn board_desc(board: &Board) -> Result<TokenStream, String> {
    let (name, model, soc) = (&board.name, &board.model, &board.soc);
    let support = support(board.support);
    let verified_by = verification(&board.verified_by);
    let cpus = memory::cpus(board);
    let memory = memory::memory(board);
    let hypervisor_base = match board.hypervisor.load_address {
        Some(a) => {
            let a = hex(a);
            quote! { Some(#a) }
        }
        None => quote! { None },
    };
    let hypervisor_size = hex(board.hypervisor.size);
    let gic = interrupts::gic(&board.gic);
    let timer = interrupts::timer(&board.timer);
    let pmu = interrupts::pmu(&board.pmu);
    let console = crate::lit::option(devices::console_index(board)?.as_ref(), |i| quote!(#i));
    let interrupt_controller = devices::interrupt_controller_index(board);
    let devices = devices::devices(board);
    let quirks = quirks::quirks(board);
    let network = network(&board.network);
    let stage2_ram_mappings = stage2_ram_mappings(board.stage2_ram_mappings);
    let source = source(&board.source);
    let rows = board.numa_distances.iter().map(|row| quote!(&[#(#row),*]));
    let numa_distances = quote!(&[#(#rows),*]);
    Ok(quote! {
        ::hypervisor::platform::BoardDesc {
            name: #name,
            model: #model,
            soc: #soc,
            support: #support,
            verified_by: #verified_by,
            cpus: #cpus,
            memory: #memory,
            hypervisor_base: #hypervisor_base,
            hypervisor_size: #hypervisor_size,
            gic: #gic,
            timer: #timer,
            pmu: #pmu,
            console: #console,
            interrupt_controller: #interrupt_controller,
            devices: #devices,
            quirks: #quirks,
            network: #network,
            stage2_ram_mappings: #stage2_ram_mappings,
            source: #source,
            numa_distances: #numa_distances,
        }
    })
}

/// The `SourceDesc` expression: the KDL file's name (without directories) and each part's
/// line.
fn source(src: &platform_dsl::model::Source) -> TokenStream {
    let file = std::path::Path::new(&src.file)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let lines = crate::lit::slice(src.lines.iter().map(|(k, l)| quote!((#k, #l))));
    quote!(::hypervisor::platform::SourceDesc {
        file: #file,
        lines: #lines,
    })
}

/// The `Stage2RamMappings` expression of the board's `stage2 ram-mappings=`.
fn stage2_ram_mappings(m: platform_dsl::model::Stage2RamMappings) -> TokenStream {
    use platform_dsl::model::Stage2RamMappings as M;
    match m {
        M::Blocks => quote!(::hypervisor::platform::Stage2RamMappings::Blocks),
        M::Pages => quote!(::hypervisor::platform::Stage2RamMappings::Pages),
    }
}

/// The `NetworkDesc` expression of the board's `network` node.
fn network(n: &platform_dsl::model::Network) -> TokenStream {
    use platform_dsl::model::UplinkChoice as U;
    let uplink = match n.uplink {
        U::Auto => quote!(Auto),
        U::Usb => quote!(Usb),
        U::Pci => quote!(Pci),
        U::None => quote!(None),
    };
    let groups = crate::lit::slice(n.port_groups.iter().map(|g| {
        let name = &g.name;
        let vlan = crate::lit::option(g.vlan.as_ref(), |v| quote!(#v));
        quote!(::hypervisor::platform::PortGroupDesc { name: #name, vlan: #vlan })
    }));
    quote!(::hypervisor::platform::NetworkDesc {
        uplink: ::hypervisor::platform::UplinkChoice::#uplink,
        port_groups: #groups,
    })
}

/// The items `board!` expands to for an already loaded, gated board.
pub fn items(board: &Board) -> Result<TokenStream, String> {
    let desc = board_desc(board)?;
    Ok(quote! {
        /// The board this image is built for (generated from its KDL by `board!`).
        static BOARD_DESC: ::hypervisor::platform::BoardDesc = #desc;
        /// The board table the core reads at boot.
        #[unsafe(no_mangle)]
        pub static HV_BOARD: &'static ::hypervisor::platform::BoardDesc = &BOARD_DESC;
    })
}

/// Expands a `board!(...)` call.
pub fn expand(args: &BoardArgs, env: &Env) -> TokenStream {
    let track = track::inputs(env.model_path());
    match generate(args, env) {
        Ok(items) => quote!(#items #track),
        Err(e) => {
            let err = e.to_compile_error();
            quote!(#err #track)
        }
    }
}

/// The items for the board the call means, or the error for `compile_error!`.
fn generate(args: &BoardArgs, env: &Env) -> syn::Result<TokenStream> {
    let model = select::model(env)?;
    let sel = select::board(args, env, &model)?;
    let span_of = |lit: Option<&syn::LitStr>| lit.map_or(Span::call_site(), |l| l.span());
    let at_call = |msg: String| syn::Error::new(Span::call_site(), msg);
    // The build script's report for a board file that does not load.
    let boards = model
        .boards
        .as_ref()
        .map_err(|report| syn::Error::new(span_of(args.file.as_ref()), report))?;
    let board = platform_dsl::find_board(boards, &sel.name)
        .map_err(|e| syn::Error::new(span_of(args.name.as_ref()), unknown_board(&e, &model)))?;
    linked_for_another_board(board, boards, args, &model).map_err(at_call)?;
    gating::check(board, sel.allow_experimental).map_err(at_call)?;
    let items = items(board).map_err(at_call)?;
    let links = link_drivers(board, model.drivers.as_deref()).map_err(at_call)?;
    Ok(quote!(#items #links))
}

/// For a model written by an image crate's build script: fails when the board's console or
/// GIC has no driver among the crate's dependencies (the image would boot in silence), and
/// links every driver dependency (`use plugin_x as _;`), so that one left out of `main.rs`
/// still registers itself.
fn link_drivers(
    board: &Board,
    drivers: Option<&[platform_dsl::image::LinkedDriver]>,
) -> Result<TokenStream, String> {
    let Some(drivers) = drivers else {
        return Ok(TokenStream::new());
    };
    platform_dsl::image::check_drivers(board, drivers)?;
    let mut uses = TokenStream::new();
    for d in drivers {
        let krate: syn::Ident = syn::parse_str(&d.krate).map_err(|_| {
            format!(
                "driver `{}` says its crate is `{}`, which is no Rust identifier (its build.rs)",
                d.name, d.krate
            )
        })?;
        uses.extend(quote!(use #krate as _;));
    }
    Ok(uses)
}

fn unknown_board(e: &platform_dsl::Error, model: &Model) -> String {
    format!(
        "{e}\n  in {}; select a board with `cargo xtask build --board NAME` or \
         board!(name = \"NAME\")",
        model.board_file.display()
    )
}

/// With explicit arguments, the board must sit where the build script's board (whose
/// `link.x` links the image) puts the hypervisor; otherwise the image would run at an
/// address its tables do not describe.
fn linked_for_another_board(
    board: &Board,
    boards: &[Board],
    args: &BoardArgs,
    model: &Model,
) -> Result<(), String> {
    if (args.file.is_none() && args.name.is_none()) || model.board == board.name {
        return Ok(());
    }
    let linked = platform_dsl::find_board(boards, &model.board).map_err(|e| {
        format!(
            "{}; the build script links the image for that board: fix HV_BOARD or the build.rs defaults",
            unknown_board(&e, model)
        )
    })?;
    placement_mismatch(board, linked)
}

/// Error if `board` and `linked` (the build script's board) place the hypervisor differently.
fn placement_mismatch(board: &Board, linked: &Board) -> Result<(), String> {
    if board.hypervisor == linked.hypervisor {
        return Ok(());
    }
    let at = |b: &Board| {
        b.hypervisor
            .load_address
            .map_or("no load address".to_string(), |a| format!("{a:#x}"))
    };
    Err(format!(
        "board!() names board `{}` (hypervisor at {}, {:#x} bytes) but the build script \
         selected `{}` (hypervisor at {}, {:#x} bytes) and linked the image for it; make \
         the build.rs defaults (or HV_BOARD / HV_BOARD_FILE) name the same board",
        board.name,
        at(board),
        board.hypervisor.size,
        linked.name,
        at(linked),
        linked.hypervisor.size,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;
    use crate::lit::compact;

    #[test]
    fn board_desc_has_every_table() {
        let out = compact(&board_desc(&fixture::two_socket()).unwrap());
        for field in [
            "name:\"test-2s\"",
            "model:\"Testtwo-socket\"",
            "soc:\"test-soc\"",
            "support:::hypervisor::platform::SupportLevel::Supported",
            "verified_by:::hypervisor::platform::VerificationDesc::Qemu{machine:\"virt,virtualization=on,gic-version=3\"}",
            "cpus:&[",
            "memory:&[",
            "hypervisor_base:Some(0x8020_0000_u64)",
            "hypervisor_size:0x200_0000_u64",
            "gic:::hypervisor::platform::GicDesc{",
            "timer:::hypervisor::platform::TimerDesc{",
            "pmu:::hypervisor::platform::PmuDesc::Ppi(::hypervisor::platform::IrqDesc{intid:23u32",
            "console:::core::option::Option::Some(1usize)",
            "devices:&[",
            "quirks:&[",
            "stage2_ram_mappings:::hypervisor::platform::Stage2RamMappings::Pages",
        ] {
            assert!(out.contains(field), "missing {field}: {out}");
        }
    }

    #[test]
    fn device_tree_verification_names_the_dtb() {
        let out = compact(&board_desc(&fixture::gicv2_experimental()).unwrap());
        assert!(
            out.contains("VerificationDesc::DeviceTree{dtb:\"broadcom/bcm2711-rpi-4-b.dtb\"}"),
            "{out}"
        );
        assert!(out.contains("SupportLevel::Experimental"), "{out}");
        assert!(
            out.contains("stage2_ram_mappings:::hypervisor::platform::Stage2RamMappings::Blocks"),
            "{out}"
        );
    }

    #[test]
    fn items_define_the_no_mangle_symbol() {
        let out = compact(&items(&fixture::two_socket()).unwrap());
        assert!(
            out.contains("staticBOARD_DESC:::hypervisor::platform::BoardDesc="),
            "{out}"
        );
        assert!(out.contains("#[unsafe(no_mangle)]pubstaticHV_BOARD:&'static::hypervisor::platform::BoardDesc=&BOARD_DESC;"), "{out}");
        syn::parse2::<syn::File>(items(&fixture::two_socket()).unwrap()).unwrap();
    }

    #[test]
    fn unknown_console_is_reported_not_panicked() {
        let mut b = fixture::two_socket();
        b.console = Some("nope".into());
        assert!(items(&b).unwrap_err().contains("console `nope`"));
    }

    #[test]
    fn same_placement_on_another_board_is_accepted() {
        assert_eq!(
            placement_mismatch(&fixture::two_socket(), &fixture::gicv2_experimental()),
            Ok(())
        );
    }

    #[test]
    fn different_placement_from_the_linked_board_is_an_error() {
        let mut linked = fixture::gicv2_experimental();
        linked.hypervisor.load_address = Some(0x4020_0000);
        let e = placement_mismatch(&fixture::two_socket(), &linked).unwrap_err();
        assert!(
            e.contains("names board `test-2s` (hypervisor at 0x80200000"),
            "{e}"
        );
        assert!(
            e.contains("selected `test-v2` (hypervisor at 0x40200000"),
            "{e}"
        );
    }

    #[test]
    fn without_a_model_the_call_says_how_to_select() {
        let out = compact(&expand(&BoardArgs::default(), &Env::default()));
        assert!(
            out.starts_with("::core::compile_error!{\"noboardselected:"),
            "{out}"
        );
    }

    #[test]
    fn an_unknown_name_lists_the_boards_of_the_model() {
        let dir = std::env::temp_dir().join(format!("macros-board-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("hv-model.json");
        fixture::model().write(&path).unwrap();
        let env = Env {
            manifest_dir: None,
            model: Some(path.display().to_string()),
        };
        let args: BoardArgs = syn::parse_str(r#"name = "test-2""#).unwrap();
        let out = compact(&expand(&args, &env));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(out.contains("unknownboard`test-2`"), "{out}");
        assert!(out.contains("knownboards:test-2s,test-v2"), "{out}");
        assert!(out.contains("include_bytes!"), "{out}");
    }

    /// The macro front end end to end on a 256 KiB thread: the build script's
    /// `Model::load` of a board file nested 10,000 deep, or not UTF-8, and `board!()`
    /// expanding that model: a `compile_error!` with the file's line and column.
    #[test]
    fn hostile_board_files_become_located_compile_errors() {
        use platform_dsl::image::Selection;
        let dir = std::env::temp_dir().join(format!("macros-hostile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cases: [(&str, Vec<u8>, String); 2] = [
            (
                "deep.kdl",
                format!("{}{}", "a {".repeat(10_000), "}".repeat(10_000)).into_bytes(),
                format!(
                    "invalid board file {}:1:195",
                    dir.join("deep.kdl").display()
                ),
            ),
            (
                "latin1.kdl",
                b"board \"caf\xe9\"\n".to_vec(),
                format!(
                    "{}:1:11: byte 0xe9 at offset 10 is not UTF-8",
                    dir.join("latin1.kdl").display()
                ),
            ),
        ];
        for (name, bytes, wanted) in cases {
            let kdl = dir.join(name);
            std::fs::write(&kdl, bytes).unwrap();
            let json = dir.join(format!("{name}.json"));
            let out = std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn({
                    let json = json.clone();
                    move || {
                        let sel = Selection {
                            board_file: kdl,
                            board: "b".to_owned(),
                            vms: "/nonexistent/vms.toml".into(),
                            allow_experimental: false,
                        };
                        Model::load(&sel).write(&json).unwrap();
                        let env = Env {
                            manifest_dir: None,
                            model: Some(json.display().to_string()),
                        };
                        expand(&BoardArgs::default(), &env).to_string()
                    }
                })
                .unwrap()
                .join()
                .unwrap();
            assert!(out.contains("compile_error"), "{out}");
            assert!(out.contains(&wanted), "{wanted:?} not in {out}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
