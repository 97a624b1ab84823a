//! Deployment binary of the health service.

fn main() -> anyhow::Result<()> {
    tenure_platform::service::run_binary(&tenure_health::SPEC)
}
