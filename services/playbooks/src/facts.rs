//! What playbooks know about an account: the account itself from
//! ingestion, its signals (ARR, renewal date, usage) and its health, read
//! when a run starts, when a condition is judged and when an email goes out.

use std::collections::HashMap;

use serde_json::{Value, json};
use tenure_platform::client::TracedChannel;
use tenure_platform::input::Id;
use tenure_proto::health::v1 as hpb;
use tenure_proto::health::v1::health_service_client::HealthServiceClient;
use tenure_proto::ingestion::v1 as ipb;
use tenure_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use tonic::Code;
use uuid::Uuid;

use crate::plan::{Audience, Condition};

#[derive(Clone)]
pub struct Peers {
    pub ingestion: IngestionServiceClient<TracedChannel>,
    pub health: HealthServiceClient<TracedChannel>,
}

/// An account as playbooks see it.
#[derive(Clone, Debug, Default)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub segment: String,
    pub lifecycle_stage: String,
    pub arr_minor: Option<i64>,
}

impl Account {
    /// The `account` facts of templates.
    pub fn facts(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "owner": self.owner,
            "segment": self.segment,
            "lifecycle_stage": self.lifecycle_stage,
        })
    }

    /// Why the account is outside `audience`, if it is.
    pub fn outside(&self, audience: &Audience) -> Option<String> {
        let listed =
            |list: &[String], value: &str| list.is_empty() || list.iter().any(|v| v == value);
        if !listed(&audience.segments, &self.segment) {
            return Some(format!("segment {:?} is not in the audience", self.segment));
        }
        if !listed(&audience.owners, &self.owner) {
            return Some(format!("owner {:?} is not in the audience", self.owner));
        }
        if !listed(&audience.lifecycle_stages, &self.lifecycle_stage) {
            return Some(format!(
                "lifecycle stage {:?} is not in the audience",
                self.lifecycle_stage
            ));
        }
        if audience.arr_min_minor.is_some() || audience.arr_max_minor.is_some() {
            let arr = self.arr_minor.unwrap_or(0);
            if audience.arr_min_minor.is_some_and(|min| arr < min)
                || audience.arr_max_minor.is_some_and(|max| arr > max)
            {
                return Some(format!("ARR {arr} is outside the audience's range"));
            }
        }
        None
    }
}

fn lifecycle_name(code: i32) -> String {
    ipb::LifecycleStage::try_from(code)
        .ok()
        .filter(|s| *s != ipb::LifecycleStage::Unspecified)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("LIFECYCLE_STAGE_")
                .to_lowercase()
        })
        .unwrap_or_default()
}

/// Health and signals a condition may need.
#[derive(Clone, Debug, Default)]
pub struct Current {
    pub score: Option<f64>,
    pub band: Option<String>,
    pub days_to_renewal: Option<i64>,
    /// Outcomes of the run's completed tasks, by step id.
    pub task_outcomes: HashMap<String, String>,
}

impl Current {
    pub fn holds(&self, condition: &Condition) -> bool {
        match condition {
            Condition::Band(bands) => self.band.as_ref().is_some_and(|b| bands.contains(b)),
            Condition::ScoreBelow(n) => self.score.is_some_and(|s| s < *n),
            Condition::ScoreAtLeast(n) => self.score.is_some_and(|s| s >= *n),
            Condition::DaysToRenewalBelow(n) => self.days_to_renewal.is_some_and(|d| d < *n),
            Condition::TaskOutcome { step, is } => self.task_outcomes.get(step) == Some(is),
            Condition::All(parts) => parts.iter().all(|p| self.holds(p)),
            Condition::Any(parts) => parts.iter().any(|p| self.holds(p)),
        }
    }
}

fn band_name(code: i32) -> Option<String> {
    let band = tenure_proto::common::v1::Band::try_from(code).ok()?;
    band.word().map(str::to_owned)
}

fn account_from_proto(account: ipb::Account) -> Account {
    Account {
        id: account.account_id,
        name: account.name,
        owner: account.owner,
        segment: account.segment,
        lifecycle_stage: lifecycle_name(account.lifecycle_stage),
        arr_minor: None,
    }
}

/// Account ids per batch read (ingestion's limit).
const ACCOUNTS_PER_CALL: usize = 1000;

impl Peers {
    /// The account, with its ARR from its signals; `None` when ingestion
    /// does not know it.
    pub async fn account(&self, account_id: &str) -> Result<Option<Account>, tonic::Status> {
        match self
            .ingestion
            .clone()
            .get_account(ipb::GetAccountRequest {
                account_id: account_id.to_owned(),
            })
            .await
        {
            Ok(response) => Ok(Some(account_from_proto(
                response.into_inner().account.unwrap_or_default(),
            ))),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(status),
        }
    }

