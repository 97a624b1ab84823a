//! Delivery of renewals' outbox to playbooks.

use tenure_platform::client::TracedChannel;
use tenure_platform::config::PeerConfig;
use tenure_platform::outbox::{Deliver, Delivery, DispatchConfig, Dispatcher};
use tenure_proto::playbooks::v1::NotifyRenewalApproachingRequest;
use tenure_proto::playbooks::v1::playbooks_service_client::PlaybooksServiceClient;

use crate::SCHEMA;

/// Renewals approaching a threshold: playbooks may start on them.
pub const TOPIC_RENEWAL_APPROACHING: &str = "playbooks.renewal_approaching";

pub struct Notifier {
    playbooks: PlaybooksServiceClient<TracedChannel>,
}

impl Deliver for Notifier {
    fn topics(&self) -> &'static [&'static str] {
        &[TOPIC_RENEWAL_APPROACHING]
    }

    async fn deliver(&self, delivery: &Delivery) -> Result<(), tonic::Status> {
        match delivery.topic.as_str() {
            TOPIC_RENEWAL_APPROACHING => {
                let mut request: NotifyRenewalApproachingRequest = delivery.decode()?;
                request.request_id = delivery.message_id.to_string();
                self.playbooks
                    .clone()
                    .notify_renewal_approaching(request)
                    .await?;
                Ok(())
            }
            other => Err(tonic::Status::unimplemented(format!(
                "no receiver for topic {other}"
            ))),
        }
    }
}

pub fn dispatcher(
    pool: sqlx::PgPool,
    peers: &PeerConfig,
    settings: &tenure_platform::config::Settings,
    wakeups: &tenure_platform::wake::Wakeups,
) -> anyhow::Result<Dispatcher<Notifier>> {
    let notifier = Notifier {
        playbooks: PlaybooksServiceClient::new(peers.channel(&peers.playbooks_url)?),
    };
    Ok(Dispatcher::new(
        pool,
        SCHEMA,
        notifier,
        DispatchConfig::from_settings(settings)?,
        wakeups,
    ))
}
