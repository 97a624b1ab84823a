//! gRPC server bootstrap shared by every service: tracing and metrics layer,
//! grpc.health.v1, server reflection, request timeouts (the caller's
//! `grpc-timeout` or the configured maximum, whichever is shorter), and a
//! graceful shutdown that reports NOT_SERVING, stops accepting and drains
//! in-flight calls within a grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::OnceLock;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic_health::ServingStatus;

use crate::auth::{Access, AuthLayer};
use crate::config::ServerConfig;
use crate::trace::ServerTraceLayer;

/// Serves `routes` (the service's own gRPC services, named in
/// `access.services`) on `listener` until `shutdown` completes, admitting
/// each call by the `access` rules.
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    access: Access,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let service_names = access.services;
    let auth = AuthLayer::new(&config.auth, access)?;
    let trace = ServerTraceLayer::new(
        service_names.iter().flat_map(|service| {
            access
                .rules
                .iter()
                .map(move |(method, _)| (service.to_string(), method.to_string()))
        }),
        &[
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ],
    );
    let (health, health_service) = tonic_health::server::health_reporter();
    for name in service_names {
        health
            .set_service_status(*name, ServingStatus::Serving)
            .await;
    }
    // v1 and v1alpha: many clients (grpcurl before 1.9, grpcui, Postman,
    // Python's grpcio-reflection) still speak only v1alpha.
    let reflection = || {
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tenure_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("grpc.health.v1.Health")
            .with_service_name("grpc.reflection.v1.ServerReflection")
            .with_service_name("grpc.reflection.v1alpha.ServerReflection");
        for name in service_names {
            builder = builder.with_service_name(*name);
        }
        builder
    };
    let reflection_v1 = reflection()
        .build_v1()
        .context("building the reflection service")?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .context("building the v1alpha reflection service")?;

    let draining = CancellationToken::new();
    let signal = {
        let draining = draining.clone();
        let health = health.clone();
        let names = service_names.to_vec();
        async move {
            shutdown.await;
            tracing::info!(services = ?names, "shutting down: draining in-flight calls");
            health
                .set_service_status("", ServingStatus::NotServing)
                .await;
            for name in names {
                health
                    .set_service_status(name, ServingStatus::NotServing)
                    .await;
            }
            draining.cancel();
        }
    };
    let server = tonic::transport::Server::builder()
        .timeout(config.request_timeout)
        .layer(trace)
        .layer(auth)
        .add_routes(routes)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), signal);
    let grace = config.shutdown_grace;
    tokio::select! {
        result = server => result.context("gRPC server failed"),
        () = async { draining.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace_secs = grace.as_secs(), "grace period over; abandoning in-flight calls");
            Ok(())
        }
    }
}

/// A server started in the background, for `tenure up` and tests.
pub struct RunningServer {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningServer {
    /// Serves on `listener` in a new task; fails at once when no caller
    /// could be authenticated.
    pub fn start(
        listener: TcpListener,
        routes: Routes,
        access: Access,
        config: ServerConfig,
    ) -> anyhow::Result<Self> {
        AuthLayer::new(&config.auth, access)?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            serve(listener, routes, access, &config, stop.cancelled_owned()).await
        });
        Ok(Self {
            addr,
            shutdown,
            task,
        })
    }

    /// `http://addr`, for clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts a graceful shutdown and waits for it.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await.context("server task panicked")?
    }
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// Serves Prometheus metrics on `addr` (`GET /metrics`), once per process.
pub fn install_metrics(addr: SocketAddr) -> anyhow::Result<()> {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    if INSTALLED.get().is_some() {
        return Ok(());
    }
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(
            Matcher::Suffix("seconds".to_owned()),
            &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ],
        )?
        .install()
        .with_context(|| format!("serving metrics on {addr}"))?;
    let _ = INSTALLED.set(());
    tracing::info!(%addr, "prometheus metrics at /metrics");
    Ok(())
}
