//! Maturity models at the edge: models in and out, and an account's level,
//! its history and the base's distribution, from ingestion's signals as
//! they stood on each day.

use std::collections::{BTreeMap, HashMap};

use chrono::{Days, NaiveDate, Utc};
use tenure_proto::ingestion::v1::{AccountSignals, StreamAccountSignalsRequest};

use super::*;
use crate::maturity::model::{BehaviourDef, LevelDef, MaturityDef, Standing};
use crate::maturity::store::{self as models, StoredModel};
use crate::scoring::scorecard_inputs;
use crate::signals::{self, SignalStream};

/// The most looks one history takes.
const MAX_LOOKS: i64 = 400;

/// Validates a submitted model; returns its name and content.
fn from_proto(model: Option<&pb::MaturityModel>) -> ApiResult<(String, MaturityDef)> {
    let Some(model) = model else {
        return Err(ApiError::invalid("model", "is required"));
    };
    let mut v = Violations::default();
    v.check(
        cards::is_slug(&model.name),
        "model.name",
        "must be 1-64 characters of a-z, 0-9, - and _",
    );
    let def = MaturityDef {
        description: model.description.clone(),
        levels: model
            .levels
            .iter()
            .map(|level| LevelDef {
                name: level.name.clone(),
                description: level.description.clone(),
                behaviours: level
                    .behaviours
                    .iter()
                    .map(|b| BehaviourDef {
                        name: b.name.clone(),
                        signal: b.signal.clone(),
                        at_least: b.at_least,
                        at_most: b.at_most,
                    })
                    .collect(),
                expected_days: u32::try_from(level.expected_days).unwrap_or(u32::MAX),
            })
            .collect(),
    };
    def.validate("model", crate::signals::is_known, &mut v);
    v.into_result()?;
    Ok((model.name.clone(), def))
}

fn to_proto(stored: &StoredModel) -> pb::MaturityModel {
    let def = &stored.definition.0;
    pb::MaturityModel {
        name: stored.name.clone(),
        version: stored.version,
        description: def.description.clone(),
        levels: def
            .levels
            .iter()
            .zip(1..)
            .map(|(level, number)| pb::MaturityLevel {
                level: number,
                name: level.name.clone(),
                description: level.description.clone(),
                behaviours: level
                    .behaviours
                    .iter()
                    .map(|b| pb::Behaviour {
                        name: b.name.clone(),
                        signal: b.signal.clone(),
                        at_least: b.at_least,
                        at_most: b.at_most,
                    })
                    .collect(),
                expected_days: i32::try_from(level.expected_days).unwrap_or(i32::MAX),
            })
            .collect(),
        create_time: Some(time::to_timestamp(stored.create_time)),
    }
}

fn standing_to_proto(
    account_id: &str,
    stored: &StoredModel,
    as_of: NaiveDate,
    standing: Standing,
) -> pb::AccountMaturity {
    let def = &stored.definition.0;
    let next = standing.level + 1;
    let has_next = usize::from(next) <= def.levels.len();
    pb::AccountMaturity {
        account_id: account_id.to_owned(),
        model_name: stored.name.clone(),
        model_version: stored.version,
        as_of: Some(time::to_date(as_of)),
        level: i32::from(standing.level),
        level_name: def.level_name(standing.level).to_owned(),
        behaviours: standing
            .behaviours
            .into_iter()
            .map(|b| pb::BehaviourResult {
                level: i32::from(b.level),
                name: b.name,
                signal: b.signal,
                value: b.value,
                shown: b.shown,
            })
            .collect(),
        next_level_needs: standing.next_level_needs,
        next_level: if has_next { i32::from(next) } else { 0 },
        next_level_name: def.level_name(next).to_owned(),
    }
}

/// A day asked for, today when unset; never in the future.
fn day_or_today(
    value: Option<&tenure_proto::common::v1::Date>,
    field: &str,
    v: &mut Violations,
) -> Option<NaiveDate> {
    let today = Utc::now().date_naive();
    let Some(value) = value else {
        return Some(today);
    };
    let day = time::date(Some(value), field, v)?;
    v.check(day <= today, field, "must not be in the future");
    Some(day)
}

impl HealthApi {
    pub(super) async fn create_maturity_model(
        &self,
        request: pb::CreateMaturityModelRequest,
    ) -> ApiResult<pb::CreateMaturityModelResponse> {
        const METHOD: &str = "CreateMaturityModel";
        let (name, def) = from_proto(request.model.as_ref())?;
        idempotency::once(&self.pool, SCHEMA, METHOD, &request, async |tx| {
            let stored = models::insert(&mut *tx, &name, &def).await?;
            Ok(pb::CreateMaturityModelResponse {
                model: Some(to_proto(&stored)),
            })
        })
        .await
    }

