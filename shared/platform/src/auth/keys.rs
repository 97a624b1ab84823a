//! API keys: `tenure_<id>_<secret>`, where the id names the key in logs and
//! listings and the secret is 32 random bytes. The keys file holds one JSON
//! object per line with the id, a name, the scopes and the SHA-256 of the
//! secret (a fast hash is enough for a random 256-bit secret: there is no
//! dictionary to try), never the secret itself. Revoked keys stay in the
//! file, marked, so that a listing shows what was revoked and when.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::{Scope, Secret};

const PREFIX: &str = "tenure_";

/// How often a service looks at the keys file for revocations.
const RECHECK: Duration = Duration::from_secs(1);

/// One key as the keys file holds it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredKey {
    pub id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    /// Hex SHA-256 of the secret part.
    pub sha256: String,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    /// Calls per second this key may make, over the services' default
    /// (`TENURE_RATE_LIMIT`); 0: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_second: Option<u32>,
}

impl StoredKey {
    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }
}

fn digest(secret: &str) -> String {
    format!("{:x}", Sha256::digest(secret.as_bytes()))
}

/// A new key: what the file keeps, and the key itself, to be shown once.
pub fn generate(name: &str, scopes: &[Scope], rate: Option<u32>) -> (StoredKey, Secret) {
    let id = format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
    let secret =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let mut scopes = scopes.to_vec();
    scopes.sort();
    scopes.dedup();
    let stored = StoredKey {
        id: id.clone(),
        name: name.to_owned(),
        scopes,
        sha256: digest(&secret),
        created_at: Utc::now(),
        revoked_at: None,
        rate_per_second: rate,
    };
    (stored, Secret::new(format!("{PREFIX}{id}_{secret}")))
}

/// The id and secret of a presented key, if it has the shape of one.
pub fn parse(presented: &str) -> Option<(&str, &str)> {
    let rest = presented.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let well_formed = id.len() == 12
        && id.bytes().all(|b| b.is_ascii_hexdigit())
        && !secret.is_empty()
        && secret.len() <= 64;
    well_formed.then_some((id, secret))
}

/// The keys of a file; a missing file holds none.
pub fn read(path: &Path) -> anyhow::Result<Vec<StoredKey>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => {
            return Err(error).with_context(|| format!("reading keys file {}", path.display()));
        }
    };
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(number, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("{} line {}: not a key", path.display(), number + 1))
        })
        .collect()
}

/// Replaces the file's keys at once (a new file renamed over the old, owner-only).
pub fn write(path: &Path, keys: &[StoredKey]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    for key in keys {
        serde_json::to_writer(&mut file, key)?;
        file.write_all(b"\n")?;
    }
    file.as_file().sync_all()?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o600))?;
    }
    file.persist(path)
        .with_context(|| format!("writing keys file {}", path.display()))?;
    Ok(())
}

/// Adds a new key to the file; returns it with the key to show once.
pub fn create(
    path: &Path,
    name: &str,
    scopes: &[Scope],
    rate: Option<u32>,
) -> anyhow::Result<(StoredKey, Secret)> {
    anyhow::ensure!(!scopes.is_empty(), "a key needs at least one scope");
    let mut keys = read(path)?;
    let (stored, secret) = generate(name, scopes, rate);
    keys.push(stored.clone());
    write(path, &keys)?;
    Ok((stored, secret))
}

/// Marks the key `id` revoked; false when no active key has that id.
pub fn revoke(path: &Path, id: &str) -> anyhow::Result<bool> {
    let mut keys = read(path)?;
    let Some(key) = keys.iter_mut().find(|k| k.id == id && k.is_active()) else {
        return Ok(false);
    };
    key.revoked_at = Some(Utc::now());
    write(path, &keys)?;
    Ok(true)
}

/// The active keys of a file, re-read when the file changes.
pub struct KeyStore {
    path: PathBuf,
    state: Mutex<Loaded>,
}

struct Loaded {
    keys: HashMap<String, StoredKey>,
    stamp: Option<(SystemTime, u64)>,
    checked: Instant,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn active(keys: Vec<StoredKey>) -> HashMap<String, StoredKey> {
    keys.into_iter()
        .filter(StoredKey::is_active)
        .map(|k| (k.id.clone(), k))
        .collect()
}

impl KeyStore {
    /// Loads `path`, which must exist and parse.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        anyhow::ensure!(
            path.exists(),
            "keys file {} does not exist (create a key with `tenure keys create`)",
            path.display()
        );
        let stamp = stamp(path);
        let keys = active(read(path)?);
        Ok(Self {
            path: path.to_owned(),
            state: Mutex::new(Loaded {
                keys,
                stamp,
                checked: Instant::now(),
            }),
        })
    }

    /// The key that `presented` is, if it is an active key of the file.
    pub fn verify(&self, presented: &str) -> Option<StoredKey> {
        let (id, secret) = parse(presented)?;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        // A key the store does not know may have been created since: look
        // at once (a stat; the file is read only when it changed).
        if state.checked.elapsed() >= RECHECK || !state.keys.contains_key(id) {
            state.checked = Instant::now();
            let now = stamp(&self.path);
            if now != state.stamp {
                match read(&self.path) {
                    Ok(keys) => {
                        state.keys = active(keys);
                        state.stamp = now;
                        tracing::info!(path = %self.path.display(), keys = state.keys.len(), "keys file reloaded");
                    }
                    Err(error) => {
                        tracing::error!(error = %format!("{error:#}"), "keys file unreadable; keeping the keys loaded before");
                    }
                }
            }
        }
        let key = state.keys.get(id)?;
        let matches: bool = digest(secret)
            .as_bytes()
            .ct_eq(key.sha256.as_bytes())
            .into();
        matches.then(|| key.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_verifies_and_a_changed_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.jsonl");
        let (stored, key) = create(&path, "ops", &[Scope::Read, Scope::Ingest], None).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let (_, secret) = parse(key.expose()).unwrap();
        assert!(!text.contains(secret), "the file holds only the hash");

        let store = KeyStore::open(&path).unwrap();
        assert_eq!(store.verify(key.expose()).unwrap().id, stored.id);
        let mut forged = key.expose().to_owned();
        forged.pop();
        forged.push('x');
        assert!(store.verify(&forged).is_none());
        assert!(store.verify("Bearer nonsense").is_none());
        assert!(store.verify(&format!("tenure_{}_", stored.id)).is_none());
    }

    #[test]
    fn revoking_takes_effect_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.jsonl");
        let (stored, key) = create(&path, "ops", &[Scope::Read], None).unwrap();
        let store = KeyStore::open(&path).unwrap();
        assert!(store.verify(key.expose()).is_some());
        assert!(revoke(&path, &stored.id).unwrap());
        assert!(!revoke(&path, &stored.id).unwrap(), "already revoked");
        std::thread::sleep(RECHECK + Duration::from_millis(50));
        assert!(store.verify(key.expose()).is_none());
        let listed = read(&path).unwrap();
        assert!(listed[0].revoked_at.is_some(), "revoked keys stay listed");
    }
}
