//! `tenure`: run the whole stack, check it, and show it at work.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tenure::stack::{Stack, StackOptions};
use tenure_platform::auth::Credentials;
use tenure_platform::config::{PeerConfig, ServerConfig, TelemetryConfig};
use tenure_proto::renewals::v1::renewals_service_client::RenewalsServiceClient;

#[derive(Debug, Parser)]
#[command(
    name = "tenure",
    version,
    about = "Tenure: customer health, renewals and playbooks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run all four services in one process until Ctrl-C.
    Up(UpArgs),
    /// Run the stack, load a generated customer base into it, report what
    /// Tenure finds, and keep it up until Ctrl-C.
    Demo {
        #[command(flatten)]
        up: UpArgs,
        #[command(flatten)]
        base: BaseArgs,
        /// Where the generated files are written.
        #[arg(long, default_value = ".tenure/base")]
        base_dir: PathBuf,
        /// Stop after the demo instead of staying up.
        #[arg(long)]
        exit: bool,
    },
    /// Write a self-contained HTML page of charts from a running stack.
    Report {
        /// The page to write.
        #[arg(long)]
        html: PathBuf,
        /// The day the figures are taken on (YYYY-MM-DD); yesterday when unset.
        #[arg(long)]
        as_of: Option<chrono::NaiveDate>,
        #[command(flatten)]
        peers: PeerConfig,
    },
    /// Ask each service's health endpoint and print a table.
    Status {
        #[command(flatten)]
        peers: PeerConfig,
    },
    /// Rescore every account now and print how many were scored (for a
    /// nightly job; changed accounts are rescored continuously anyway).
    Recompute {
        /// Health service URL.
        #[arg(long, env = "HEALTH_URL", default_value = "http://127.0.0.1:50052")]
        health_url: String,
        #[command(flatten)]
        credentials: Credentials,
    },
    /// Train a churn model on past renewals and print its report.
    Train {
        /// Days before each term end at which signals are taken.
        #[arg(long, default_value_t = 90)]
        horizon_days: i32,
        /// L2 penalty.
        #[arg(long, default_value_t = 0.01)]
        l2: f64,
        /// Return at once instead of waiting for the model.
        #[arg(long)]
        no_wait: bool,
        /// Learn only from outcomes decided by this day (YYYY-MM-DD), as the
        /// model could have been trained then (for forecast backtests).
        #[arg(long)]
        as_of: Option<chrono::NaiveDate>,
        /// Health service URL.
        #[arg(long, env = "HEALTH_URL", default_value = "http://127.0.0.1:50052")]
        health_url: String,
        #[command(flatten)]
        credentials: Credentials,
    },
    /// Write the forecast of every renewal ending in a window, as CSV or JSON
    /// Lines (for a nightly job); a progress bar on a terminal.
    Forecast {
        /// First day of the window (YYYY-MM-DD).
        #[arg(long)]
        from: chrono::NaiveDate,
        /// Day after the window's last.
        #[arg(long)]
        to: chrono::NaiveDate,
        /// Only accounts of this segment.
        #[arg(long, default_value = "")]
        segment: String,
        #[arg(long, value_enum, default_value = "csv")]
        format: tenure::forecast::Format,
        /// Output file.
        #[arg(long, short)]
        output: PathBuf,
        /// Renewals service URL.
        #[arg(long, env = "RENEWALS_URL", default_value = "http://127.0.0.1:50053")]
        renewals_url: String,
        #[command(flatten)]
        credentials: Credentials,
    },
    /// Write a deterministic, seeded customer base of a SaaS company as the
    /// files `tenure import` loads, with the true causes of churn beside them.
    Generate {
        #[command(flatten)]
        base: BaseArgs,
        /// Last day of the history (YYYY-MM-DD); yesterday when unset.
        #[arg(long)]
        as_of: Option<chrono::NaiveDate>,
        /// Directory to write into.
        #[arg(long, default_value = "tenure-base")]
        out: PathBuf,
    },
    /// Load a CSV or JSON Lines file of one record kind through the API of the
    /// service that owns it (ingestion; renewals for outcomes).
    Import {
        /// What the file holds.
        #[arg(value_enum)]
        kind: tenure::import::Kind,
        /// The file: `.csv` is read as CSV, anything else as JSON Lines.
        file: PathBuf,
        /// Where rejected rows go, with their reasons (default: FILE.rejected.jsonl).
        #[arg(long)]
        rejects: Option<PathBuf>,
        /// Rows per call (events: five times as many per stream chunk, at most 5,000).
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        #[command(flatten)]
        peers: tenure_platform::config::PeerConfig,
    },
    /// The services' outboxes: messages set aside after their last delivery
    /// attempt, and sending them again.
    Outbox {
        #[command(subcommand)]
        action: OutboxAction,
        /// Administrative Postgres URL of the services' database.
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
    /// Create, list and revoke the API keys the services accept.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
        /// The keys file the services read (TENURE_API_KEYS_FILE).
        #[arg(
            long,
            env = "TENURE_API_KEYS_FILE",
            default_value = ".tenure/api-keys.jsonl",
            global = true
        )]
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum OutboxAction {
    /// List every service's dead letters with their last error.
    DeadLetters,
    /// Send dead letters of a service again, from a first attempt.
    Retry {
        /// ingestion, health or renewals.
        #[arg(long)]
        service: String,
        /// One dead letter's id; every one of the service when unset.
        #[arg(long)]
        id: Option<i64>,
    },
}

