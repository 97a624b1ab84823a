//! Builders of realistic source records for the tests.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use tenure_platform::time::{to_date, to_timestamp};
use tenure_proto::common::v1::{Date, Money};
use tenure_proto::ingestion::v1 as pb;

pub(crate) fn days_ago(days: i64) -> DateTime<Utc> {
    Utc::now() - Duration::days(days)
}

pub(crate) fn ts(at: DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(to_timestamp(at))
}

pub(crate) fn date(day: NaiveDate) -> Option<Date> {
    Some(to_date(day))
}

pub(crate) fn today_minus(days: u64) -> NaiveDate {
    Utc::now().date_naive() - chrono::Days::new(days)
}

pub(crate) fn usd(minor: i64) -> Option<Money> {
    Some(Money {
        currency_code: "USD".into(),
        amount_minor: minor,
    })
}

pub(crate) fn contact(
    id: &str,
    account: &str,
    roles: &[pb::ContactRole],
    active: bool,
    at: DateTime<Utc>,
) -> pb::Contact {
    pb::Contact {
        contact_id: id.into(),
        account_id: account.into(),
        email: format!("{id}@{account}.test"),
        name: id.into(),
        title: "VP".into(),
        roles: roles.iter().map(|r| *r as i32).collect(),
        active,
        updated_at: ts(at),
    }
}

pub(crate) fn subscription(
    id: &str,
    account: &str,
    seats: i32,
    arr: i64,
    start: NaiveDate,
    end: NaiveDate,
    at: DateTime<Utc>,
) -> pb::Subscription {
    pb::Subscription {
        subscription_id: id.into(),
        account_id: account.into(),
        status: pb::SubscriptionStatus::Active as i32,
        term_start: date(start),
        term_end: date(end),
        arr: usd(arr),
        seats,
        auto_renew: true,
        line_items: vec![pb::LineItem {
            product: "platform".into(),
            plan: "pro".into(),
            quantity: seats,
            arr: usd(arr),
        }],
        updated_at: ts(at),
    }
}

pub(crate) fn ticket(
    id: &str,
    account: &str,
    priority: pb::TicketPriority,
    category: pb::TicketCategory,
    opened: DateTime<Utc>,
    closed: Option<DateTime<Utc>>,
) -> pb::Ticket {
    pb::Ticket {
        ticket_id: id.into(),
        account_id: account.into(),
        opened_at: ts(opened),
        closed_at: closed.and_then(ts),
        priority: priority as i32,
        category: category as i32,
        status: if closed.is_some() {
            pb::TicketStatus::Closed
        } else {
            pb::TicketStatus::Open
        } as i32,
        csat: 0,
        updated_at: ts(closed.unwrap_or(opened)),
    }
}

pub(crate) fn nps(id: &str, account: &str, score: i32, at: DateTime<Utc>) -> pb::SurveyResponse {
    pb::SurveyResponse {
        response_id: id.into(),
        account_id: account.into(),
        contact_id: "c-1".into(),
        kind: pb::SurveyKind::Nps as i32,
        score,
        comment: String::new(),
        responded_at: ts(at),
        updated_at: ts(at),
    }
}

pub(crate) fn event(
    id: &str,
    account: &str,
    user: &str,
    name: &str,
    at: DateTime<Utc>,
) -> pb::UsageEvent {
    pb::UsageEvent {
        message_id: id.into(),
        account_id: account.into(),
        user_id: user.into(),
        event_name: name.into(),
        occurred_at: ts(at),
        quantity: 1.0,
        properties: None,
    }
}

/// Creates, through ingestion, accounts of `segment` (last changed a day
/// ago) and for each `(subscription, account, end)` a year's term ending on
/// `end`, of no recurring revenue: a term that renewal outcomes can name
/// without moving any revenue figure.
pub(crate) async fn past_terms(
    app: &mut tenure_tests::TestStack,
    segment: &str,
    terms: &[(String, String, NaiveDate)],
) {
    past_terms_in(app, Some(segment), "USD", terms).await;
}

/// As [`past_terms`], in `currency`; with no `segment` the accounts are
/// left as they are (they exist already).
pub(crate) async fn past_terms_in(
    app: &mut tenure_tests::TestStack,
    segment: Option<&str>,
    currency: &str,
    terms: &[(String, String, NaiveDate)],
) {
    if let Some(segment) = segment {
        let mut accounts: Vec<&String> = terms.iter().map(|(_, account, _)| account).collect();
        accounts.sort();
        accounts.dedup();
        let accounts = accounts
            .into_iter()
            .map(|id| pb::Account {
                account_id: id.clone(),
                name: id.clone(),
                segment: segment.into(),
                owner: "dana".into(),
                updated_at: ts(days_ago(1)),
                ..Default::default()
            })
            .collect();
        app.ingestion
            .batch_upsert_accounts(pb::BatchUpsertAccountsRequest {
                request_id: String::new(),
                accounts,
            })
            .await
            .expect("accounts");
    }
    let subscriptions = terms
        .iter()
        .map(|(id, account, end)| {
            let start = *end - chrono::Days::new(365);
            let at = start.and_hms_opt(12, 0, 0).map(|t| t.and_utc());
            let at = at.filter(|at| *at < days_ago(1)).unwrap_or(days_ago(1));
            let mut term = subscription(id, account, 1, 0, start, *end, at);
            for money in std::iter::once(&mut term.arr)
                .chain(term.line_items.iter_mut().map(|item| &mut item.arr))
                .flatten()
            {
                money.currency_code = currency.into();
            }
            term
        })
        .collect();
    app.ingestion
        .batch_upsert_subscriptions(pb::BatchUpsertSubscriptionsRequest {
            request_id: String::new(),
            subscriptions,
        })
        .await
        .expect("subscriptions");
}

/// Every account's signals a stream answers, in order; more than `most`
/// means the stream started over.
pub(crate) async fn streamed_signals(
    app: &mut tenure_tests::TestStack,
    request: pb::StreamAccountSignalsRequest,
    most: usize,
) -> Vec<pb::AccountSignals> {
    let mut stream = app
        .ingestion
        .stream_account_signals(request)
        .await
        .unwrap()
        .into_inner();
    let mut streamed = Vec::new();
    while let Some(message) = stream.message().await.unwrap() {
        streamed.push(message.signals.unwrap());
        assert!(streamed.len() <= most, "the stream starts over");
    }
    streamed
}

/// A scorecard named `name` of one measure: `signal` mapped linearly from
/// `worst` (0) to `best` (100).
pub(crate) fn single_measure_scorecard(
    name: &str,
    signal: &str,
    worst: f64,
    best: f64,
) -> tenure_proto::health::v1::CreateScorecardRequest {
    use tenure_proto::health::v1 as hpb;
    hpb::CreateScorecardRequest {
        request_id: String::new(),
        scorecard: Some(hpb::Scorecard {
            name: name.into(),
            groups: vec![hpb::MeasureGroup {
                name: "Measures".into(),
                measures: vec![hpb::Measure {
                    name: signal.into(),
                    signal: signal.into(),
                    weight: 1.0,
                    rule: Some(hpb::measure::Rule::Linear(hpb::LinearRule { worst, best })),
                }],
            }],
            ..Default::default()
        }),
    }
}
