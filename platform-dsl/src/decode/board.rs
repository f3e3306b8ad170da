//! Decoders of the `soc` and `board` nodes and the board-only parts (CPUs, memory,
//! hypervisor placement, quirks, support and verification).

use std::collections::HashMap;

use super::{title, written, Cx, DecodeError, Shape};
use crate::decl::{
    BoardDecl, CpuDecl, DistanceRowDecl, DistancesDecl, EnableMethodKind, HypervisorDecl,
    MemoryDecl, NetworkDecl, PortGroupDecl, QuirkDecl, SocDecl, Sp, Stage2Decl, TopologyDecl,
};
use crate::model::{Stage2RamMappings, SupportLevel, UplinkChoice, Verification};
use crate::parse::Node;
use crate::text::hex;

/// The most CPUs one `cpu-range` makes (a bound on what a hostile file can make the
/// decoder allocate; a 2-socket Altra Max has 256).
const MAX_RANGE_CPUS: usize = 4096;

/// The most CPUs the `cpu-range`s of one `cpus` node make together, with the `cpu`s
/// written before them.
const MAX_BOARD_CPUS: usize = 16384;

impl Cx {
    pub(super) fn soc(&mut self, node: &Node) -> Option<SocDecl> {
        self.shape(
            node,
            &Shape {
                props: &[],
                children: &["gic", "timer", "pmu", "device", "stage2"],
                max_args: 1,
                args_help: "a soc takes only its name: `soc \"NAME\" { ... }`",
            },
        );
        let name = self.arg_str(node, 0, "the name", "soc \"my-soc\"")?;
        let gic = self.single(node, "gic").and_then(|n| self.gic(n));
        let timer = self.single(node, "timer").and_then(|n| self.timer(n));
        let pmu = self.single(node, "pmu").and_then(|n| self.pmu(n));
        let devices = self.devices(node);
        let stage2 = self.single(node, "stage2").and_then(|n| self.stage2(n));
        Some(SocDecl {
            name,
            gic,
            timer,
            pmu,
            devices,
            stage2,
            written: written(node),
        })
    }