#[derive(Debug, Subcommand)]
enum KeysAction {
    /// Create a key and print it (once: only its hash is kept).
    Create {
        /// What the key is for (shown in listings and logs).
        #[arg(long)]
        name: String,
        /// Scopes, comma-separated: ingest, read, contacts, analytics,
        /// playbooks-admin, internal.
        #[arg(long, value_parser = tenure_platform::auth::parse_scopes)]
        scopes: std::vec::Vec<tenure_platform::auth::Scope>,
        /// Calls per second this key may make (0: no limit); unset: the
        /// services' TENURE_RATE_LIMIT.
        #[arg(long)]
        rate: Option<u32>,
    },
    /// List the keys: id, name, scopes, created, revoked.
    List,
    /// Revoke a key by its id; the services stop accepting it within a second.
    Revoke { id: String },
}

/// The generated customer base.
#[derive(Debug, clap::Args)]
struct BaseArgs {
    /// Accounts in the base.
    #[arg(long, default_value_t = 2000)]
    accounts: usize,
    /// Years of history before the as-of date.
    #[arg(long, default_value_t = 3)]
    years: u32,
    /// The same seed writes the same files.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Debug, clap::Args)]
struct UpArgs {
    /// Existing Postgres to use (administrative URL). Unset: a throwaway cluster in --data-dir.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Data directory of the throwaway cluster (kept between runs).
    #[arg(long, env = "TENURE_DATA_DIR", default_value = ".tenure/pg")]
    data_dir: PathBuf,
    /// Address the services listen on.
    #[arg(long, env = "TENURE_BIND", default_value = "127.0.0.1")]
    bind: IpAddr,
    #[command(flatten)]
    server: ServerConfig,
    #[command(flatten)]
    telemetry: TelemetryConfig,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Up(up) => {
                let _telemetry = tenure_platform::telemetry::init(&up.telemetry, "tenure")?;
                let stack = start(up, &[]).await?;
                tenure_platform::server::shutdown_signal().await;
                stack.stop().await
            }
            Command::Demo {
                mut up,
                base:
                    BaseArgs {
                        accounts,
                        years,
                        seed,
                    },
                base_dir,
                exit,
            } => {
                // The demo speaks for itself: the services log only trouble.
                up.telemetry
                    .log_filter
                    .get_or_insert_with(|| "warn,sqlx=error".to_owned());
                let _telemetry = tenure_platform::telemetry::init(&up.telemetry, "tenure")?;
                // The demo's webhook receiver listens on loopback.
                let settings = [("PLAYBOOKS_WEBHOOK_ALLOW", "127.0.0.1/32")];
                let stack = start(up, &settings).await?;
                let options = tenure::demo::Options {
                    accounts,
                    years,
                    seed,
                    dir: base_dir,
                    progress: true,
                    webhook_secret: stack
                        .setting("PLAYBOOKS_WEBHOOK_SECRET")
                        .unwrap_or_default(),
                };
                let result = tenure::demo::run(&stack.operator_peers(), &options).await;
                match &result {
                    Ok(report) => println!("{report}"),
                    Err(error) => eprintln!("demo failed: {error:#}"),
                }
                if result.is_ok() && !exit {
                    println!("The stack stays up; Ctrl-C stops it.");
                    tenure_platform::server::shutdown_signal().await;
                }
                stack.stop().await?;
                result.map(|_| ())
            }
            Command::Generate {
                base:
                    BaseArgs {
                        accounts,
                        years,
                        seed,
                    },
                as_of,
                out,
            } => {
                let config = tenure::generate::Config {
                    accounts,
                    years,
                    seed,
                    as_of: as_of.unwrap_or_else(tenure::generate::yesterday),
                };
                let counts = tenure::generate::write(&config, &out)?;
                println!(
                    "{} accounts, {} years to {}, seed {seed}, in {}:",
                    accounts,
                    years,
                    config.as_of,
                    out.display()
                );
                for (kind, file) in tenure::import::BASE_FILES {
                    let rows = counts.get(&kind).copied().unwrap_or(0);
                    println!("  {file:<22} {rows:>10} rows");
                }
                println!("  truth.json, truth.jsonl    the true drivers of churn");
                Ok(())
            }
            Command::Report { html, as_of, peers } => {
                let as_of = as_of.unwrap_or_else(tenure::generate::yesterday);
                let page = tenure::report::html(&peers, as_of).await?;
                std::fs::write(&html, page)?;
                println!("wrote {} (as of {as_of})", html.display());
                Ok(())
            }
            Command::Import {
                kind,
                file,
                rejects,
                batch,
                peers,
            } => {
                let rejects = rejects.unwrap_or_else(|| {
                    let mut name = file.clone().into_os_string();
                    name.push(".rejected.jsonl");
                    PathBuf::from(name)
                });
                let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
                let summary = tenure::import::run(
                    &peers,
                    kind,
                    &file,
                    &rejects,
                    batch.clamp(1, 1000),
                    progress,
                )
                .await?;
                println!(
                    "{} rows: {} accepted, {} unchanged (stale or duplicate), {} rejected",
                    summary.rows, summary.accepted, summary.unchanged, summary.rejected
                );
                if summary.rejected > 0 {
                    println!("rejected rows and their reasons: {}", rejects.display());
                }
                Ok(())
            }
            Command::Forecast {
                from,
                to,
                segment,
                format,
                output,
                renewals_url,
                credentials,
            } => {
                let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
                let mut client = RenewalsServiceClient::new(tenure_platform::client::channel(
                    &renewals_url,
                    &credentials,
                )?);
                let rows = tenure::forecast::run(
                    &mut client,
                    from,
                    to,
                    &segment,
                    format,
                    &output,
                    progress,
                )
                .await?;
                eprintln!("wrote {rows} renewals to {}", output.display());
                Ok(())
            }
            Command::Train {
                horizon_days,
                l2,
                no_wait,
                as_of,
                health_url,
                credentials,
            } => {
                let request = tenure::model::request(horizon_days, l2, as_of);
                print!(
                    "{}",
                    tenure::model::train(&health_url, &credentials, request, !no_wait).await?
                );
                Ok(())
            }
            Command::Recompute {
                health_url,
                credentials,
            } => {
                let scored = tenure::rescore::recompute_all(&health_url, &credentials).await?;
                println!("rescored {scored} accounts");
                Ok(())
            }
            Command::Keys { action, file } => keys(action, &file),
            Command::Outbox {
                action,
                database_url,
            } => {
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(1)
                    .connect(&database_url)
                    .await?;
                match action {
                    OutboxAction::DeadLetters => {
                        print!("{}", tenure::outbox::dead_letters(&pool).await?)
                    }
                    OutboxAction::Retry { service, id } => {
                        let sent = tenure::outbox::retry(&pool, &service, id).await?;
                        println!("{sent} dead letters of {service} will be delivered again");
                    }
                }
                Ok(())
            }
            Command::Status { peers } => {
                let statuses = tenure::status::check_all(&peers).await;
                print!("{}", tenure::status::render(&statuses));
                anyhow::ensure!(
                    statuses.iter().all(|s| s.is_serving()),
                    "not every service is serving"
                );
                Ok(())
            }
        }
    })
}

