//! Deployment binary of the playbooks service.

fn main() -> anyhow::Result<()> {
    tenure_platform::service::run_binary(&tenure_playbooks::SPEC)
}
