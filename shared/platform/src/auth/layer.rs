//! The tower layers: [`AuthLayer`] admits or refuses each incoming call,
//! [`Authorize`] adds a process's API key to each outgoing one.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderMap, HeaderName, HeaderValue};
use tonic::Status;
use tower_layer::Layer;
use tower_service::Service;

use super::keys::KeyStore;
use super::{AuthConfig, Credentials, Scope};

/// Which scope each method of a service needs.
#[derive(Clone, Copy, Debug)]
pub struct Access {
    /// The `package.Service` names the rules are for.
    pub services: &'static [&'static str],
    /// Method name and the scope it needs; a method without a rule is refused.
    pub rules: &'static [(&'static str, Scope)],
}

/// Who is calling, as the layer established it; handlers find it in the
/// request's extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The key's id or the mesh identity: safe to log.
    pub id: String,
    pub scopes: Vec<Scope>,
    /// The key's own rate, over the default (0: none).
    pub rate: Option<u32>,
}

impl Caller {
    pub fn may(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// What the layer decides from a call's path and headers.
struct Guard {
    access: Access,
    keys: Option<KeyStore>,
    mesh_header: Option<HeaderName>,
    mesh: HashMap<String, Vec<Scope>>,
    rates: Rates,
}

type Limiter = governor::DefaultDirectRateLimiter;

/// Calls per caller per second: one bucket per caller, at the default rate
/// or at its key's own.
struct Rates {
    default: Option<governor::Quota>,
    buckets: std::sync::Mutex<HashMap<(String, u32), Arc<Limiter>>>,
}

fn quota(rate: u32, burst: u32) -> Option<governor::Quota> {
    let rate = std::num::NonZeroU32::new(rate)?;
    let burst = std::num::NonZeroU32::new(burst.max(rate.get())).unwrap_or(rate);
    Some(governor::Quota::per_second(rate).allow_burst(burst))
}

impl Rates {
    /// `Err(wait)` when the caller has used up its calls for now.
    fn check(&self, caller: &Caller) -> Result<(), std::time::Duration> {
        let (rate, quota) = match caller.rate {
            Some(own) => (own, quota(own, own.saturating_mul(2))),
            None => (
                self.default.map_or(0, |q| q.burst_size().get()),
                self.default,
            ),
        };
        let Some(quota) = quota else {
            return Ok(());
        };
        let limiter = {
            let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
            buckets
                .entry((caller.id.clone(), rate))
                .or_insert_with(|| Arc::new(governor::RateLimiter::direct(quota)))
                .clone()
        };
        limiter.check().map_err(|not_until| {
            use governor::clock::Clock as _;
            not_until.wait_time_from(governor::clock::DefaultClock::default().now())
        })
    }
}

/// Why a call was refused, for the log and the metric (never the caller).
#[derive(Debug, Clone, Copy)]
enum Refusal {
    NoCredentials,
    UnknownKey,
    UnknownIdentity,
    OutOfScope,
    NoRule,
    RateLimited,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Refusal::NoCredentials => "no_credentials",
            Refusal::UnknownKey => "unknown_key",
            Refusal::UnknownIdentity => "unknown_identity",
            Refusal::OutOfScope => "out_of_scope",
            Refusal::NoRule => "no_rule",
            Refusal::RateLimited => "rate_limited",
        }
    }
}

/// The identity in a mesh header: Linkerd's `l5d-client-id` is the identity
/// itself; Istio's `x-forwarded-client-cert` holds `Key=value;…` elements
/// separated by commas, one per proxy, the last added by our own sidecar,
/// whose `URI=` is the caller's SPIFFE id.
fn mesh_identity(value: &str) -> Option<String> {
    if !value.contains('=') {
        let id = value.trim();
        return (!id.is_empty()).then(|| id.to_owned());
    }
    let last = value.rsplit(',').next()?;
    last.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("uri")
            .then(|| value.trim().trim_matches('"').to_owned())
            .filter(|v| !v.is_empty())
    })
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

