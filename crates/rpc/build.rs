//! Generates the gRPC code from `proto/` with a pure-Rust protobuf compiler,
//! so building needs no `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = "../../proto";
    let files = [
        "raft.proto",
        "metadata.proto",
        "controller.proto",
        "replication.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={proto_dir}/{f}");
    }
    let descriptors = protox::compile(files, [proto_dir])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Replicated record batches stay `Bytes` from the wire to the log.
        .bytes(".kraftwerk.replication")
        // Metadata maps keep kraftwerk-metadata's order (`BTreeMap`).
        .btree_map(".kraftwerk.metadata")
        .compile_fds(descriptors)?;
    Ok(())
}
