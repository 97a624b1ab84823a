//! Lists of scored accounts and the distribution of health.

use super::*;

fn summary(row: store::Listed) -> pb::AccountHealthSummary {
    let money = |minor| tenure_proto::common::v1::Money {
        currency_code: row.currency.clone(),
        amount_minor: minor,
    };
    pb::AccountHealthSummary {
        account_id: row.account_id.clone(),
        score: row.score,
        band: i32::from(row.band),
        segment: row.segment.clone(),
        owner: row.owner.clone(),
        arr: Some(money(row.arr_minor)),
        arr_at_risk: Some(money(row.arr_at_risk_minor)),
        advocacy: None,
    }
}

fn list_filter(
    band: i32,
    segment: String,
    owner: String,
    violations: &mut Violations,
) -> store::ListFilter {
    let band = match tenure_proto::common::v1::Band::try_from(band) {
        Ok(tenure_proto::common::v1::Band::Unspecified) => None,
        Ok(band) => Some(band as i16),
        Err(_) => {
            violations.add("band", "is not a known band");
            None
        }
    };
    violations.limit_text(&segment, "segment", MAX_ID);
    violations.limit_text(&owner, "owner", MAX_ID);
    store::ListFilter {
        band,
        segment: (!segment.is_empty()).then_some(segment),
        owner: (!owner.is_empty()).then_some(owner),
    }
}

impl HealthApi {
    pub(super) async fn list_account_health(
        &self,
        request: pb::ListAccountHealthRequest,
    ) -> ApiResult<pb::ListAccountHealthResponse> {
        use tenure_platform::paging::{decode_token, finish_page, page_size};
        let size = page_size(request.page_size)?;
        let mut violations = Violations::default();
        let filter = list_filter(
            request.band,
            request.segment,
            request.owner,
            &mut violations,
        );
        let sort = pb::HealthSort::try_from(request.sort).unwrap_or_default();
        violations.into_result()?;
        let limit = i64::from(size) + 1;
        let (rows, next_page_token) = if sort == pb::HealthSort::ArrAtRiskDescending {
            let after: Option<(i64, String)> = decode_token(&request.page_token)?;
            let mut rows = store::list_by_arr_at_risk(&self.pool, &filter, after, limit).await?;
            let token = finish_page(&mut rows, size, |r| {
                (r.arr_at_risk_minor, r.account_id.clone())
            });
            (rows, token)
        } else {
            let after: Option<(f64, String)> = decode_token(&request.page_token)?;
            let mut rows = store::list_by_score(&self.pool, &filter, after, limit).await?;
            let token = finish_page(&mut rows, size, |r| (r.score, r.account_id.clone()));
            (rows, token)
        };
        Ok(pb::ListAccountHealthResponse {
            accounts: rows.into_iter().map(summary).collect(),
            next_page_token,
        })
    }

    pub(super) async fn batch_get_health(
        &self,
        request: pb::BatchGetHealthRequest,
    ) -> ApiResult<pb::BatchGetHealthResponse> {
        let mut violations = Violations::default();
        let ids = account_batch(request.account_ids, &mut violations);
        violations.into_result()?;
        let rows = store::listed(&self.pool, &ids).await?;
        let unscored_account_ids =
            tenure_platform::batch::missing(&ids, rows.iter().map(|r| r.account_id.as_str()));
        Ok(pb::BatchGetHealthResponse {
            scores: rows.into_iter().map(summary).collect(),
            unscored_account_ids,
        })
    }

    pub(super) async fn get_health_distribution(
        &self,
        request: pb::GetHealthDistributionRequest,
    ) -> ApiResult<pb::GetHealthDistributionResponse> {
        let mut violations = Violations::default();
        let filter = list_filter(0, request.segment, request.owner, &mut violations);
        violations.check(
            (0..=100).contains(&request.tail_size),
            "tail_size",
            "must be 0-100",
        );
        violations.into_result()?;
        let tail = if request.tail_size == 0 {
            10
        } else {
            i64::from(request.tail_size)
        };
        let rows = store::distribution(&self.pool, &filter).await?;
        let mut histogram: Vec<pb::HistogramBucket> = (0..10)
            .map(|i| pb::HistogramBucket {
                lower: f64::from(i) * 10.0,
                upper: f64::from(i + 1) * 10.0,
                count: 0,
            })
            .collect();
        let mut bands: std::collections::BTreeMap<
            i16,
            (i32, std::collections::BTreeMap<String, i64>),
        > = std::collections::BTreeMap::new();
        for (score, band, currency, arr) in rows {
            let bucket = ((score / 10.0).floor().clamp(0.0, 9.0)) as usize;
            histogram[bucket].count += 1;
            let entry = bands.entry(band).or_default();
            entry.0 += 1;
            if !currency.is_empty() {
                *entry.1.entry(currency).or_default() += arr;
            }
        }
        let at_risk = store::list_by_score(&self.pool, &filter, None, tail).await?;
        let advocates = store::top(&self.pool, &filter, tail).await?;
        let advocates = self.with_advocacy(advocates).await?;
        Ok(pb::GetHealthDistributionResponse {
            histogram,
            bands: bands
                .into_iter()
                .map(|(band, (count, arr))| pb::BandTotal {
                    band: i32::from(band),
                    account_count: count,
                    arr: arr
                        .into_iter()
                        .map(
                            |(currency_code, amount_minor)| tenure_proto::common::v1::Money {
                                currency_code,
                                amount_minor,
                            },
                        )
                        .collect(),
                })
                .collect(),
            at_risk: at_risk.into_iter().map(summary).collect(),
            advocates,
        })
    }

    /// The advocate tail, each account with what it has done as an
    /// advocate (ingestion's advocacy summaries as of today).
    async fn with_advocacy(
        &self,
        advocates: Vec<store::Listed>,
    ) -> ApiResult<Vec<pb::AccountHealthSummary>> {
        if advocates.is_empty() {
            return Ok(Vec::new());
        }
        let request = tenure_proto::ingestion::v1::GetAdvocacySummariesRequest {
            account_ids: advocates.iter().map(|a| a.account_id.clone()).collect(),
            as_of: None,
        };
        let mut found: std::collections::HashMap<String, _> = self
            .ingestion
            .clone()
            .get_advocacy_summaries(request)
            .await
            .map_err(|s| ApiError::from_upstream(s, "advocacy summaries"))?
            .into_inner()
            .accounts
            .into_iter()
            .map(|a| (a.account_id, a.summary))
            .collect();
        Ok(advocates
            .into_iter()
            .map(|row| {
                let advocacy = found.remove(&row.account_id).flatten();
                pb::AccountHealthSummary {
                    advocacy,
                    ..summary(row)
                }
            })
            .collect())
    }
}
