//! `cpu-range` makes exactly the CPUs that the same board written one `cpu` per line has.

fn board(topology: &str, cpus: &str) -> platform_dsl::model::Board {
    let text = std::fs::read_to_string(
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/valid/minimal.kdl"),
    )
    .expect("read minimal.kdl")
    .replace("    topology sockets=1 clusters=1 cores=2\n", topology)
    .replace("        cpu 0x0\n        cpu 0x1\n", cpus);
    let mut boards = platform_dsl::load_str("x.kdl", &text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(boards.len(), 1);
    let b = boards.remove(0);
    // Lines differ between the two spellings; everything else must not.
    platform_dsl::model::Board {
        source: Default::default(),
        ..b
    }
}

#[test]
fn clusters_in_order_equal_the_cpus_written_out() {
    let topology = "    topology sockets=2 clusters=3 cores=2\n";
    let by_hand = board(
        topology,
        "        cpu 0x0 cluster=0; cpu 0x100 cluster=0\n\
         cpu 0x1_0000 cluster=1; cpu 0x1_0100 cluster=1\n\
         cpu 0x2_0000 cluster=2; cpu 0x2_0100 cluster=2\n\
         cpu 0x1_0000_0000 socket=1 cluster=0; cpu 0x1_0000_0100 socket=1 cluster=0\n\
         cpu 0x1_0001_0000 socket=1 cluster=1; cpu 0x1_0001_0100 socket=1 cluster=1\n\
         cpu 0x1_0002_0000 socket=1 cluster=2 core=\"arm,cortex-a72\"\n\
         cpu 0x1_0002_0100 socket=1 cluster=2 core=\"arm,cortex-a72\"\n",
    );
    let ranged = board(
        topology,
        "        cpu-range mpidr=0x0 clusters=3 cluster-step=0x1_0000 cores=2 core-step=0x100\n\
         cpu-range socket=1 mpidr=0x1_0000_0000 clusters=2 cluster-step=0x1_0000 cores=2 core-step=0x100\n\
         cpu-range socket=1 mpidr=0x1_0000_0000 cluster-step=0x1_0000 cores=2 core-step=0x100 core=\"arm,cortex-a72\" 2\n",
    );
    assert_eq!(ranged.cpus.len(), 12);
    assert_eq!(by_hand, ranged);
}

#[test]
fn listed_clusters_keep_their_order() {
    let topology = "    topology sockets=1 clusters=4 cores=1\n";
    let by_hand = board(
        topology,
        "        cpu 0x2_0000 cluster=2\n        cpu 0x0 cluster=0\n        cpu 0x3_0000 cluster=3\n        cpu 0x1_0000 cluster=1\n",
    );
    let ranged = board(
        topology,
        "        cpu-range mpidr=0x0 cluster-step=0x1_0000 cores=1 2 0 3 1\n",
    );
    assert_eq!(
        ranged.cpus[0].mpidr, 0x2_0000,
        "the first listed is the boot CPU"
    );
    assert_eq!(by_hand, ranged);
}