impl Guard {
    fn new(config: &AuthConfig, access: Access) -> anyhow::Result<Self> {
        anyhow::ensure!(
            config.api_keys_file.is_some() || config.mesh_identity_header.is_some(),
            "no caller could be authenticated: set TENURE_API_KEYS_FILE (API keys) \
             or TENURE_MESH_IDENTITY_HEADER with TENURE_MESH_IDENTITIES (mesh mTLS identities)"
        );
        let keys = config
            .api_keys_file
            .as_deref()
            .map(KeyStore::open)
            .transpose()?;
        let mesh_header = config
            .mesh_identity_header
            .as_deref()
            .map(|name| {
                HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).map_err(|_| {
                    anyhow::anyhow!("TENURE_MESH_IDENTITY_HEADER {name:?} is not a header name")
                })
            })
            .transpose()?;
        let mesh = config
            .mesh_identities
            .iter()
            .map(|grant| (grant.identity.clone(), grant.scopes.clone()))
            .collect();
        Ok(Self {
            access,
            keys,
            mesh_header,
            mesh,
            rates: Rates {
                default: quota(config.rate_limit, config.rate_burst),
                buckets: Default::default(),
            },
        })
    }

    /// The caller named by the headers: a bearer key when one is sent,
    /// otherwise the mesh identity when a mesh header is trusted.
    fn identify(&self, headers: &HeaderMap) -> Result<Caller, (Refusal, String)> {
        if let Some(presented) = bearer(headers) {
            let key_id = super::keys::parse(presented)
                .map(|(id, _)| id.to_owned())
                .unwrap_or_default();
            return match self.keys.as_ref().and_then(|k| k.verify(presented)) {
                Some(key) => Ok(Caller {
                    id: key.id,
                    scopes: key.scopes,
                    rate: key.rate_per_second,
                }),
                None => Err((Refusal::UnknownKey, key_id)),
            };
        }
        let identity = self
            .mesh_header
            .as_ref()
            .and_then(|name| headers.get(name))
            .and_then(|v| v.to_str().ok())
            .and_then(mesh_identity);
        match identity {
            Some(identity) => match self.mesh.get(&identity) {
                Some(scopes) => Ok(Caller {
                    id: identity,
                    scopes: scopes.clone(),
                    rate: None,
                }),
                None => Err((Refusal::UnknownIdentity, identity)),
            },
            None => Err((Refusal::NoCredentials, String::new())),
        }
    }

    /// Admits the call (with its caller, when one is needed) or refuses it.
    fn admit(
        &self,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<Option<Caller>, (Status, Refusal, String)> {
        let (service, method) = path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or((path, ""));
        if service == "grpc.health.v1.Health" {
            return Ok(None);
        }
        let unauthenticated = |(refusal, who)| {
            (
                Status::unauthenticated("a valid API key or mesh identity is required"),
                refusal,
                who,
            )
        };
        let caller = self.identify(headers).map_err(unauthenticated)?;
        if let Err(wait) = self.rates.check(&caller) {
            use tonic_types::{ErrorDetails, StatusExt as _};
            let status = Status::with_error_details(
                tonic::Code::ResourceExhausted,
                format!(
                    "this caller is over its rate of calls; retry in {} ms",
                    wait.as_millis().max(1)
                ),
                ErrorDetails::with_retry_info(Some(wait)),
            );
            return Err((status, Refusal::RateLimited, caller.id));
        }
        if !self.access.services.contains(&service) {
            // Reflection, or an unknown service that the router answers UNIMPLEMENTED.
            return Ok(Some(caller));
        }
        let Some((_, needed)) = self.access.rules.iter().find(|(m, _)| *m == method) else {
            return Err((
                Status::permission_denied(format!("{method} is not open to any caller")),
                Refusal::NoRule,
                caller.id,
            ));
        };
        if !caller.may(*needed) {
            return Err((
                Status::permission_denied(format!(
                    "this caller may not call {method}: it needs the {needed} scope"
                )),
                Refusal::OutOfScope,
                caller.id,
            ));
        }
        Ok(Some(caller))
    }
}

/// Server layer: every call passes through [`Access`] rules.
#[derive(Clone)]
pub struct AuthLayer {
    guard: Arc<Guard>,
}