    pub(super) fn board(&mut self, node: &Node) -> Option<BoardDecl> {
        const CHILDREN: &[&str] = &[
            "model",
            "support",
            "verified-by",
            "topology",
            "cpus",
            "memory",
            "hypervisor",
            "stage2",
            "console",
            "gic",
            "timer",
            "pmu",
            "device",
            "quirk",
            "network",
            "numa-distances",
        ];
        self.shape(
            node,
            &Shape {
                props: &["soc"],
                children: CHILDREN,
                max_args: 1,
                args_help:
                    "a board takes its name and `soc=`: `board \"NAME\" soc=\"SOC\" { ... }`",
            },
        );
        let name = self.arg_str(node, 0, "the name", "board \"my-board\" soc=\"my-soc\"")?;
        let soc = self.prop_str(node, "soc", "soc=\"my-soc\"");
        let model = self
            .single(node, "model")
            .and_then(|n| self.text_node(n, "model \"Vendor Board\""));
        let support = self
            .single(node, "support")
            .and_then(|n| self.text_node(n, "support \"supported\""))
            .and_then(|s| {
                self.choice(
                    s,
                    "support level",
                    &[
                        ("supported", SupportLevel::Supported),
                        ("described", SupportLevel::Described),
                        ("experimental", SupportLevel::Experimental),
                        ("community", SupportLevel::Community),
                    ],
                )
            });
        let verified_by = self
            .single(node, "verified-by")
            .and_then(|n| self.verified_by(n));
        let topology = self.single(node, "topology").and_then(|n| self.topology(n));
        let cpus_node = self.single(node, "cpus");
        let cpus_span = cpus_node.map(|n| n.name_span);
        let cpus = cpus_node.map(|n| self.cpus(n));
        let mut memory = Vec::new();
        let mut seen = HashMap::new();
        for c in node.children.iter().filter(|c| c.name == "memory") {
            if let Some(m) = self.memory(c) {
                self.unique(
                    &mut seen,
                    "memory region",
                    &m.name,
                    "give each memory region its own name",
                );
                memory.push(m);
            }
        }
        let hypervisor = self
            .single(node, "hypervisor")
            .and_then(|n| self.hypervisor(n));
        let stage2 = self.single(node, "stage2").and_then(|n| self.stage2(n));
        let (console, console_unavailable) = match self.single(node, "console") {
            Some(n) => self.console(n),
            None => (None, None),
        };
        let gic = self.single(node, "gic").and_then(|n| self.gic(n));
        let timer = self.single(node, "timer").and_then(|n| self.timer(n));
        let pmu = self.single(node, "pmu").and_then(|n| self.pmu(n));
        let devices = self.devices(node);
        let quirks = node
            .children
            .iter()
            .filter(|c| c.name == "quirk")
            .filter_map(|c| self.quirk(c))
            .collect();
        let network = self.single(node, "network").map(|n| self.network(n));
        let numa_distances = self
            .single(node, "numa-distances")
            .map(|n| self.numa_distances(n));
        for (child, example) in [
            ("model", "model \"Vendor Board\""),
            ("support", "support \"supported\""),
            ("verified-by", "verified-by \"none\""),
            ("topology", "topology sockets=1 clusters=1 cores=4"),
            ("cpus", "cpus core=\"arm,cortex-a53\" { cpu 0x0 }"),
            ("memory", "memory \"dram0\" 0x4000_0000 size=0x8000_0000"),
            ("hypervisor", "hypervisor load=0x4020_0000 size=0x0200_0000"),
            ("console", "console \"uart0\""),
        ] {
            if !node.children.iter().any(|c| c.name == child) {
                self.missing_node(node, child, example);
            }
        }
        if soc.is_none() && node.prop("soc").is_none() {
            self.errors.push(DecodeError::Missing {
                node: title(node),
                what: "property `soc`".to_owned(),
                span: node.name_span,
                help:
                    "name the SoC this board is built on, e.g. `board \"my-board\" soc=\"my-soc\"`"
                        .to_owned(),
            });
        }
        Some(BoardDecl {
            name,
            soc,
            model,
            support,
            verified_by,
            topology,
            cpus,
            cpus_span,
            memory,
            hypervisor,
            console,
            console_unavailable,
            gic,
            timer,
            pmu,
            devices,
            quirks,
            network,
            stage2,
            numa_distances,
            written: written(node),
        })
    }

    /// `stage2 ram-mappings="blocks"|"pages"`: how VMs' RAM is mapped at stage 2 (in a
    /// `board`, or in a `soc` for every board built on it; a board's replaces its SoC's).
    pub(super) fn stage2(&mut self, node: &Node) -> Option<Stage2Decl> {
        const EXAMPLE: &str = "ram-mappings=\"pages\"";
        self.shape(
            node,
            &Shape {
                props: &["ram-mappings"],
                children: &[],
                max_args: 0,
                args_help: "write `stage2 ram-mappings=\"blocks\"` (2 MiB blocks, the default) or `stage2 ram-mappings=\"pages\"` (4 KiB pages, for a machine that exists only in QEMU)",
            },
        );
        let mappings = self.prop_str(node, "ram-mappings", EXAMPLE).and_then(|m| {
            self.choice(
                m,
                "stage2 ram-mappings",
                &[
                    ("blocks", Stage2RamMappings::Blocks),
                    ("pages", Stage2RamMappings::Pages),
                ],
            )
        });
        let ram_mappings = self.require(node, "ram-mappings", mappings, EXAMPLE)?;
        Some(Stage2Decl {
            span: node.name_span,
            ram_mappings,
        })
    }

