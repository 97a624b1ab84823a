//! Compiles every `.proto` under `proto/` with the system `protoc`
//! (Debian package `protobuf-compiler`; set `PROTOC` to use another) and
//! writes a file descriptor set for gRPC server reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let protos = [
        "tenure/common/v1/money.proto",
        "tenure/common/v1/date.proto",
        "tenure/common/v1/advocacy.proto",
        "tenure/ingestion/v1/advocacy.proto",
        "tenure/ingestion/v1/benchmarks.proto",
        "tenure/ingestion/v1/plans.proto",
        "tenure/ingestion/v1/ingestion.proto",
        "tenure/health/v1/maturity.proto",
        "tenure/health/v1/models.proto",
        "tenure/health/v1/prospects.proto",
        "tenure/health/v1/health.proto",
        "tenure/renewals/v1/coverage.proto",
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
    idempotent_requests(&out_dir)?;
    Ok(())
}

/// Writes `idempotent.rs`: [`Idempotent`] for every top-level message with
/// a string field `request_id` (the writes a retry must not apply twice).
fn idempotent_requests(out_dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    use heck::ToUpperCamelCase as _;
    use prost::Message as _;
    let bytes = std::fs::read(out_dir.join("tenure_descriptor.bin"))?;
    let set = prost_types::FileDescriptorSet::decode(bytes.as_slice())?;
    let mut code = String::new();
    for file in &set.file {
        let Some(module) = file.package().strip_prefix("tenure.") else {
            continue;
        };
        let module = module.replace('.', "::");
        for message in &file.message_type {
            let keyed = message.field.iter().any(|f| {
                f.name() == "request_id"
                    && f.r#type() == prost_types::field_descriptor_proto::Type::String
            });
            if keyed {
                let name = message.name().to_upper_camel_case();
                code.push_str(&format!(
                    "impl crate::Idempotent for crate::{module}::{name} {{\n    \
                     fn request_id(&self) -> &str {{\n        &self.request_id\n    }}\n}}\n"
                ));
            }
        }
    }
    std::fs::write(out_dir.join("idempotent.rs"), code)?;
    Ok(())
}
