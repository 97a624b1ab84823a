//! Delivery of ingestion's outbox to the services that react to its changes.

use tenure_platform::client::TracedChannel;
use tenure_platform::config::PeerConfig;
use tenure_platform::outbox::{Deliver, Delivery, DispatchConfig, Dispatcher};
use tenure_proto::health::v1::NotifyAccountsChangedRequest;
use tenure_proto::health::v1::health_service_client::HealthServiceClient;
use tenure_proto::ingestion::v1::EraseAccountRequest;
use tenure_proto::playbooks::v1::playbooks_service_client::PlaybooksServiceClient;
use tenure_proto::playbooks::v1::{NotifyAccountEventsRequest, NotifyContactErasedRequest};
use tenure_proto::renewals::v1::NotifySubscriptionsChangedRequest;
use tenure_proto::renewals::v1::renewals_service_client::RenewalsServiceClient;

use crate::SCHEMA;

/// Accounts changed: health rescores them.
pub const TOPIC_ACCOUNTS_CHANGED: &str = "health.accounts_changed";
/// Events playbooks may start on.
pub const TOPIC_ACCOUNT_EVENTS: &str = "playbooks.account_events";

/// A contact was erased: playbooks replaces what it keeps of the person.
pub const TOPIC_CONTACT_ERASED: &str = "playbooks.contact_erased";

/// An account was erased: each service deletes its rows of it.
pub const TOPIC_ACCOUNT_ERASED: [&str; 3] = [
    "health.account_erased",
    "renewals.account_erased",
    "playbooks.account_erased",
];

/// Subscriptions changed: renewals refreshes its pipeline.
pub const TOPIC_SUBSCRIPTIONS_CHANGED: &str = "renewals.subscriptions_changed";

pub struct Notifier {
    health: HealthServiceClient<TracedChannel>,
    renewals: RenewalsServiceClient<TracedChannel>,
    playbooks: PlaybooksServiceClient<TracedChannel>,
}

/// Every topic ingestion enqueues.
const TOPICS: &[&str] = &[
    TOPIC_ACCOUNTS_CHANGED,
    TOPIC_SUBSCRIPTIONS_CHANGED,
    TOPIC_ACCOUNT_EVENTS,
    TOPIC_CONTACT_ERASED,
    TOPIC_ACCOUNT_ERASED[0],
    TOPIC_ACCOUNT_ERASED[1],
    TOPIC_ACCOUNT_ERASED[2],
];

impl Deliver for Notifier {
    fn topics(&self) -> &'static [&'static str] {
        TOPICS
    }

    async fn deliver(&self, delivery: &Delivery) -> Result<(), tonic::Status> {
        match delivery.topic.as_str() {
            TOPIC_ACCOUNTS_CHANGED => {
                let mut request: NotifyAccountsChangedRequest = delivery.decode()?;
                request.request_id = delivery.message_id.to_string();
                self.health.clone().notify_accounts_changed(request).await?;
                Ok(())
            }
            TOPIC_SUBSCRIPTIONS_CHANGED => {
                let mut request: NotifySubscriptionsChangedRequest = delivery.decode()?;
                request.request_id = delivery.message_id.to_string();
                self.renewals
                    .clone()
                    .notify_subscriptions_changed(request)
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
            topic if TOPIC_ACCOUNT_ERASED.contains(&topic) => {
                let erased: EraseAccountRequest = delivery.decode()?;
                let request_id = delivery.message_id.to_string();
                let account_id = erased.account_id;
                match topic {
                    "health.account_erased" => {
                        let request = tenure_proto::health::v1::NotifyAccountErasedRequest {
                            request_id,
                            account_id,
                        };
                        self.health.clone().notify_account_erased(request).await?;
                    }
                    "renewals.account_erased" => {
                        let request = tenure_proto::renewals::v1::NotifyAccountErasedRequest {
                            request_id,
                            account_id,
                        };
                        self.renewals.clone().notify_account_erased(request).await?;
                    }
                    _ => {
                        let request = tenure_proto::playbooks::v1::NotifyAccountErasedRequest {
                            request_id,
                            account_id,
                        };
                        self.playbooks
                            .clone()
                            .notify_account_erased(request)
                            .await?;
                    }
                }
                Ok(())
            }
            TOPIC_CONTACT_ERASED => {
                let mut request: NotifyContactErasedRequest = delivery.decode()?;
                request.request_id = delivery.message_id.to_string();
                self.playbooks
                    .clone()
                    .notify_contact_erased(request)
                    .await?;
                Ok(())
            }
            other => Err(tonic::Status::unimplemented(format!(
                "no receiver for topic {other}"
            ))),
        }
    }
}

/// The dispatcher of ingestion's outbox.
pub fn dispatcher(
    pool: sqlx::PgPool,
    peers: &PeerConfig,
    settings: &tenure_platform::config::Settings,
    wakeups: &tenure_platform::wake::Wakeups,
) -> anyhow::Result<Dispatcher<Notifier>> {
    let notifier = Notifier {
        health: HealthServiceClient::new(peers.channel(&peers.health_url)?),
        renewals: RenewalsServiceClient::new(peers.channel(&peers.renewals_url)?),
        playbooks: PlaybooksServiceClient::new(peers.channel(&peers.playbooks_url)?),
    };
    Ok(Dispatcher::new(
        pool,
        SCHEMA,
        notifier,
        DispatchConfig {
            forget_on_delivery: &[
                TOPIC_CONTACT_ERASED,
                TOPIC_ACCOUNT_ERASED[0],
                TOPIC_ACCOUNT_ERASED[1],
                TOPIC_ACCOUNT_ERASED[2],
            ],
            ..DispatchConfig::from_settings(settings)?
        },
        wakeups,
    ))
}