    /// For each of `account_ids`, the account with what `audience` needs
    /// to judge it, or `None` when ingestion does not know it: the
    /// accounts read a thousand at a time, the ARR (only for an audience
    /// with an ARR range) one account at a time.
    pub async fn accounts_for(
        &self,
        account_ids: &[Id],
        audience: &Audience,
    ) -> Result<Vec<(String, Option<Account>)>, tonic::Status> {
        let mut known: HashMap<String, Account> = HashMap::new();
        for chunk in account_ids.chunks(ACCOUNTS_PER_CALL) {
            let answer = self
                .ingestion
                .clone()
                .batch_get_accounts(ipb::BatchGetAccountsRequest {
                    account_ids: chunk.iter().map(|id| id.as_str().to_owned()).collect(),
                })
                .await?
                .into_inner();
            for account in answer.accounts {
                known.insert(account.account_id.clone(), account_from_proto(account));
            }
        }
        let mut out = Vec::with_capacity(account_ids.len());
        for id in account_ids {
            let id = id.as_str();
            let mut account = known.get(id).cloned();
            if let Some(account) = account.as_mut()
                && (audience.arr_min_minor.is_some() || audience.arr_max_minor.is_some())
            {
                account.arr_minor = self
                    .signals(id)
                    .await?
                    .and_then(|s| s.arr)
                    .map(|m| m.amount_minor);
            }
            out.push((id.to_owned(), account));
        }
        Ok(out)
    }

    /// The account with what `audience` needs to judge it (its ARR, when
    /// the audience has an ARR range).
    pub async fn account_for(
        &self,
        account_id: &str,
        audience: &Audience,
    ) -> Result<Option<Account>, tonic::Status> {
        match self.account(account_id).await? {
            Some(account) => Ok(Some(self.judged(account, audience).await?)),
            None => Ok(None),
        }
    }

    /// `account` with its ARR from its signals when `audience` has an ARR
    /// range to judge it by.
    async fn judged(
        &self,
        mut account: Account,
        audience: &Audience,
    ) -> Result<Account, tonic::Status> {
        if audience.arr_min_minor.is_some() || audience.arr_max_minor.is_some() {
            account.arr_minor = self
                .signals(&account.id)
                .await?
                .and_then(|s| s.arr)
                .map(|m| m.amount_minor);
        }
        Ok(account)
    }

    pub async fn signals(
        &self,
        account_id: &str,
    ) -> Result<Option<ipb::AccountSignals>, tonic::Status> {
        match self
            .ingestion
            .clone()
            .get_account_signals(ipb::GetAccountSignalsRequest {
                account_id: account_id.to_owned(),
                as_of: None,
            })
            .await
        {
            Ok(response) => Ok(response.into_inner().signals),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(status),
        }
    }

    pub async fn health(&self, account_id: &str) -> Result<Option<(f64, String)>, tonic::Status> {
        match self
            .health
            .clone()
            .get_health(hpb::GetHealthRequest {
                account_id: account_id.to_owned(),
            })
            .await
        {
            Ok(response) => Ok(response
                .into_inner()
                .health
                .and_then(|h| Some((h.score, band_name(h.band)?)))),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(status),
        }
    }

    /// Active contacts holding `role`: (email, name).
    pub async fn contacts(
        &self,
        account_id: &str,
        role: &str,
    ) -> Result<Vec<(String, String)>, tonic::Status> {
        let role = match role {
            "sponsor" => ipb::ContactRole::EconomicSponsor,
            "champion" => ipb::ContactRole::Champion,
            "admin" => ipb::ContactRole::Admin,
            _ => ipb::ContactRole::User,
        };
        let mut contacts = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .ingestion
                .clone()
                .list_contacts(ipb::ListContactsRequest {
                    account_id: account_id.to_owned(),
                    role: role as i32,
                    page_size: 1000,
                    page_token,
                })
                .await?
                .into_inner();
            contacts.extend(page.contacts.into_iter().map(|c| (c.email, c.name)));
            if page.next_page_token.is_empty() {
                return Ok(contacts);
            }
            page_token = page.next_page_token;
        }
    }

    /// What `conditions` need to be judged for the account, from health
    /// and ingestion; a run's task outcomes are the caller's to add (see
    /// [`task_outcomes`]).
    pub async fn current(
        &self,
        account_id: &str,
        conditions: &[&Condition],
    ) -> anyhow::Result<Current> {
        let mut current = Current::default();
        if conditions.iter().any(|c| c.needs_health()) {
            if let Some((score, band)) = self.health(account_id).await? {
                current.score = Some(score);
                current.band = Some(band);
            }
        }
        if conditions.iter().any(|c| c.needs_signals()) {
            current.days_to_renewal = self
                .signals(account_id)
                .await?
                .and_then(|s| s.days_to_renewal)
                .map(i64::from);
        }
        Ok(current)
    }
}

/// The outcome of each completed task of each of `run_ids`, by step id.
pub async fn task_outcomes(
    db: impl sqlx::PgExecutor<'_>,
    run_ids: &[Uuid],
) -> sqlx::Result<HashMap<Uuid, HashMap<String, String>>> {
    let rows: Vec<(Uuid, String, String)> = sqlx::query_as(
        "SELECT t.run_id, s.step_id, t.outcome FROM playbooks.tasks t \
         JOIN playbooks.steps s ON s.run_id = t.run_id AND s.seq = t.seq \
         WHERE t.run_id = ANY($1) AND t.status = $2",
    )
    .bind(run_ids)
    .bind(crate::store::states::TaskStatus::Completed)
    .fetch_all(db)
    .await?;
    let mut outcomes: HashMap<Uuid, HashMap<String, String>> = HashMap::new();
    for (run_id, step_id, outcome) in rows {
        outcomes.entry(run_id).or_default().insert(step_id, outcome);
    }
    Ok(outcomes)
}