    /// `numa-distances { from 0 10 20; from 1 20 10 }`: one `from NODE D0 D1 ...` row per
    /// node (the rows are checked against the board's nodes in `check`).
    pub(super) fn numa_distances(&mut self, node: &Node) -> DistancesDecl {
        self.shape(
            node,
            &Shape {
                props: &[],
                children: &["from"],
                max_args: 0,
                args_help: "write `numa-distances { from 0 10 20; from 1 20 10 }`",
            },
        );
        let mut rows = Vec::new();
        for c in node.children.iter().filter(|c| c.name == "from") {
            self.shape(
                c,
                &Shape {
                    props: &[],
                    children: &[],
                    max_args: usize::MAX,
                    args_help: "write `from NODE D0 D1 ...`: the node, then its distance to node 0, 1, ...",
                },
            );
            let Some(from) = self.arg_int(c, 0, "the node", u64::from(u32::MAX), "from 0 10 20")
            else {
                continue;
            };
            let from = Sp::new(from.value as u32, from.span, from.text);
            let to: Vec<Sp<u64>> = (1..c.args.len())
                .filter_map(|i| self.arg_int(c, i, "a distance", u64::MAX, "from 0 10 20"))
                .collect();
            if to.len() + 1 != c.args.len() {
                continue;
            }
            rows.push(DistanceRowDecl {
                span: c.name_span,
                from,
                to,
            });
        }
        if node.children.iter().all(|c| c.name != "from") {
            self.missing_node(node, "from", "from 0 10 20");
        }
        DistancesDecl {
            span: node.name_span,
            rows,
        }
    }

    /// `network uplink="auto" { port-group "lan"; port-group "dmz" vlan=20 }`.
    pub(super) fn network(&mut self, node: &Node) -> NetworkDecl {
        self.shape(
            node,
            &Shape {
                props: &["uplink"],
                children: &["port-group"],
                max_args: 0,
                args_help: "write `network uplink=\"auto\" { port-group \"lan\" }`",
            },
        );
        let uplink = self
            .prop_str(node, "uplink", "uplink=\"usb\"")
            .and_then(|u| {
                self.choice(
                    u,
                    "uplink",
                    &[
                        ("auto", UplinkChoice::Auto),
                        ("usb", UplinkChoice::Usb),
                        ("pci", UplinkChoice::Pci),
                        ("none", UplinkChoice::None),
                    ],
                )
            });
        let mut port_groups: Vec<PortGroupDecl> = Vec::new();
        let mut seen = HashMap::new();
        for c in node.children.iter().filter(|c| c.name == "port-group") {
            self.shape(
                c,
                &Shape {
                    props: &["vlan"],
                    children: &[],
                    max_args: 1,
                    args_help: "write `port-group \"NAME\"` or `port-group \"NAME\" vlan=20`",
                },
            );
            let Some(name) = self.arg_str(c, 0, "the name", "port-group \"lan\"") else {
                continue;
            };
            self.unique(
                &mut seen,
                "port group",
                &name,
                "give each port group its own name",
            );
            let vlan = self.prop_int(c, "vlan", 4094, "vlan=20");
            if let Some(v) = vlan.as_ref().filter(|v| v.value == 0) {
                self.errors.push(DecodeError::OutOfRange {
                    what: format!("property `vlan` of `port-group \"{}\"`", name.value),
                    text: v.text.clone(),
                    reason: "VLAN 0 means no VLAN in 802.1Q".to_owned(),
                    span: v.span,
                    help: "write a VLAN ID in 1..=4094, or leave `vlan` out for an untagged group"
                        .to_owned(),
                });
            }
            if vlan.is_none() && c.prop("vlan").is_none() {
                if let Some(first) = port_groups.iter().find(|g| g.vlan.is_none()) {
                    self.errors.push(DecodeError::OutOfRange {
                        what: format!("port group `{}`", name.value),
                        text: name.text.clone(),
                        reason: format!(
                            "it is untagged like `{}`: both would be one segment",
                            first.name.value
                        ),
                        span: name.span,
                        help: "give one of them a `vlan=` (1..=4094), or use one group".to_owned(),
                    });
                }
            }
            port_groups.push(PortGroupDecl { name, vlan });
        }
        NetworkDecl {
            uplink,
            port_groups,
        }
    }