async fn start(mut up: UpArgs, settings: &[(&str, &str)]) -> anyhow::Result<Stack> {
    let metrics_addr = *up.server.metrics_addr.get_or_insert_with(|| {
        std::net::SocketAddr::new(up.bind, tenure_platform::config::ports::METRICS)
    });
    tenure_platform::server::install_metrics(metrics_addr)?;
    let options = StackOptions {
        settings: settings
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        database_url: up.database_url,
        bind_ip: up.bind,
        default_ports: true,
        server: up.server,
        max_connections: 10,
        keys_file: Some(up.data_dir.with_file_name("api-keys.jsonl")),
        data_dir: Some(up.data_dir),
        statement_statistics: false,
        shared_buffers_mb: None,
    };
    let stack = Stack::start(options).await?;
    println!("Tenure is up (database {}):", redact(&stack.database_url));
    for service in &stack.services {
        println!("  {:<10} {}", service.name, service.url());
    }
    println!("  {:<10} http://{metrics_addr}/metrics", "metrics");
    println!("Check it with: tenure status");
    println!(
        "Calls need an API key. This run's operator key (every scope but internal; \
         replaced at the next start) is shown once:\n  export TENURE_API_KEY={}\n\
         More keys: tenure keys create --name NAME --scopes read,analytics",
        stack.operator_key.expose()
    );
    Ok(stack)
}

