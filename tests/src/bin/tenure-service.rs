//! One Tenure service as a process of its own, named by `TENURE_SERVICE`
//! (`ingestion`, `health`, `renewals`, `playbooks`), configured like the
//! service's deployment binary: what the fault and load tests start,
//! SIGKILL and start again.

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let name = std::env::var("TENURE_SERVICE").context("TENURE_SERVICE names no service")?;
    let spec = tenure::stack::SERVICES
        .iter()
        .find(|spec| spec.name == name)
        .with_context(|| format!("no service named {name:?}"))?;
    tenure_platform::service::run_binary(spec)
}