    /// A node whose only content is one string argument (`model "..."`).
    /// `console "uart0"`, or `console unavailable="REASON"` for a board with no UART the
    /// hypervisor can drive (a phone whose device tree enables none).
    fn console(&mut self, node: &Node) -> (Option<Sp<String>>, Option<Sp<String>>) {
        let Some(u) = node.prop("unavailable") else {
            return (self.text_node(node, "console \"uart0\""), None);
        };
        self.shape(
            node,
            &Shape {
                props: &["unavailable"],
                children: &[],
                max_args: 0,
                args_help:
                    "write `console \"uart0\"` or `console unavailable=\"REASON\"`, not both",
            },
        );
        let Some(reason) = self.prop_str(
            node,
            "unavailable",
            "unavailable=\"the device tree enables no UART\"",
        ) else {
            return (None, None);
        };
        if reason.value.trim().is_empty() {
            self.errors.push(DecodeError::ConsoleForm {
                problem: "`console unavailable=` gives no reason".to_owned(),
                span: u.value.span,
                label: "empty".to_owned(),
                help: "say why the board has no console, e.g. `unavailable=\"every UART of the device tree is disabled\"`".to_owned(),
            });
            return (None, None);
        }
        (None, Some(reason))
    }

    pub(super) fn text_node(&mut self, node: &Node, example: &str) -> Option<Sp<String>> {
        self.shape(
            node,
            &Shape {
                props: &[],
                children: &[],
                max_args: 1,
                args_help: "this node takes a single string",
            },
        );
        self.arg_str(node, 0, "the value", example)
    }

    pub(super) fn verified_by(&mut self, node: &Node) -> Option<Sp<Verification>> {
        let kind = self.arg_str(
            node,
            0,
            "a method (\"qemu\", \"hardware\", \"dtb\" or \"none\")",
            "verified-by \"none\"",
        )?;
        let props: &[&str] = match kind.value.as_str() {
            "qemu" => &["machine", "cpu", "smp", "memory-mib", "extra"],
            "dtb" => &["path"],
            "hardware" => &["log"],
            _ => &[],
        };
        self.shape(
            node,
            &Shape {
                props,
                children: &[],
                max_args: 1,
                args_help: "write `verified-by \"qemu\" machine=... cpu=... smp=N memory-mib=N`, `verified-by \"hardware\" log=\"...\"`, `verified-by \"dtb\" path=\"...\"` or `verified-by \"none\"`",
            },
        );
        let v = match kind.value.as_str() {
            "qemu" => {
                let machine = self.prop_str(node, "machine", "machine=\"virt,virtualization=on\"");
                let machine = self.require(
                    node,
                    "machine",
                    machine,
                    "machine=\"virt,virtualization=on\"",
                );
                let cpu = self.prop_str(node, "cpu", "cpu=\"cortex-a57\"");
                let cpu = self.require(node, "cpu", cpu, "cpu=\"cortex-a57\"");
                let smp = self.prop_u32(node, "smp", "smp=4");
                let smp = self.require(node, "smp", smp, "smp=4");
                let mem = self.prop_int(node, "memory-mib", u64::MAX, "memory-mib=2048");
                let mem = self.require(node, "memory-mib", mem, "memory-mib=2048");
                let extra = self.prop_str(node, "extra", "extra=\"-audiodev none,id=snd0\"");
                Verification::Qemu {
                    machine: machine?.value,
                    cpu: cpu?.value,
                    smp: smp?.value,
                    memory_mib: mem?.value,
                    extra: extra
                        .map(|e| e.value.split_whitespace().map(str::to_owned).collect())
                        .unwrap_or_default(),
                }
            }
            "dtb" => {
                let path = self.prop_str(node, "path", "path=\"vendor/board.dtb\"");
                let path = self.require(node, "path", path, "path=\"vendor/board.dtb\"");
                Verification::DeviceTree { dtb: path?.value }
            }
            "hardware" => {
                let example = "log=\"docs/hardware-runs/my-board.log\"";
                let log = self.prop_str(node, "log", example);
                let log = self.require(node, "log", log, example);
                Verification::Hardware { log: log?.value }
            }
            "none" => Verification::None,
            _ => {
                self.choice(
                    kind,
                    "verification method",
                    &[("qemu", ()), ("hardware", ()), ("dtb", ()), ("none", ())],
                );
                return None;
            }
        };
        Some(Sp::new(v, kind.span, kind.text))
    }

