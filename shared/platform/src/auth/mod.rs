//! Who may call what.
//!
//! Every call to a Tenure service names its caller in one of two ways:
//!
//! - an API key, sent as `authorization: Bearer tenure_<id>_<secret>`. Keys
//!   live hashed in a keys file ([`keys`]) that every service reads and
//!   re-reads when it changes; `tenure keys` creates (showing the key once),
//!   lists and revokes them.
//! - in a cluster, the mesh's mTLS identity, read from a header the mesh
//!   sidecar sets on every request it lets in (`l5d-client-id` for Linkerd,
//!   `x-forwarded-client-cert` for Istio), mapped to scopes by configuration.
//!   The header is trusted only when configured, and only a pod that is
//!   reachable through its sidecar alone may be configured so.
//!
//! Each method needs one [`Scope`]; the [`layer`] refuses a call without a
//! caller (`UNAUTHENTICATED`) or without the scope (`PERMISSION_DENIED`),
//! logs the refusal with the key's id but never its secret, and counts it.
//! The standard health checks answer anyone (probes carry no credentials);
//! reflection answers any authenticated caller.

pub mod keys;
pub mod layer;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

pub use layer::{Access, AuthLayer, Authorize, Caller};

/// What a caller may do. Each method of each service needs exactly one.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Write customer data: upserts, events, renewal outcomes, assessments.
    Ingest,
    /// Read accounts, signals, health, the pipeline, runs and tasks.
    Read,
    /// Read contacts' names and email addresses (personal data).
    Contacts,
    /// Run analyses: scorecards, recompute, models, forecasts, retention.
    Analytics,
    /// Define and run playbooks, retry steps, complete tasks.
    PlaybooksAdmin,
    /// The `Notify*` calls the services make to one another.
    Internal,
    /// Erase a person's data.
    Erase,
}

impl Scope {
    pub const ALL: [Scope; 7] = [
        Scope::Ingest,
        Scope::Read,
        Scope::Contacts,
        Scope::Analytics,
        Scope::PlaybooksAdmin,
        Scope::Internal,
        Scope::Erase,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Contacts => "contacts",
            Scope::Analytics => "analytics",
            Scope::PlaybooksAdmin => "playbooks-admin",
            Scope::Internal => "internal",
            Scope::Erase => "erase",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown scope {s:?} (known: {})", known.join(", "))
            })
    }
}

/// Parses `a,b,c` into scopes.
pub fn parse_scopes(text: &str) -> Result<Vec<Scope>, String> {
    let mut scopes = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(Scope::from_str)
        .collect::<Result<Vec<_>, _>>()?;
    scopes.sort();
    scopes.dedup();
    Ok(scopes)
}

/// A value that must not be shown: its `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that sends or checks it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// A mesh identity and the scopes it is granted: `IDENTITY=scope,scope`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeshGrant {
    pub identity: String,
    pub scopes: Vec<Scope>,
}

impl FromStr for MeshGrant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (identity, scopes) = s
            .trim()
            .rsplit_once('=')
            .ok_or_else(|| format!("{s:?} is not IDENTITY=scope,scope"))?;
        if identity.is_empty() {
            return Err(format!("{s:?} names no identity"));
        }
        Ok(Self {
            identity: identity.to_owned(),
            scopes: parse_scopes(scopes)?,
        })
    }
}

/// How a service knows its callers, and how much each may ask of it.
#[derive(Clone, Debug, clap::Args)]
pub struct AuthConfig {
    /// File of hashed API keys (`tenure keys create` writes it); re-read when it changes.
    #[arg(long, env = "TENURE_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
    /// Header in which the mesh sidecar passes the caller's mTLS identity
    /// (`l5d-client-id` for Linkerd, `x-forwarded-client-cert` for Istio).
    /// Unset: no header is trusted.
    #[arg(long, env = "TENURE_MESH_IDENTITY_HEADER")]
    pub mesh_identity_header: Option<String>,
    /// Scopes of mesh identities: `IDENTITY=scope,scope`, entries separated by `;`.
    #[arg(long, env = "TENURE_MESH_IDENTITIES", value_delimiter = ';')]
    pub mesh_identities: Vec<MeshGrant>,
    /// Calls per second each caller may make, on average (a key's own rate
    /// overrides it); 0: no limit.
    #[arg(long, env = "TENURE_RATE_LIMIT", default_value_t = DEFAULT_RATE)]
    pub rate_limit: u32,
    /// Calls a caller may make at once before its rate applies.
    #[arg(long, env = "TENURE_RATE_BURST", default_value_t = DEFAULT_BURST)]
    pub rate_burst: u32,
}

pub const DEFAULT_RATE: u32 = 1000;
pub const DEFAULT_BURST: u32 = 2000;

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            api_keys_file: None,
            mesh_identity_header: None,
            mesh_identities: Vec::new(),
            rate_limit: DEFAULT_RATE,
            rate_burst: DEFAULT_BURST,
        }
    }
}

/// The key a process presents when it calls a Tenure service.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct Credentials {
    /// API key for calls to Tenure services (`tenure keys create` makes one).
    #[arg(long = "api-key", env = "TENURE_API_KEY", hide_env_values = true)]
    pub api_key: Option<Secret>,
}

impl Credentials {
    pub fn key(key: Secret) -> Self {
        Self { api_key: Some(key) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_print_the_same() {
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>(), Ok(scope));
        }
        assert_eq!(
            parse_scopes("read, ingest,read").unwrap(),
            vec![Scope::Ingest, Scope::Read]
        );
        assert!(parse_scopes("read,root").unwrap_err().contains("root"));
    }

    #[test]
    fn mesh_grants_name_an_identity_and_scopes() {
        let grant: MeshGrant = "spiffe://cluster.local/ns/tenure/sa/health=internal,read"
            .parse()
            .unwrap();
        assert_eq!(grant.identity, "spiffe://cluster.local/ns/tenure/sa/health");
        assert_eq!(grant.scopes, vec![Scope::Read, Scope::Internal]);
        assert!("no-scopes".parse::<MeshGrant>().is_err());
        assert!("=read".parse::<MeshGrant>().is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        let secret = Secret::new("tenure_abc_hunter2");
        assert_eq!(format!("{secret} {secret:?}"), "*** ***");
        let credentials = Credentials::key(secret);
        assert!(!format!("{credentials:?}").contains("hunter2"));
    }
}
