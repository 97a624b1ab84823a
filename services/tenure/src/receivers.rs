//! Real receivers of the playbooks' outbound actions, for the demo and the
//! tests: an HTTP webhook receiver that can be told to fail, to redirect,
//! or to verify signatures as a careful receiver does (and refuse replays),
//! and an SMTP sink. Both listen on loopback ports of their own and record
//! what arrived.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One webhook request as received.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub path: String,
    pub delivery_id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: Vec<u8>,
    /// The status the receiver answered (0: none, the request was held).
    pub status: u16,
    /// When the request had been read whole.
    pub received_at: std::time::Instant,
}

#[derive(Default)]
struct WebhookState {
    deliveries: Vec<Delivery>,
    /// Requests still to fail with 500 before answering 200; `None`: always fail.
    failures_left: Option<u32>,
    /// Answer every request with a redirect here.
    redirect_to: Option<String>,
    /// Verify signatures with this secret: 401 when one does not hold,
    /// 409 for a delivery accepted before.
    secret: Option<Vec<u8>>,
    accepted_ids: HashSet<String>,
    /// Requests still to be read and never answered (recorded with status 0).
    holds_left: u32,
}

/// An HTTP/1.1 receiver of webhooks.
#[derive(Clone)]
pub struct WebhookReceiver {
    pub url: String,
    state: Arc<Mutex<WebhookState>>,
}

impl WebhookReceiver {
    /// Answers 200 to everything.
    pub async fn start() -> Self {
        Self::failing(0).await
    }

    /// Reads the first request and never answers it (as a receiver that
    /// hangs, or while its caller dies); answers 200 after that.
    pub async fn holding_first() -> Self {
        let receiver = Self::start().await;
        if let Ok(mut state) = receiver.state.lock() {
            state.holds_left = 1;
        }
        receiver
    }

    /// Fails the first `count` requests with 500, then answers 200.
    pub async fn failing(count: u32) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(Mutex::new(WebhookState {
            failures_left: Some(count),
            ..WebhookState::default()
        }));
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    let _ = serve_http(stream, state).await;
                });
            }
        });
        Self { url, state }
    }

    /// Verifies each delivery's signature and timestamp with `secret`, and
    /// refuses a delivery id it has accepted before.
    pub async fn verifying(secret: &str) -> Self {
        let receiver = Self::start().await;
        if let Ok(mut state) = receiver.state.lock() {
            state.secret = Some(secret.as_bytes().to_vec());
        }
        receiver
    }

    /// Answers every request with `302 Found` to `location`.
    pub async fn redirecting(location: &str) -> Self {
        let receiver = Self::start().await;
        if let Ok(mut state) = receiver.state.lock() {
            state.redirect_to = Some(location.to_owned());
        }
        receiver
    }

    /// From now on fails every request, or (false) succeeds again.
    pub fn always_fail(&self, fail: bool) {
        if let Ok(mut state) = self.state.lock() {
            state.failures_left = if fail { None } else { Some(0) };
        }
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state
            .lock()
            .map(|s| s.deliveries.clone())
            .unwrap_or_default()
    }

    /// Deliveries answered 200.
    pub fn accepted(&self) -> Vec<Delivery> {
        self.deliveries()
            .into_iter()
            .filter(|d| d.status == 200)
            .collect()
    }
}

async fn serve_http(
    stream: tokio::net::TcpStream,
    state: Arc<Mutex<WebhookState>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).await?;
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_owned();
    let (mut length, mut delivery_id, mut timestamp, mut signature) =
        (0usize, String::new(), String::new(), String::new());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim().to_owned();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse().unwrap_or(0),
                "x-tenure-delivery" => delivery_id = value,
                "x-tenure-timestamp" => timestamp = value,
                "x-tenure-signature" => signature = value,
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await?;
    let status = {
        let mut state = state
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let verified = state.secret.as_deref().map(|secret| {
            tenure_playbooks::signature::verify(
                secret,
                &timestamp,
                &delivery_id,
                &signature,
                &body,
                now,
            )
        });
        let status = if state.holds_left > 0 {
            state.holds_left -= 1;
            0
        } else if state.redirect_to.is_some() {
            302
        } else if matches!(verified, Some(Err(_))) {
            401
        } else if verified.is_some() && state.accepted_ids.contains(&delivery_id) {
            409
        } else {
            match state.failures_left {
                None => 500,
                Some(0) => 200,
                Some(n) => {
                    state.failures_left = Some(n - 1);
                    500
                }
            }
        };
        if status == 200 {
            state.accepted_ids.insert(delivery_id.clone());
        }
        state.deliveries.push(Delivery {
            path,
            delivery_id,
            timestamp,
            signature,
            body,
            status,
            received_at: std::time::Instant::now(),
        });
        let location = state
            .redirect_to
            .as_ref()
            .map(|to| format!("location: {to}\r\n"))
            .unwrap_or_default();
        (status, location)
    };
    let (status, location) = status;
    if status == 0 {
        // Held open: the caller waits until it gives up or dies.
        std::future::pending::<()>().await;
    }
    let reason = match status {
        200 => "OK",
        302 => "Found",
        401 => "Unauthorized",
        409 => "Conflict",
        _ => "Internal Server Error",
    };
    let mut stream = reader.into_inner();
    stream
        .write_all(
            format!("HTTP/1.1 {status} {reason}\r\n{location}content-length: 0\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    stream.shutdown().await
}

/// One email as the sink received it.
#[derive(Debug, Clone)]
pub struct Mail {
    pub recipients: Vec<String>,
    pub data: String,
}

impl Mail {
    pub fn header(&self, name: &str) -> Option<String> {
        self.data.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// A minimal SMTP server that accepts every message.
#[derive(Clone)]
pub struct SmtpSink {
    pub url: String,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpSink {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("smtp://{}", listener.local_addr().expect("addr"));
        let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
        let shared = mails.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let mails = shared.clone();
                tokio::spawn(async move {
                    let _ = serve_smtp(stream, mails).await;
                });
            }
        });
        Self { url, mails }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

async fn serve_smtp(
    stream: tokio::net::TcpStream,
    mails: Arc<Mutex<Vec<Mail>>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    reader.get_mut().write_all(b"220 sink ESMTP\r\n").await?;
    let mut recipients = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_ascii_uppercase();
        let reply: &[u8] = if command.starts_with("EHLO") || command.starts_with("HELO") {
            b"250 sink\r\n"
        } else if command.starts_with("MAIL FROM") {
            recipients.clear();
            b"250 OK\r\n"
        } else if command.starts_with("RCPT TO") {
            let address = line.trim_end()[8..]
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned();
            recipients.push(address);
            b"250 OK\r\n"
        } else if command == "DATA" {
            reader.get_mut().write_all(b"354 go ahead\r\n").await?;
            let mut data = String::new();
            loop {
                let mut part = String::new();
                if reader.read_line(&mut part).await? == 0 || part == ".\r\n" {
                    break;
                }
                data.push_str(&part);
            }
            if let Ok(mut mails) = mails.lock() {
                mails.push(Mail {
                    recipients: std::mem::take(&mut recipients),
                    data,
                });
            }
            b"250 queued\r\n"
        } else if command == "QUIT" {
            reader.get_mut().write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            b"250 OK\r\n"
        };
        reader.get_mut().write_all(reply).await?;
    }
}
