//! Deployment binary of the renewals service.

fn main() -> anyhow::Result<()> {
    tenure_platform::service::run_binary(&tenure_renewals::SPEC)
}
