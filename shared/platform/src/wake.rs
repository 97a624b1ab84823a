//! Wake-ups from Postgres instead of polling. A statement that adds work
//! (an outbox row, a queued account, a trigger event, a due step) fires a
//! statement trigger that NOTIFYs the channel `<schema>_<what>`; Postgres
//! sends it when the writing transaction commits, and never for one rolled
//! back. Every process of the service listens on its channels
//! ([`Wakeups::listen`]) and wakes the loops waiting on them at once, so work
//! written by any replica is picked up in milliseconds. Loops still look on
//! a slow timer ([`Wakeups::fallback`]) for a notice lost while the listening
//! connection was being re-established.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How often an idle loop looks without being woken (`IDLE_POLL`).
pub const DEFAULT_FALLBACK: Duration = Duration::from_secs(10);

/// The wake-up channels of one service.
#[derive(Clone, Debug)]
pub struct Wakeups {
    schema: &'static str,
    channels: Arc<HashMap<&'static str, Arc<Notify>>>,
    /// How long an idle loop waits when nothing wakes it.
    pub fallback: Duration,
}

impl Wakeups {
    /// Channels `what` of `schema`, with the fallback from `IDLE_POLL`
    /// (default 10 s).
    pub fn new(
        schema: &'static str,
        what: &[&'static str],
        settings: &crate::config::Settings,
    ) -> anyhow::Result<Self> {
        let fallback = match settings.get("IDLE_POLL") {
            Some(text) => humantime::parse_duration(&text)
                .map_err(|e| anyhow::anyhow!("IDLE_POLL={text:?}: {e}"))?,
            None => DEFAULT_FALLBACK,
        };
        anyhow::ensure!(
            fallback >= Duration::from_millis(10),
            "IDLE_POLL must be at least 10ms"
        );
        Ok(Self {
            schema,
            channels: Arc::new(what.iter().map(|w| (*w, Arc::new(Notify::new()))).collect()),
            fallback,
        })
    }

    /// The notice loops waiting for `what` wait on. Panics on a channel the
    /// service did not declare in [`Wakeups::new`] (a programming error).
    pub fn channel(&self, what: &str) -> Arc<Notify> {
        match self.channels.get(what) {
            Some(notify) => notify.clone(),
            None => panic!("no wake-up channel {what:?} in {}", self.schema),
        }
    }

    /// Wakes every loop waiting for `what`. A loop makes its `notified()`
    /// future before it looks for work, so a notice that arrives while it
    /// looks wakes it too.
    pub fn wake(&self, what: &str) {
        if let Some(notify) = self.channels.get(what) {
            notify.notify_waiters();
        }
    }

    fn wake_all(&self) {
        for what in self.channels.keys() {
            self.wake(what);
        }
    }

    /// Listens on the service's channels until `cancel`, reconnecting after
    /// a failure; every reconnection wakes every loop, since notices sent
    /// meanwhile are lost.
    pub async fn listen(self, pool: PgPool, cancel: CancellationToken) {
        // A connection of its own, not one of the pool's: the pool is sized
        // for the service's work, and a listener holds its connection.
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect_lazy_with((*pool.connect_options()).clone());
        let names: HashMap<String, &'static str> = self
            .channels
            .keys()
            .map(|what| (channel_name(self.schema, what), *what))
            .collect();
        let mut pause = Duration::from_millis(100);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                error = self.session(&pool, &names) => {
                    tracing::warn!(schema = self.schema, %error, "listening for wake-ups failed; polling until it is back");
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(10));
        }
    }

    /// One listening connection, until it fails.
    async fn session(&self, pool: &PgPool, names: &HashMap<String, &'static str>) -> sqlx::Error {
        let mut listener = match PgListener::connect_with(pool).await {
            Ok(listener) => listener,
            Err(error) => return error,
        };
        if let Err(error) = listener.listen_all(names.keys().map(String::as_str)).await {
            return error;
        }
        // Anything written before this point was not heard.
        self.wake_all();
        loop {
            match listener.try_recv().await {
                Ok(Some(notice)) => {
                    if let Some(what) = names.get(notice.channel()) {
                        self.wake(what);
                    }
                }
                // The connection was lost and made again: notices were lost.
                Ok(None) => self.wake_all(),
                Err(error) => return error,
            }
        }
    }
}

/// The Postgres channel of `what` in `schema`, as the statement triggers
/// name it (`{schema}.wake('<what>')`).
pub fn channel_name(schema: &str, what: &str) -> String {
    format!("{schema}_{what}")
}