    pub(super) async fn get_maturity_model(
        &self,
        request: pb::GetMaturityModelRequest,
    ) -> ApiResult<pb::GetMaturityModelResponse> {
        let mut violations = Violations::default();
        violations.require_text(&request.name, "name", MAX_ID);
        violations.check(request.version >= 0, "version", "must not be negative");
        violations.into_result()?;
        let version = (request.version > 0).then_some(request.version);
        Ok(pb::GetMaturityModelResponse {
            model: Some(to_proto(
                &self.maturity_model(&request.name, version).await?,
            )),
        })
    }

    pub(super) async fn list_maturity_models(
        &self,
        request: pb::ListMaturityModelsRequest,
    ) -> ApiResult<pb::ListMaturityModelsResponse> {
        let size = tenure_platform::paging::page_size(request.page_size)?;
        let after: Option<String> = tenure_platform::paging::decode_token(&request.page_token)?;
        let mut rows =
            models::list_latest(&self.pool, after.as_deref(), Some(i64::from(size) + 1)).await?;
        let next_page_token =
            tenure_platform::paging::finish_page(&mut rows, size, |r| r.name.clone());
        Ok(pb::ListMaturityModelsResponse {
            models: rows.iter().map(to_proto).collect(),
            next_page_token,
        })
    }

    pub(super) async fn get_account_maturity(
        &self,
        request: pb::GetAccountMaturityRequest,
    ) -> ApiResult<pb::GetAccountMaturityResponse> {
        let mut v = Violations::default();
        v.parse::<Id, _>("model_name", &request.model_name);
        v.parse::<Id, _>("account_id", &request.account_id);
        let as_of = day_or_today(request.as_of.as_ref(), "as_of", &mut v);
        v.into_result()?;
        let as_of = as_of.unwrap_or_else(|| Utc::now().date_naive());
        let stored = self.maturity_model(&request.model_name, None).await?;
        let mut standings = self
            .standings_at(&stored.definition.0, &[(request.account_id.clone(), as_of)])
            .await?;
        let (_, standing) = standings
            .pop()
            .ok_or_else(|| ApiError::NotFound(format!("account {}", request.account_id)))?;
        Ok(pb::GetAccountMaturityResponse {
            maturity: Some(standing_to_proto(
                &request.account_id,
                &stored,
                as_of,
                standing,
            )),
        })
    }

    pub(super) async fn get_maturity_history(
        &self,
        request: pb::GetMaturityHistoryRequest,
    ) -> ApiResult<pb::GetMaturityHistoryResponse> {
        let mut v = Violations::default();
        v.parse::<Id, _>("model_name", &request.model_name);
        v.parse::<Id, _>("account_id", &request.account_id);
        v.check(
            (0..=366).contains(&request.interval_days),
            "interval_days",
            "must be 0-366 (0: 7)",
        );
        let to = day_or_today(request.to.as_ref(), "to", &mut v);
        let from = match (&request.from, to) {
            (Some(from), _) => time::date(Some(from), "from", &mut v),
            (None, to) => to.and_then(|to| to.checked_sub_days(Days::new(365))),
        };
        let interval = i64::from(if request.interval_days == 0 {
            7
        } else {
            request.interval_days
        });
        if let (Some(from), Some(to)) = (from, to) {
            let span = (to - from).num_days();
            v.check(span >= 0, "from", "must not be after to");
            v.check(
                span / interval < MAX_LOOKS,
                "interval_days",
                format!("takes more than {MAX_LOOKS} looks between from and to"),
            );
        }
        v.into_result()?;
        let (Some(from), Some(to)) = (from, to) else {
            return Err(ApiError::invalid("from", "is not a day"));
        };
        let stored = self.maturity_model(&request.model_name, None).await?;
        let def = &stored.definition.0;
        let mut days: Vec<NaiveDate> = std::iter::successors(Some(to), |day| {
            day.checked_sub_days(Days::new(interval as u64))
                .filter(|d| *d >= from)
        })
        .collect();
        days.reverse();
        let pairs: Vec<(String, NaiveDate)> = days
            .iter()
            .map(|day| (request.account_id.clone(), *day))
            .collect();
        let standings = self.standings_at(def, &pairs).await?;
        if standings.is_empty() {
            return Err(ApiError::NotFound(format!(
                "account {}",
                request.account_id
            )));
        }
        let points: Vec<pb::MaturityPoint> = standings
            .iter()
            .map(|((_, day), standing)| pb::MaturityPoint {
                day: Some(time::to_date(*day)),
                level: i32::from(standing.level),
            })
            .collect();
        let changes = points
            .windows(2)
            .filter(|w| w[0].level != w[1].level)
            .map(|w| pb::MaturityChange {
                day: w[1].day,
                from_level: w[0].level,
                to_level: w[1].level,
                to_level_name: def
                    .level_name(u8::try_from(w[1].level).unwrap_or(0))
                    .to_owned(),
            })
            .collect();
        Ok(pb::GetMaturityHistoryResponse {
            model_version: stored.version,
            points,
            changes,
        })
    }