    pub(super) fn topology(&mut self, node: &Node) -> Option<TopologyDecl> {
        self.shape(
            node,
            &Shape {
                props: &["sockets", "clusters", "cores"],
                children: &[],
                max_args: 0,
                args_help: "write `topology sockets=1 clusters=1 cores=4`",
            },
        );
        let get = |cx: &mut Self, name: &str| {
            let example = format!("{name}=1");
            let v = cx.prop_u32(node, name, &example);
            let v = cx.require(node, name, v, &example)?;
            if v.value == 0 {
                cx.errors.push(DecodeError::OutOfRange {
                    what: format!("topology `{name}`"),
                    text: v.text.clone(),
                    reason: "must be at least 1".to_owned(),
                    span: v.span,
                    help: format!("write `{name}=1` or more"),
                });
                return None;
            }
            Some(v)
        };
        let sockets = get(self, "sockets");
        let clusters = get(self, "clusters");
        let cores = get(self, "cores");
        Some(TopologyDecl {
            span: node.name_span,
            sockets: sockets?,
            clusters: clusters?,
            cores: cores?,
        })
    }

    pub(super) fn cpus(&mut self, node: &Node) -> Vec<CpuDecl> {
        self.shape(
            node,
            &Shape {
                props: &["core", "enable-method"],
                children: &["cpu", "cpu-range"],
                max_args: 0,
                args_help: "write `cpus core=\"arm,cortex-a53\" { cpu 0x0 ... }`",
            },
        );
        let core = self.prop_str(node, "core", "core=\"arm,cortex-a53\"");
        let method = self.enable_method(node);
        let mut out = Vec::new();
        for c in &node.children {
            if c.name == "cpu-range" {
                self.cpu_range(c, core.as_ref(), method.as_ref(), &mut out);
                continue;
            }
            if c.name != "cpu" {
                continue;
            }
            self.shape(
                c,
                &Shape {
                    props: &["socket", "cluster", "core", "enable-method", "release-addr"],
                    children: &[],
                    max_args: 1,
                    args_help: "write `cpu 0x100 socket=0 cluster=1`",
                },
            );
            let mpidr = self.arg_int(c, 0, "the MPIDR affinity", u64::MAX, "cpu 0x0");
            let default = |span| Sp::new(0u32, span, "");
            let socket = self
                .prop_u32(c, "socket", "socket=0")
                .unwrap_or(default(c.name_span));
            let cluster = self
                .prop_u32(c, "cluster", "cluster=0")
                .unwrap_or(default(c.name_span));
            let own_core = self.prop_str(c, "core", "core=\"arm,cortex-a53\"");
            let enable_method = self
                .enable_method(c)
                .or_else(|| method.clone())
                .unwrap_or_else(|| Sp::new(EnableMethodKind::Psci, c.name_span, ""));
            let release_addr = self.prop_int(c, "release-addr", u64::MAX, "release-addr=0xd8");
            let cpu_core = match (own_core, &core) {
                (Some(own), _) => Some(own),
                (None, Some(all)) => Some(all.clone()),
                (None, None) => {
                    if node.prop("core").is_none() && c.prop("core").is_none() {
                        self.errors.push(DecodeError::Missing {
                            node: "cpu".to_owned(),
                            what: "a core type".to_owned(),
                            span: c.name_span,
                            help: "add `core=\"arm,cortex-a53\"` to `cpus` (all CPUs) or to this `cpu`".to_owned(),
                        });
                    }
                    None
                }
            };
            if let (Some(mpidr), Some(core)) = (mpidr, cpu_core) {
                out.push(CpuDecl {
                    mpidr,
                    socket,
                    cluster,
                    core,
                    enable_method,
                    release_addr,
                });
            }
        }
        if node
            .children
            .iter()
            .all(|c| c.name != "cpu" && c.name != "cpu-range")
        {
            self.missing_node(node, "cpu", "cpu 0x0");
        }
        out
    }

