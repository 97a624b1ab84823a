//! `tenure status`: asks every service's grpc.health.v1 endpoint.

use std::time::{Duration, Instant};

use tenure_platform::config::PeerConfig;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// One service's answer.
#[derive(Debug, Clone)]
pub struct ServiceStatus {
    pub name: &'static str,
    pub url: String,
    /// `SERVING`, `NOT_SERVING`, or why the check failed.
    pub status: String,
    pub latency: Option<Duration>,
}

impl ServiceStatus {
    pub fn is_serving(&self) -> bool {
        self.status == "SERVING"
    }
}

/// Checks the four services at `peers`.
pub async fn check_all(peers: &PeerConfig) -> Vec<ServiceStatus> {
    let targets = [
        (
            "ingestion",
            "tenure.ingestion.v1.IngestionService",
            &peers.ingestion_url,
        ),
        (
            "health",
            "tenure.health.v1.HealthService",
            &peers.health_url,
        ),
        (
            "renewals",
            "tenure.renewals.v1.RenewalsService",
            &peers.renewals_url,
        ),
        (
            "playbooks",
            "tenure.playbooks.v1.PlaybooksService",
            &peers.playbooks_url,
        ),
    ];
    let mut statuses = Vec::with_capacity(targets.len());
    for (name, service, url) in targets {
        let started = Instant::now();
        let status = match check(url, service).await {
            Ok(status) => status,
            Err(error) => error,
        };
        let latency = (status == "SERVING" || status == "NOT_SERVING").then(|| started.elapsed());
        statuses.push(ServiceStatus {
            name,
            url: url.clone(),
            status,
            latency,
        });
    }
    statuses
}

async fn check(url: &str, service: &str) -> Result<String, String> {
    let channel =
        tenure_platform::client::channel(url, &Default::default()).map_err(|e| e.to_string())?;
    let mut client = HealthClient::new(channel);
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: service.to_owned(),
    });
    request.set_timeout(Duration::from_secs(3));
    match client.check(request).await {
        Ok(response) => Ok(response.into_inner().status().as_str_name().to_owned()),
        Err(status) => Err(format!("unreachable ({:?})", status.code())),
    }
}

/// A table for the terminal.
pub fn render(statuses: &[ServiceStatus]) -> String {
    let mut out = format!(
        "{:<10} {:<28} {:<24} {:>9}\n",
        "SERVICE", "ADDRESS", "STATUS", "LATENCY"
    );
    for s in statuses {
        let latency = s
            .latency
            .map(|l| format!("{:.1} ms", l.as_secs_f64() * 1000.0))
            .unwrap_or_default();
        out.push_str(&format!(
            "{:<10} {:<28} {:<24} {:>9}\n",
            s.name, s.url, s.status, latency
        ));
    }
    out
}