impl AuthLayer {
    /// Fails when no caller could be authenticated with `config`, or the
    /// keys file cannot be read.
    pub fn new(config: &AuthConfig, access: Access) -> anyhow::Result<Self> {
        Ok(Self {
            guard: Arc::new(Guard::new(config, access)?),
        })
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            guard: self.guard.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    guard: Arc<Guard>,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Auth<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    ResBody: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Admitted<S::Future, S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        match self.guard.admit(request.uri().path(), request.headers()) {
            Ok(caller) => {
                // Nothing after this layer needs the key, so nothing can log it.
                request.headers_mut().remove(http::header::AUTHORIZATION);
                if let Some(caller) = caller {
                    request.extensions_mut().insert(caller);
                }
                Admitted::Call {
                    future: self.inner.call(request),
                }
            }
            Err((status, refusal, who)) => {
                let peer = request
                    .extensions()
                    .get::<tonic::transport::server::TcpConnectInfo>()
                    .and_then(|info| info.remote_addr())
                    .map(|addr| addr.to_string())
                    .unwrap_or_default();
                if matches!(refusal, Refusal::RateLimited) {
                    // Counted, not logged each time: a busy caller would flood the log.
                    tracing::debug!(path = request.uri().path(), caller = %who, "call over its rate");
                } else {
                    tracing::warn!(
                        path = request.uri().path(),
                        reason = refusal.as_str(),
                        caller = %who,
                        peer = %peer,
                        code = ?status.code(),
                        "call refused"
                    );
                }
                metrics::counter!("tenure_auth_refusals_total", "reason" => refusal.as_str())
                    .increment(1);
                Admitted::Refused {
                    response: Some(status.into_http()),
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner call's future, or the refusal at once.
    #[project = AdmittedProj]
    pub enum Admitted<F, R> {
        Call { #[pin] future: F },
        Refused { response: Option<R> },
    }
}

/// A request tonic could not read is the caller's error: over
/// `GRPC_MAX_MESSAGE_BYTES` it is RESOURCE_EXHAUSTED (as gRPC's own servers
/// say, and callers' retry policies expect), undecodable INVALID_ARGUMENT
/// (see [`crate::error::unreadable_request`]).
fn oversized_as_exhausted<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers();
    let code = headers
        .get("grpc-status")
        .and_then(|s| s.to_str().ok())
        .and_then(|s| s.parse::<i32>().ok())
        .map(tonic::Code::from_i32);
    let message = headers
        .get("grpc-message")
        .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
        .unwrap_or_default();
    if let Some(mapped) = code.and_then(|c| crate::error::unreadable_request(c, &message)) {
        let value = HeaderValue::from_str(&(mapped as i32).to_string());
        if let Ok(value) = value {
            response.headers_mut().insert("grpc-status", value);
        }
    }
    response
}

impl<F, B, E> Future for Admitted<F, http::Response<B>>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AdmittedProj::Call { future } => future.poll(cx).map_ok(oversized_as_exhausted),
            AdmittedProj::Refused { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Pending,
            },
        }
    }
}

/// Client layer: adds the process's API key, when it has one, to each call.
#[derive(Clone, Debug)]
pub struct Authorize<S> {
    inner: S,
    header: Option<HeaderValue>,
}

impl<S> Authorize<S> {
    pub fn new(inner: S, credentials: &Credentials) -> Self {
        let header = credentials.api_key.as_ref().and_then(|key| {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose())).ok()?;
            value.set_sensitive(true);
            Some(value)
        });
        Self { inner, header }
    }
}