    /// `cpu-range socket=S mpidr=BASE cores=N core-step=STEP cluster-step=STEP
    /// (clusters=N | CLUSTER...)`: a regular block of CPUs, written once. For each cluster
    /// index `c` (0..N, or the arguments in the order written) and each core `k` in 0..cores,
    /// one CPU with MPIDR `BASE + c * cluster-step + k * core-step`, `socket=S`,
    /// `cluster=c`, exactly as if written `cpu MPIDR socket=S cluster=c`.
    fn cpu_range(
        &mut self,
        node: &Node,
        core: Option<&Sp<String>>,
        method: Option<&Sp<EnableMethodKind>>,
        out: &mut Vec<CpuDecl>,
    ) {
        const EXAMPLE: &str = "cpu-range socket=0 mpidr=0x0 clusters=40 cluster-step=0x1_0000 cores=2 core-step=0x100";
        self.shape(
            node,
            &Shape {
                props: &[
                    "socket",
                    "mpidr",
                    "clusters",
                    "cluster-step",
                    "cores",
                    "core-step",
                    "core",
                    "enable-method",
                ],
                children: &[],
                max_args: MAX_RANGE_CPUS,
                args_help: "the arguments are cluster indices, at most one per CPU of the range",
            },
        );
        let socket =
            self.prop_u32(node, "socket", "socket=0")
                .unwrap_or(Sp::new(0u32, node.name_span, ""));
        let base = self.prop_int(node, "mpidr", u64::MAX, "mpidr=0x1_0000_0000");
        let base = self.require(node, "mpidr", base, "mpidr=0x0");
        let cores = self.prop_int(node, "cores", MAX_RANGE_CPUS as u64, "cores=2");
        let cores = self.require(node, "cores", cores, "cores=2");
        let core_step = self.prop_int(node, "core-step", u64::MAX, "core-step=0x100");
        let cluster_step = self.prop_int(node, "cluster-step", u64::MAX, "cluster-step=0x1_0000");
        let count = self.prop_int(node, "clusters", MAX_RANGE_CPUS as u64, "clusters=40");
        let own_core = self.prop_str(node, "core", "core=\"arm,neoverse-n1\"");
        let enable_method = self
            .enable_method(node)
            .or_else(|| method.cloned())
            .unwrap_or_else(|| Sp::new(EnableMethodKind::Psci, node.name_span, ""));
        // The clusters: `clusters=N` (0..N) or the arguments (in boot order), not both.
        let listed: Vec<Option<Sp<u64>>> = node
            .args
            .iter()
            .map(|a| {
                self.int_value(
                    a,
                    format!("cluster index of `{}`", node.name),
                    u64::from(u32::MAX),
                    "18",
                )
            })
            .collect();
        let clusters: Vec<Sp<u64>> = match (&count, listed.is_empty()) {
            (Some(n), true) => (0..n.value).map(|c| Sp::new(c, n.span, "")).collect(),
            (None, false) => listed.into_iter().flatten().collect(),
            (Some(n), false) => {
                self.errors.push(DecodeError::Missing {
                    node: node.name.clone(),
                    what: "one way of naming its clusters".to_owned(),
                    span: n.span,
                    help: "write `clusters=N` (clusters 0..N in order) or the cluster indices as arguments in boot order, not both".to_owned(),
                });
                return;
            }
            (None, true) => {
                if node.prop("clusters").is_none() {
                    self.errors.push(DecodeError::Missing {
                        node: node.name.clone(),
                        what: "its clusters".to_owned(),
                        span: node.name_span,
                        help: format!("write `clusters=N` (clusters 0..N in order) or the cluster indices as arguments in boot order, e.g. `{EXAMPLE}`"),
                    });
                }
                return;
            }
        };
        let (Some(base), Some(cores)) = (base, cores) else {
            return;
        };
        let cpu_core = match (own_core, core) {
            (Some(own), _) => own,
            (None, Some(all)) => all.clone(),
            (None, None) => {
                self.errors.push(DecodeError::Missing {
                    node: "cpu-range".to_owned(),
                    what: "a core type".to_owned(),
                    span: node.name_span,
                    help:
                        "add `core=\"arm,neoverse-n1\"` to `cpus` (all CPUs) or to this `cpu-range`"
                            .to_owned(),
                });
                return;
            }
        };
        if cores.value == 0 || clusters.is_empty() {
            let (span, text) = if cores.value == 0 {
                (cores.span, cores.text.clone())
            } else {
                (
                    count.as_ref().map_or(node.name_span, |c| c.span),
                    "0".to_owned(),
                )
            };
            self.errors.push(DecodeError::OutOfRange {
                what: format!("the size of `{}`", node.name),
                text,
                reason: "a range has at least one cluster of at least one core".to_owned(),
                span,
                help: format!("write at least one cluster and one core, e.g. `{EXAMPLE}`"),
            });
            return;
        }
        let total = clusters.len() as u64 * cores.value;
        if total > MAX_RANGE_CPUS as u64 {
            self.errors.push(DecodeError::OutOfRange {
                what: format!("the number of CPUs of `{}`", node.name),
                text: total.to_string(),
                reason: format!("a range makes at most {MAX_RANGE_CPUS} CPUs"),
                span: node.name_span,
                help: "split it, e.g. one `cpu-range` per socket".to_owned(),
            });
            return;
        }
        // Many ranges together are bounded too (a hostile file could repeat one).
        if out.len() as u64 + total > MAX_BOARD_CPUS as u64 {
            self.errors.push(DecodeError::OutOfRange {
                what: "the number of CPUs of `cpus`".to_owned(),
                text: (out.len() as u64 + total).to_string(),
                reason: format!("a board has at most {MAX_BOARD_CPUS} CPUs"),
                span: node.name_span,
                help: "check the `cpu-range`s: together they make more CPUs than any board has"
                    .to_owned(),
            });
            return;
        }
        // A step is required as soon as it is used (more than one core, more than one
        // cluster index other than 0).
        let step = |cx: &mut Self, v: &Option<Sp<u64>>, name: &str, example: &str, needed: bool| {
            match v {
                Some(s) => Some(s.value),
                None if !needed => Some(0),
                None => {
                    if node.prop(name).is_none() {
                        cx.errors.push(DecodeError::Missing {
                            node: node.name.clone(),
                            what: format!("property `{name}`"),
                            span: node.name_span,
                            help: format!("add `{example}`: how much the MPIDR grows from one to the next (0x100 is Aff1, 0x1_0000 Aff2)"),
                        });
                    }
                    None
                }
            }
        };
        let core_step = step(
            self,
            &core_step,
            "core-step",
            "core-step=0x100",
            cores.value > 1,
        );
        let cluster_step = step(
            self,
            &cluster_step,
            "cluster-step",
            "cluster-step=0x1_0000",
            clusters.iter().any(|c| c.value != 0),
        );
        let (Some(core_step), Some(cluster_step)) = (core_step, cluster_step) else {
            return;
        };
        // Made in full before any is kept: a range that fails is left out whole.
        let mut made = Vec::with_capacity(clusters.len() * cores.value as usize);
        for c in &clusters {
            for k in 0..cores.value {
                let mpidr = c
                    .value
                    .checked_mul(cluster_step)
                    .and_then(|v| v.checked_add(k.checked_mul(core_step)?))
                    .and_then(|v| v.checked_add(base.value));
                let Some(mpidr) = mpidr else {
                    self.errors.push(DecodeError::OutOfRange {
                        what: format!("the MPIDR of cluster {} core {k} of `{}`", c.value, node.name),
                        text: base.text.clone(),
                        reason: "mpidr + cluster * cluster-step + core * core-step does not fit in 64 bits".to_owned(),
                        span: base.span,
                        help: "check `mpidr=`, `cluster-step=` and `core-step=`".to_owned(),
                    });
                    return;
                };
                let span = if c.text.is_empty() { base.span } else { c.span };
                made.push(CpuDecl {
                    mpidr: Sp::new(mpidr, span, hex(mpidr)),
                    socket: socket.clone(),
                    cluster: Sp::new(
                        u32::try_from(c.value).unwrap_or(u32::MAX),
                        c.span,
                        c.text.clone(),
                    ),
                    core: cpu_core.clone(),
                    enable_method: enable_method.clone(),
                    release_addr: None,
                });
            }
        }
        out.append(&mut made);
    }

