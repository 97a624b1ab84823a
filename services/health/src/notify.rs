//! Delivery of health's outbox to playbooks: health changes, and maturity
//! levels' changes as account events.

use tenure_platform::client::TracedChannel;
use tenure_platform::config::PeerConfig;
use tenure_platform::outbox::{Deliver, Delivery, DispatchConfig, Dispatcher};
use tenure_proto::playbooks::v1::playbooks_service_client::PlaybooksServiceClient;
use tenure_proto::playbooks::v1::{NotifyAccountEventsRequest, NotifyHealthChangedRequest};

use crate::SCHEMA;
use crate::maturity::TOPIC_ACCOUNT_EVENTS;

/// Band changes and score drops: playbooks may start on them.
pub const TOPIC_HEALTH_CHANGED: &str = "playbooks.health_changed";

pub struct Notifier {
    playbooks: PlaybooksServiceClient<TracedChannel>,
}

impl Deliver for Notifier {
    fn topics(&self) -> &'static [&'static str] {
        &[TOPIC_HEALTH_CHANGED, TOPIC_ACCOUNT_EVENTS]
    }

    async fn deliver(&self, delivery: &Delivery) -> Result<(), tonic::Status> {
        match delivery.topic.as_str() {
            TOPIC_HEALTH_CHANGED => {
                let mut request: NotifyHealthChangedRequest = delivery.decode()?;
                request.request_id = delivery.message_id.to_string();
                self.playbooks
                    .clone()
                    .notify_health_changed(request)
                    .await?;
                Ok(())
            }
            TOPIC_ACCOUNT_EVENTS => {
                let mut request: NotifyAccountEventsRequest = delivery.decode()?;
                request.request_id = delivery.message_id.to_string();
                self.playbooks
                    .clone()
                    .notify_account_events(request)
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
