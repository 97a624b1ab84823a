//! Health scorecards and scores over real ingestion signals.

mod assessments;
mod cards;
mod changes;
mod history;
mod lists;
mod queue;
mod rollups;
mod watchers;

use std::time::Duration;

use tenure_proto::health::v1 as hpb;
use tenure_proto::ingestion::v1 as pb;
use tenure_tests::{TestStack, eventually, violated_fields};

use crate::fixtures::*;
use crate::ingestion::account;

pub(crate) fn linear(name: &str, signal: &str, weight: f64, worst: f64, best: f64) -> hpb::Measure {
    hpb::Measure {
        name: name.into(),
        signal: signal.into(),
        weight,
        rule: Some(hpb::measure::Rule::Linear(hpb::LinearRule { worst, best })),
    }
}

pub(crate) fn card(
    name: &str,
    segment: &str,
    groups: Vec<hpb::MeasureGroup>,
) -> hpb::CreateScorecardRequest {
    hpb::CreateScorecardRequest {
        request_id: String::new(),
        scorecard: Some(hpb::Scorecard {
            name: name.into(),
            segment: segment.into(),
            groups,
            ..Default::default()
        }),
    }
}

pub(crate) fn group(name: &str, measures: Vec<hpb::Measure>) -> hpb::MeasureGroup {
    hpb::MeasureGroup {
        name: name.into(),
        measures,
    }
}

/// One account (enterprise, 400 seats) and [`p1_scorecard`].
pub(crate) async fn one_account_scored_on_p1(app: &mut TestStack, id: &str, name: &str) {
    app.ingestion
        .batch_upsert_accounts(pb::BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts: vec![account(id, name, 400)],
        })
        .await
        .unwrap();
    p1_scorecard(app).await;
}

/// The default scorecard of a single measure, open P1 tickets (3 or more:
/// 0; none: 100).
pub(crate) async fn p1_scorecard(app: &mut TestStack) {
    app.health
        .create_scorecard(card(
            "default",
            "",
            vec![group(
                "Support",
                vec![linear("p1", "open_tickets_p1", 1.0, 3.0, 0.0)],
            )],
        ))
        .await
        .unwrap();
}
