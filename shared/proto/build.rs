//! Compiles every `.proto` under `proto/` with the system `protoc`
//! (Debian package `protobuf-compiler`; set `PROTOC` to use another) and
//! writes a file descriptor set for gRPC server reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let protos = [
        "tenure/common/v1/money.proto",
        "tenure/common/v1/date.proto",
        "tenure/ingestion/v1/ingestion.proto",
        "tenure/health/v1/health.proto",
        "tenure/renewals/v1/renewals.proto",
        "tenure/playbooks/v1/playbooks.proto",
    ]
    .map(|p| root.join(p));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    println!("cargo:rerun-if-changed={}", root.display());

    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("tenure_descriptor.bin"))
        // Deterministic encoding: request fingerprints for idempotency keys
        // must not depend on hash-map iteration order.
        .btree_map(".")
        // Every message names itself (`prost::Name`), so the codec can find
        // its descriptor when checking strings.
        .codec_path("crate::codec::TenureCodec")
        .compile_with_config(config, &protos, &[root])?;
    Ok(())
}
