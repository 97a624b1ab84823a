//! Peer benchmarks: each measure of an account against the same measure of
//! its peers (its segment on the day, or a cohort the caller states). The
//! measures and the statistics are [`peers`]; this is the gRPC edge and the
//! reads it needs.

pub mod peers;

use std::collections::{BTreeMap, HashSet};

use chrono::NaiveDate;
use sqlx::PgPool;
use tenure_platform::input::Id;
use tenure_platform::{ApiError, ApiResult, Violations, time};
use tenure_proto::ingestion::v1 as pb;

use crate::convert::MAX_ID;
use crate::grpc::{as_of_date, inputs_of};
use crate::signals;
use crate::state::IngestionApi;

/// The most peers a caller may name.
const MAX_PEERS: usize = 10_000;
/// Peers whose signals are read in one batch.
const BATCH: usize = 500;

impl IngestionApi {
    pub(crate) async fn get_peer_benchmarks(
        &self,
        request: pb::GetPeerBenchmarksRequest,
    ) -> ApiResult<pb::GetPeerBenchmarksResponse> {
        let mut violations = Violations::default();
        violations.parse::<Id, _>("account_id", &request.account_id);
        let as_of = as_of_date(request.as_of.as_ref(), &mut violations);
        violations.limit_text(&request.segment, "segment", MAX_ID);
        if request.peer_account_ids.len() > MAX_PEERS {
            violations.add(
                "peer_account_ids",
                format!("may name at most {MAX_PEERS} accounts"),
            );
        } else {
            violations.parse_each::<Id>("peer_account_ids", &request.peer_account_ids);
        }
        violations.check(
            request.peer_account_ids.is_empty() || request.segment.is_empty(),
            "segment",
            "name the peers by peer_account_ids or by segment, not both",
        );
        violations.into_result()?;

        let inputs = inputs_of(&self.pool, &request.account_id, as_of).await?;
        let (segment, peer_ids) = if !request.peer_account_ids.is_empty() {
            let mut seen = HashSet::new();
            let ids: Vec<String> = request
                .peer_account_ids
                .iter()
                .filter(|id| **id != request.account_id && seen.insert(id.as_str()))
                .cloned()
                .collect();
            let known = known_by(&self.pool, &ids, as_of).await?;
            if let Some(i) = request
                .peer_account_ids
                .iter()
                .position(|id| *id != request.account_id && !known.contains(id))
            {
                return Err(ApiError::invalid(
                    format!("peer_account_ids[{i}]"),
                    format!("names no account known on {as_of}"),
                ));
            }
            (String::new(), ids)
        } else {
            let segment = if request.segment.is_empty() {
                inputs.segment.clone()
            } else {
                request.segment.clone()
            };
            let ids = in_segment(&self.pool, &segment, as_of, &request.account_id).await?;
            (segment, ids)
        };

        let mut values: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut peer_count = 0;
        for chunk in peer_ids.chunks(BATCH) {
            let loaded = signals::load_many(&self.pool, chunk, as_of).await?;
            peer_count += loaded.len();
            for peer in &loaded {
                for measure in peers::measures(peer, as_of) {
                    values.entry(measure.name).or_default().push(measure.value);
                }
            }
        }

        let benchmarks = peers::measures(&inputs, as_of)
            .into_iter()
            .filter_map(|measure| {
                let standing = peers::standing(
                    measure.value,
                    values.get(&measure.name)?,
                    measure.higher_is_better,
                )?;
                Some(pb::PeerBenchmark {
                    measure: measure.name,
                    unit: measure.unit,
                    higher_is_better: measure.higher_is_better,
                    value: measure.value,
                    peer_count: standing.peer_count as i64,
                    percentile: standing.percentile,
                    median: standing.median,
                    top_quartile: standing.top_quartile,
                    bottom_quartile: standing.bottom_quartile,
                })
            })
            .collect();
        Ok(pb::GetPeerBenchmarksResponse {
            account_id: request.account_id,
            as_of: Some(time::to_date(as_of)),
            segment,
            peer_count: peer_count as i64,
            benchmarks,
        })
    }
}

/// Those of `ids` that had an account by the end of `as_of`.
async fn known_by(
    pool: &PgPool,
    ids: &[String],
    as_of: NaiveDate,
) -> sqlx::Result<HashSet<String>> {
    let known: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT account_id FROM ingestion.account_versions \
         WHERE account_id = ANY($1) AND valid_from < $2",
    )
    .bind(ids)
    .bind(signals::cutoff(as_of))
    .fetch_all(pool)
    .await?;
    Ok(known.into_iter().collect())
}

/// The accounts of `segment` at the end of `as_of` (their latest version
/// by then), in id order, but `except`.
async fn in_segment(
    pool: &PgPool,
    segment: &str,
    as_of: NaiveDate,
    except: &str,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT account_id FROM ( \
           SELECT DISTINCT ON (account_id) account_id, segment FROM ingestion.account_versions \
           WHERE valid_from < $1 ORDER BY account_id, valid_from DESC) latest \
         WHERE segment = $2 AND account_id <> $3 ORDER BY account_id",
    )
    .bind(signals::cutoff(as_of))
    .bind(segment)
    .bind(except)
    .fetch_all(pool)
    .await
}
