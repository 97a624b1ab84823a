//! Clients for calling other Tenure services: lazily connected channels that
//! carry the trace context of the calling span and the caller's API key.

use std::time::Duration;

use anyhow::Context as _;
use tonic::transport::{Channel, Endpoint};
use tower_layer::Layer as _;

use crate::auth::{Authorize, Credentials};
use crate::trace::{ClientTrace, ClientTraceLayer};

/// A channel whose every call gets an `rpc.client` span, a `traceparent`,
/// when the process has one its API key, and when it was given one a
/// default deadline for unary calls.
pub type TracedChannel = ClientTrace<DefaultDeadline<Authorize<Channel>>>;

/// A channel to `url` (e.g. `http://127.0.0.1:50051`) that connects on first
/// use and reconnects after failures, calling with `credentials`. Calls
/// have no deadline but the one each sets: for operators' tools.
pub fn channel(url: &str, credentials: &Credentials) -> anyhow::Result<TracedChannel> {
    channel_with_deadline(url, credentials, None)
}

/// As [`channel`], with `deadline` for every unary call that sets none
/// (calls from one service to another). Result streams (signals of every
/// account) are left to their callers.
pub fn channel_with_deadline(
    url: &str,
    credentials: &Credentials,
    deadline: Option<Duration>,
) -> anyhow::Result<TracedChannel> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("invalid service URL {url:?}"))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30));
    let authorized = Authorize::new(endpoint.connect_lazy(), credentials);
    Ok(ClientTraceLayer.layer(DefaultDeadline {
        inner: authorized,
        deadline,
    }))
}

/// Gives each unary call that sets no `grpc-timeout` the deadline it was
/// made with: the header tells the server how long the caller waits, and
/// the call ends with DEADLINE_EXCEEDED when no answer has come by then,
/// connecting included.
#[derive(Clone, Debug)]
pub struct DefaultDeadline<S> {
    inner: S,
    deadline: Option<Duration>,
}

impl<S, B> tower_service::Service<http::Request<B>> for DefaultDeadline<S>
where
    S: tower_service::Service<http::Request<B>>,
    S::Error: Into<tower::BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = tower::BoxError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<S::Response, tower::BoxError>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let deadline = self.deadline.filter(|_| {
            !request.headers().contains_key(GRPC_TIMEOUT)
                && !tenure_proto::is_streaming(request.uri().path())
        });
        if let Some(deadline) = deadline {
            // At most eight digits, in milliseconds.
            let millis = deadline.as_millis().min(99_999_999);
            if let Ok(value) = http::HeaderValue::from_str(&format!("{millis}m")) {
                request.headers_mut().insert(GRPC_TIMEOUT, value);
            }
        }
        let call = self.inner.call(request);
        Box::pin(async move {
            let answer = match deadline {
                None => call.await,
                Some(deadline) => match tokio::time::timeout(deadline, call).await {
                    Ok(answer) => answer,
                    Err(_) => return Err(deadline_exceeded()),
                },
            };
            answer.map_err(|error| {
                let error: tower::BoxError = error.into();
                // tonic's transport ends a call past its `grpc-timeout` as
                // CANCELLED; the caller's deadline passed.
                let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&*error);
                while let Some(current) = cause {
                    if current.is::<tonic::TimeoutExpired>() {
                        return deadline_exceeded();
                    }
                    cause = current.source();
                }
                error
            })
        })
    }
}

fn deadline_exceeded() -> tower::BoxError {
    Box::new(tonic::Status::deadline_exceeded(
        "no answer before the call's deadline",
    ))
}

const GRPC_TIMEOUT: &str = "grpc-timeout";

/// Calls `call` until it answers with anything but UNAVAILABLE (the server
/// or its database is down for now, nothing was done), waiting a little
/// longer each time, for up to about a minute in all. Only for calls that
/// are safe to repeat: idempotent writes and reads.
pub async fn retry_unavailable<T, F, Fut>(call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    retry_unavailable_after(Duration::from_millis(100), call).await
}

/// [`retry_unavailable`] waiting up to `first` (the platform's
/// [`crate::backoff`]) before the first call again, twice as long before
/// each next one, at most a hundred times `first`, and calling at most ten
/// times again.
pub async fn retry_unavailable_after<T, F, Fut>(
    first: Duration,
    call: F,
) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    use backon::Retryable as _;
    call.retry(crate::backoff::policy(first, first * 100).with_max_times(10))
        .when(|status: &tonic::Status| status.code() == tonic::Code::Unavailable)
        .notify(|status: &tonic::Status, after: Duration| {
            tracing::warn!(
                message = status.message(),
                ?after,
                "unavailable, calling again"
            );
        })
        .await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn answers(codes: &[tonic::Code]) -> (AtomicU32, Vec<tonic::Code>) {
        (AtomicU32::new(0), codes.to_vec())
    }

    async fn call(state: &(AtomicU32, Vec<tonic::Code>)) -> Result<u32, tonic::Status> {
        let attempt = state.0.fetch_add(1, Ordering::SeqCst);
        match state.1.get(attempt as usize) {
            Some(&code) => Err(tonic::Status::new(code, "no")),
            None => Ok(attempt + 1),
        }
    }

    #[tokio::test]
    async fn unavailable_is_called_again_and_other_errors_are_not() {
        let quick = Duration::from_millis(1);
        let down = answers(&[tonic::Code::Unavailable, tonic::Code::Unavailable]);
        assert_eq!(
            retry_unavailable_after(quick, || call(&down))
                .await
                .unwrap(),
            3
        );
        let refused = answers(&[tonic::Code::InvalidArgument]);
        let error = retry_unavailable_after(quick, || call(&refused))
            .await
            .unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument);
        assert_eq!(refused.0.load(Ordering::SeqCst), 1);
        let gone = answers(&[tonic::Code::Unavailable; 20]);
        let error = retry_unavailable_after(quick, || call(&gone))
            .await
            .unwrap_err();
        assert_eq!(error.code(), tonic::Code::Unavailable);
        assert_eq!(gone.0.load(Ordering::SeqCst), 11);
    }
}
