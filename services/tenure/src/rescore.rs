//! `tenure recompute`: rescores every account now (a nightly job's
//! command; changed accounts are rescored continuously anyway).

use tenure_platform::auth::Credentials;
use tenure_platform::client::channel;
use tenure_proto::health::v1::RecomputeHealthRequest;
use tenure_proto::health::v1::health_service_client::HealthServiceClient;

/// Asks health to rescore every account; returns how many it scored.
pub async fn recompute_all(health_url: &str, credentials: &Credentials) -> anyhow::Result<i32> {
    let mut health = HealthServiceClient::new(channel(health_url, credentials)?);
    let answer = health
        .recompute_health(RecomputeHealthRequest {
            account_ids: Vec::new(),
            all_accounts: true,
        })
        .await?
        .into_inner();
    Ok(answer.scored_count)
}