    pub(super) async fn get_maturity_distribution(
        &self,
        request: pb::GetMaturityDistributionRequest,
    ) -> ApiResult<pb::GetMaturityDistributionResponse> {
        let mut v = Violations::default();
        v.parse::<Id, _>("model_name", &request.model_name);
        v.limit_text(&request.segment, "segment", MAX_ID);
        let as_of = day_or_today(request.as_of.as_ref(), "as_of", &mut v);
        v.into_result()?;
        let as_of = as_of.unwrap_or_else(|| Utc::now().date_naive());
        let stored = self.maturity_model(&request.model_name, None).await?;
        let def = &stored.definition.0;
        let request_signals = StreamAccountSignalsRequest {
            as_of: Some(time::to_date(as_of)),
            ..Default::default()
        };
        let mut stream = SignalStream::open(&self.ingestion, request_signals).await?;
        // Accounts per level, by segment.
        let mut counts: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        let mut chunk: Vec<AccountSignals> = Vec::new();
        loop {
            let next = stream.next().await?;
            let done = next.is_none();
            chunk.extend(
                next.filter(|s| request.segment.is_empty() || s.segment == request.segment),
            );
            if chunk.len() >= 500 || done {
                let ids: Vec<String> = chunk.iter().map(|s| s.account_id.clone()).collect();
                let assessments = store::assessments(&self.pool, &ids, as_of).await?;
                for signals in chunk.drain(..) {
                    let level = def.assess(&scorecard_inputs(&signals, &assessments)).level;
                    let levels = counts
                        .entry(signals.segment)
                        .or_insert_with(|| vec![0; def.levels.len() + 1]);
                    levels[usize::from(level)] += 1;
                }
            }
            if done {
                break;
            }
        }
        let mut all = vec![0; def.levels.len() + 1];
        for levels in counts.values() {
            for (total, n) in all.iter_mut().zip(levels) {
                *total += n;
            }
        }
        let segment = |name: &str, levels: &[i64]| {
            let accounts: i64 = levels.iter().sum();
            pb::SegmentMaturity {
                segment: name.to_owned(),
                accounts,
                levels: levels
                    .iter()
                    .zip(0u8..)
                    .map(|(n, level)| pb::LevelCount {
                        level: i32::from(level),
                        level_name: def.level_name(level).to_owned(),
                        accounts: *n,
                        share_pct: if accounts > 0 {
                            *n as f64 * 100.0 / accounts as f64
                        } else {
                            0.0
                        },
                    })
                    .collect(),
            }
        };
        Ok(pb::GetMaturityDistributionResponse {
            model_version: stored.version,
            as_of: Some(time::to_date(as_of)),
            all: Some(segment(&request.segment, &all)),
            segments: counts
                .iter()
                .map(|(name, levels)| segment(name, levels))
                .collect(),
        })
    }

    async fn maturity_model(&self, name: &str, version: Option<i32>) -> ApiResult<StoredModel> {
        models::get(&self.pool, name, version)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("maturity model {name}")))
    }

    /// Each (account, day)'s standing on `def`, in the order given, from
    /// its signals and assessment as of that day.
    async fn standings_at(
        &self,
        def: &MaturityDef,
        pairs: &[(String, NaiveDate)],
    ) -> ApiResult<Vec<((String, NaiveDate), Standing)>> {
        let mut stream = SignalStream::open(&self.ingestion, signals::at_days(pairs)).await?;
        let mut by_day: BTreeMap<NaiveDate, Vec<AccountSignals>> = BTreeMap::new();
        let mut order = Vec::with_capacity(pairs.len());
        while let Some(signals) = stream.next().await? {
            let Some(day) = signals.as_of.as_ref().and_then(time::from_date) else {
                continue;
            };
            order.push((signals.account_id.clone(), day));
            by_day.entry(day).or_default().push(signals);
        }
        let mut standings: HashMap<(String, NaiveDate), Standing> = HashMap::new();
        for (day, signals) in by_day {
            let ids: Vec<String> = signals.iter().map(|s| s.account_id.clone()).collect();
            let assessments = store::assessments(&self.pool, &ids, day).await?;
            for s in signals {
                let standing = def.assess(&scorecard_inputs(&s, &assessments));
                standings.insert((s.account_id, day), standing);
            }
        }
        Ok(order
            .into_iter()
            .filter_map(|key| {
                let standing = standings.remove(&key)?;
                Some((key, standing))
            })
            .collect())
    }
}