    /// `enable-method="psci"|"spin-table"` of `cpus` or a `cpu`.
    fn enable_method(&mut self, node: &Node) -> Option<Sp<EnableMethodKind>> {
        let v = self.prop_str(node, "enable-method", "enable-method=\"spin-table\"")?;
        self.choice(
            v,
            "enable-method",
            &[
                ("psci", EnableMethodKind::Psci),
                ("spin-table", EnableMethodKind::SpinTable),
            ],
        )
    }

    pub(super) fn memory(&mut self, node: &Node) -> Option<MemoryDecl> {
        const FORMS: &str = "write `memory \"dram0\" 0x4000_0000 size=0x8000_0000 node=0`, or, for RAM the firmware describes at boot, `memory \"dram0\" 0x4000_0000 from=\"firmware\"` (base known) or `memory \"dram0\" from=\"firmware\"`";
        self.shape(
            node,
            &Shape {
                props: &["size", "node", "from"],
                children: &[],
                max_args: 2,
                args_help: FORMS,
            },
        );
        let name = self.arg_str(
            node,
            0,
            "the name",
            "memory \"dram0\" 0x4000_0000 size=0x8000_0000",
        );
        let from = self
            .prop_str(node, "from", "from=\"firmware\"")
            .and_then(|f| self.choice(f, "memory source `from`", &[("firmware", ())]));
        let from_written = node.prop("from").is_some();
        let base = if from_written && node.args.len() < 2 {
            None
        } else {
            Some(self.arg_int(
                node,
                1,
                "the base address",
                u64::MAX,
                "memory \"dram0\" 0x4000_0000 size=0x8000_0000",
            )?)
        };
        let size = self.prop_int(node, "size", u64::MAX, "size=0x8000_0000");
        if from_written {
            if let (Some(p), Some(f)) = (node.prop("size"), &from) {
                self.errors.push(DecodeError::MemoryForm {
                    problem: format!(
                        "memory \"{}\" gives both `size=` and `from=\"firmware\"`",
                        name.as_ref().map_or("", |n| n.value.as_str())
                    ),
                    span: p.value.span,
                    label: "a size written here".to_owned(),
                    help: format!(
                        "`from=\"firmware\"` says the firmware gives the size at boot: remove `size=`, or remove `from=\"firmware\"` (at {}) if the size is known",
                        f.text
                    ),
                });
                return None;
            }
        } else {
            self.require(
                node,
                "size",
                size.clone(),
                "size=0x8000_0000 (or from=\"firmware\" when the firmware gives the size at boot)",
            );
        }
        let numa = self
            .prop_u32(node, "node", "node=0")
            .unwrap_or(Sp::new(0, node.name_span, ""));
        let from = match (from_written, from) {
            (false, _) => None,
            (true, Some(f)) => Some(f.span),
            (true, None) => return None,
        };
        if from.is_none() && size.is_none() {
            return None;
        }
        Some(MemoryDecl {
            name: name?,
            base,
            size,
            from_firmware: from,
            node: numa,
        })
    }

