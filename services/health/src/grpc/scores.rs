//! Scorecards, recomputing and reading scores, assessments and history.

use super::*;

impl HealthApi {
    pub(super) async fn create_scorecard(
        &self,
        request: pb::CreateScorecardRequest,
    ) -> ApiResult<pb::CreateScorecardResponse> {
        const METHOD: &str = "CreateScorecard";
        let (name, def) = cards::from_proto(request.scorecard.as_ref())?;
        idempotency::once(&self.pool, SCHEMA, METHOD, &request, async |tx| {
            let stored = store::insert_scorecard(&mut *tx, &name, &def).await?;
            Ok(pb::CreateScorecardResponse {
                scorecard: Some(cards::to_proto(&stored)),
            })
        })
        .await
    }

    pub(super) async fn get_scorecard(
        &self,
        request: pb::GetScorecardRequest,
    ) -> ApiResult<pb::GetScorecardResponse> {
        let mut violations = Violations::default();
        violations.require_text(&request.name, "name", MAX_ID);
        violations.check(request.version >= 0, "version", "must not be negative");
        violations.into_result()?;
        let version = (request.version > 0).then_some(request.version);
        let stored = store::scorecard(&self.pool, &request.name, version)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("scorecard {}", request.name)))?;
        Ok(pb::GetScorecardResponse {
            scorecard: Some(cards::to_proto(&stored)),
        })
    }

    pub(super) async fn list_scorecards(
        &self,
        request: pb::ListScorecardsRequest,
    ) -> ApiResult<pb::ListScorecardsResponse> {
        let size = tenure_platform::paging::page_size(request.page_size)?;
        let after: Option<String> = tenure_platform::paging::decode_token(&request.page_token)?;
        let mut rows =
            store::list_latest(&self.pool, after.as_deref(), i64::from(size) + 1).await?;
        let next_page_token =
            tenure_platform::paging::finish_page(&mut rows, size, |r| r.name.clone());
        Ok(pb::ListScorecardsResponse {
            scorecards: rows.iter().map(cards::to_proto).collect(),
            next_page_token,
        })
    }

    pub(super) async fn recompute_health(
        &self,
        request: pb::RecomputeHealthRequest,
    ) -> ApiResult<pb::RecomputeHealthResponse> {
        let mut violations = Violations::default();
        if request.all_accounts {
            violations.check(
                request.account_ids.is_empty(),
                "account_ids",
                "must be empty with all_accounts",
            );
        } else {
            violations.check(
                !request.account_ids.is_empty(),
                "account_ids",
                "must not be empty",
            );
        }
        violations.check(
            request.account_ids.len() <= 10_000,
            "account_ids",
            "must hold at most 10000 ids",
        );
        violations.parse_each::<Id>("account_ids", &request.account_ids);
        violations.into_result()?;
        if request.all_accounts {
            let scored = self
                .scorer
                .recompute_all(&mut self.ingestion.clone())
                .await?;
            return Ok(pb::RecomputeHealthResponse {
                healths: Vec::new(),
                scored_count: scored as i32,
            });
        }
        let healths = self.scorer.recompute(request.account_ids).await?;
        Ok(pb::RecomputeHealthResponse {
            scored_count: healths.len() as i32,
            healths,
        })
    }

    pub(super) async fn record_assessment(
        &self,
        request: pb::RecordAssessmentRequest,
    ) -> ApiResult<pb::RecordAssessmentResponse> {
        const METHOD: &str = "RecordAssessment";
        let mut violations = Violations::default();
        violations.parse::<Id, _>("account_id", &request.account_id);
        violations.check(
            (0.0..=100.0).contains(&request.score),
            "score",
            "must lie in 0-100",
        );
        violations.limit_text(&request.note, "note", 4000);
        violations.limit_text(&request.assessed_by, "assessed_by", MAX_ID);
        let expires_on = time::date(request.expires_on.as_ref(), "expires_on", &mut violations);
        if let Some(day) = expires_on {
            violations.check(
                day >= chrono::Utc::now().date_naive(),
                "expires_on",
                "must not be in the past",
            );
        }
        violations.into_result()?;
        let expires_on = expires_on.ok_or_else(|| anyhow::anyhow!("validated date missing"))?;
        idempotency::once(&self.pool, SCHEMA, METHOD, &request, async |tx| {
            let id = store::insert_assessment(
                &mut *tx,
                &request.account_id,
                request.score,
                &request.note,
                &request.assessed_by,
                expires_on,
            )
            .await?;
            // The scorer picks the account up and rescores it with the assessment.
            queue::mark(&mut *tx, std::slice::from_ref(&request.account_id), None).await?;
            Ok(pb::RecordAssessmentResponse {
                assessment_id: id.to_string(),
            })
        })
        .await
    }

    pub(super) async fn get_health(
        &self,
        request: pb::GetHealthRequest,
    ) -> ApiResult<pb::GetHealthResponse> {
        let account_id: Id = input::parse("account_id", &request.account_id)?;
        let mut health = store::latest_score(&self.pool, account_id.as_str())
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("a score for account {account_id}")))?;
        let as_of = health
            .as_of
            .as_ref()
            .and_then(|d| time::date(Some(d), "as_of", &mut Violations::default()))
            .unwrap_or_else(|| chrono::Utc::now().date_naive());
        let [change_7d, change_30d, change_90d] =
            store::trend(&self.pool, &health.account_id, as_of, health.score).await?;
        health.trend = Some(pb::Trend {
            change_7d,
            change_30d,
            change_90d,
        });
        let method = self.rollup;
        if let Some((score, child_count)) =
            store::rollup(&self.pool, &health.account_id, method).await?
        {
            let bands = store::scorecard(
                &self.pool,
                &health.scorecard_name,
                Some(health.scorecard_version),
            )
            .await?
            .map(|card| card.definition.0.bands)
            .unwrap_or_default();
            health.rollup = Some(pb::ParentRollup {
                score,
                band: crate::scoring::band_to_proto(bands.band(score)) as i32,
                child_count: child_count as i32,
                method: method.name().to_owned(),
            });
        }
        Ok(pb::GetHealthResponse {
            health: Some(health),
        })
    }

    pub(super) async fn get_health_history(
        &self,
        request: pb::GetHealthHistoryRequest,
    ) -> ApiResult<pb::GetHealthHistoryResponse> {
        let size = tenure_platform::paging::page_size(request.page_size)?;
        let after: Option<chrono::NaiveDate> =
            tenure_platform::paging::decode_token(&request.page_token)?;
        let mut violations = Violations::default();
        violations.parse::<Id, _>("account_id", &request.account_id);
        let range: Option<Window> = violations.parse("range", request.range.as_ref());
        let Window {
            start: from,
            end: before,
        } = range.unwrap_or_default();
        violations.into_result()?;
        let mut rows = store::history(
            &self.pool,
            &request.account_id,
            from,
            before,
            after,
            i64::from(size) + 1,
        )
        .await?;
        let next_page_token = tenure_platform::paging::finish_page(&mut rows, size, |s| s.day);
        Ok(pb::GetHealthHistoryResponse {
            snapshots: rows
                .into_iter()
                .map(|s| pb::HealthSnapshot {
                    day: Some(time::to_date(s.day)),
                    score: s.score,
                    band: i32::from(s.band),
                    scorecard_name: s.scorecard_name,
                    scorecard_version: s.scorecard_version,
                })
                .collect(),
            next_page_token,
        })
    }
}