/// `tenure keys …` on the keys file at `file`.
fn keys(action: KeysAction, file: &std::path::Path) -> anyhow::Result<()> {
    use tenure_platform::auth::keys;
    match action {
        KeysAction::Create { name, scopes, rate } => {
            let (stored, key) = keys::create(file, &name, &scopes, rate)?;
            eprintln!(
                "created key {} ({}) in {}; it is shown only now:",
                stored.id,
                scopes_text(&stored.scopes),
                file.display()
            );
            println!("{}", key.expose());
        }
        KeysAction::List => {
            println!(
                "{:<14} {:<26} {:<44} {:<22} REVOKED",
                "ID", "NAME", "SCOPES", "CREATED"
            );
            for key in keys::read(file)? {
                let revoked = key.revoked_at.map(|t| t.to_rfc3339()).unwrap_or_default();
                println!(
                    "{:<14} {:<26} {:<44} {:<22} {revoked}",
                    key.id,
                    key.name,
                    scopes_text(&key.scopes),
                    key.created_at.format("%Y-%m-%dT%H:%M:%SZ"),
                );
            }
        }
        KeysAction::Revoke { id } => {
            anyhow::ensure!(keys::revoke(file, &id)?, "no active key with id {id}");
            println!("revoked {id}");
        }
    }
    Ok(())
}

fn scopes_text(scopes: &[tenure_platform::auth::Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// The URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
