//! Deployment binary of the ingestion service.

fn main() -> anyhow::Result<()> {
    tenure_platform::service::run_binary(&tenure_ingestion::SPEC)
}