impl<S, ReqBody> Service<http::Request<ReqBody>> for Authorize<S>
where
    S: Service<http::Request<ReqBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        if let Some(header) = &self.header {
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, header.clone());
        }
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &[(&str, Scope)] = &[("Read", Scope::Read), ("Notify", Scope::Internal)];
    const ACCESS: Access = Access {
        services: &["t.v1.S"],
        rules: RULES,
    };

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    fn guard(dir: &std::path::Path, mesh: bool) -> (Guard, String) {
        let path = dir.join("keys.jsonl");
        let (_, key) = super::super::keys::create(&path, "reader", &[Scope::Read], None).unwrap();
        let config = AuthConfig {
            api_keys_file: Some(path),
            mesh_identity_header: mesh.then(|| "x-forwarded-client-cert".to_owned()),
            mesh_identities: vec!["spiffe://c/ns/t/sa/health=internal".parse().unwrap()],
            ..AuthConfig::default()
        };
        (
            Guard::new(&config, ACCESS).unwrap(),
            key.expose().to_owned(),
        )
    }

    fn code(result: Result<Option<Caller>, (Status, Refusal, String)>) -> tonic::Code {
        match result {
            Ok(_) => tonic::Code::Ok,
            Err((status, _, _)) => status.code(),
        }
    }

    #[test]
    fn keys_open_only_their_scopes() {
        let dir = tempfile::tempdir().unwrap();
        let (guard, key) = guard(dir.path(), false);
        let auth = format!("Bearer {key}");
        let with_key = headers(&[("authorization", auth.as_str())]);
        assert_eq!(
            code(guard.admit("/t.v1.S/Read", &with_key)),
            tonic::Code::Ok
        );
        assert_eq!(
            code(guard.admit("/t.v1.S/Notify", &with_key)),
            tonic::Code::PermissionDenied
        );
        assert_eq!(
            code(guard.admit("/t.v1.S/Unlisted", &with_key)),
            tonic::Code::PermissionDenied
        );
        assert_eq!(
            code(guard.admit("/t.v1.S/Read", &HeaderMap::new())),
            tonic::Code::Unauthenticated
        );
        let wrong = headers(&[("authorization", "Bearer tenure_000000000000_x")]);
        let (status, _, _) = guard.admit("/t.v1.S/Read", &wrong).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert!(
            !status.message().contains("000000000000"),
            "no hint of the key"
        );
        assert_eq!(
            code(guard.admit("/grpc.health.v1.Health/Check", &HeaderMap::new())),
            tonic::Code::Ok,
            "probes carry no credentials"
        );
        assert_eq!(
            code(guard.admit(
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                &HeaderMap::new()
            )),
            tonic::Code::Unauthenticated
        );
    }

    #[test]
    fn a_mesh_header_counts_only_where_it_is_trusted() {
        let xfcc =
            "By=spiffe://c/ns/t/sa/renewals;Hash=ab;Subject=\"\";URI=spiffe://c/ns/t/sa/health";
        let dir = tempfile::tempdir().unwrap();
        let (untrusting, _) = guard(dir.path(), false);
        let (trusting, _) = guard(dir.path(), true);
        let from_health = headers(&[("x-forwarded-client-cert", xfcc)]);
        assert_eq!(
            code(untrusting.admit("/t.v1.S/Notify", &from_health)),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            code(trusting.admit("/t.v1.S/Notify", &from_health)),
            tonic::Code::Ok
        );
        assert_eq!(
            code(trusting.admit("/t.v1.S/Read", &from_health)),
            tonic::Code::PermissionDenied
        );
        let stranger = headers(&[("x-forwarded-client-cert", "URI=spiffe://c/ns/x/sa/y")]);
        assert_eq!(
            code(trusting.admit("/t.v1.S/Read", &stranger)),
            tonic::Code::Unauthenticated
        );
    }

    #[test]
    fn mesh_identities_are_read_from_either_header_shape() {
        assert_eq!(
            mesh_identity("health.tenure.serviceaccount.identity.linkerd.cluster.local").as_deref(),
            Some("health.tenure.serviceaccount.identity.linkerd.cluster.local")
        );
        assert_eq!(
            mesh_identity("URI=spiffe://a,By=x;URI=\"spiffe://b\"").as_deref(),
            Some("spiffe://b"),
            "the element our own sidecar added"
        );
        assert_eq!(mesh_identity("By=x;Hash=y"), None);
        assert_eq!(mesh_identity(" "), None);
    }

    #[test]
    fn nothing_to_authenticate_with_refuses_to_start() {
        let error = Guard::new(&AuthConfig::default(), ACCESS).err().unwrap();
        assert!(error.to_string().contains("TENURE_API_KEYS_FILE"));
    }
}