    pub(super) fn hypervisor(&mut self, node: &Node) -> Option<HypervisorDecl> {
        self.shape(
            node,
            &Shape {
                props: &["load", "size"],
                children: &[],
                max_args: 0,
                args_help: "write `hypervisor load=0x4020_0000 size=0x0200_0000`",
            },
        );
        // Optional here: `check` requires it unless the firmware gives a RAM base.
        let load = self.prop_int(node, "load", u64::MAX, "load=0x4020_0000");
        if node.prop("load").is_some() && load.is_none() {
            return None;
        }
        let size = self.prop_int(node, "size", u64::MAX, "size=0x0200_0000");
        let size = self.require(node, "size", size, "size=0x0200_0000");
        Some(HypervisorDecl {
            span: node.name_span,
            load,
            size: size?,
        })
    }

    pub(super) fn quirk(&mut self, node: &Node) -> Option<QuirkDecl> {
        self.shape(
            node,
            &Shape {
                props: &["matches"],
                children: &[],
                max_args: 1,
                args_help: "write `quirk \"NAME\" matches=\"compatible-or-bus-id\"`",
            },
        );
        let name = self.arg_str(
            node,
            0,
            "the name",
            "quirk \"rtl8153-usb-nic\" matches=\"usb:0bda:8153\"",
        );
        let matches = self.prop_str(node, "matches", "matches=\"usb:0bda:8153\"");
        let matches = self.require(node, "matches", matches, "matches=\"usb:0bda:8153\"");
        Some(QuirkDecl {
            name: name?,
            matches: matches?,
        })
    }
}
