//! Clients for calling other Tenure services: lazily connected channels that
//! carry the trace context of the calling span and the caller's API key.

use std::time::Duration;

use anyhow::Context as _;
use tonic::transport::{Channel, Endpoint};
use tower_layer::Layer as _;

use crate::auth::{Authorize, Credentials};
use crate::trace::{ClientTrace, ClientTraceLayer};

/// A channel whose every call gets an `rpc.client` span, a `traceparent`
/// and, when the process has one, its API key.
pub type TracedChannel = ClientTrace<Authorize<Channel>>;

/// A channel to `url` (e.g. `http://127.0.0.1:50051`) that connects on first
/// use and reconnects after failures, calling with `credentials`.
pub fn channel(url: &str, credentials: &Credentials) -> anyhow::Result<TracedChannel> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("invalid service URL {url:?}"))?
        .connect_timeout(Duration::from_secs(5))
        // No blanket per-call timeout: it would also cut off long result
        // streams (signals of every account). Callers set deadlines per call;
        // servers bound unary calls with GRPC_REQUEST_TIMEOUT.
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30));
    Ok(ClientTraceLayer.layer(Authorize::new(endpoint.connect_lazy(), credentials)))
}
