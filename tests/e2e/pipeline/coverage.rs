//! Service tiers and coverage: each customer's tier on a day by the first
//! rule it meets, the team each tier needs, and each CSM's book against
//! their capacity.

use tenure_platform::client::TracedChannel;
use tenure_proto::common::v1::Money;
use tenure_proto::ingestion::v1 as ipb;
use tenure_proto::renewals::v1 as pb;
use tenure_proto::renewals::v1::renewals_service_client::RenewalsServiceClient;
use tenure_tests::{TestStack, violated_fields};

use super::{at, day, subscriptions, synced};
use crate::fixtures::{date, subscription, ts, usd};

/// Minor units of `n` dollars.
fn dollars(n: i64) -> i64 {
    n * 100
}

fn tier(id: &str, min_arr: Option<i64>, segments: &[&str], hours: f64) -> pb::ServiceTier {
    pb::ServiceTier {
        tier_id: id.into(),
        display_name: String::new(),
        min_arr: min_arr.and_then(usd),
        segments: segments.iter().map(|s| (*s).into()).collect(),
        hours_per_account_month: hours,
    }
}

fn model(request_id: &str) -> pb::PutCoverageModelRequest {
    pb::PutCoverageModelRequest {
        request_id: request_id.into(),
        currency_code: "USD".into(),
        tiers: vec![
            tier("top", Some(dollars(100_000)), &[], 10.0),
            tier(
                "leveraged",
                Some(dollars(20_000)),
                &["mid-market", "enterprise"],
                2.0,
            ),
            tier("scalable", None, &[], 0.0),
        ],
        csm_hours_per_month: 21.0,
    }
}

/// Accounts with their segment, owner and ARR in force on 2025-06-30; the
/// last pays in euros, and `gone` ended its term before that day.
async fn book(app: &mut TestStack) {
    let book = [
        ("top-1", "enterprise", "ana", dollars(200_000)),
        ("top-2", "enterprise", "ana", dollars(300_000)),
        ("small-1", "mid-market", "ana", dollars(25_000)),
        ("small-2", "mid-market", "ana", dollars(30_000)),
        ("pooled", "smb", "ana", dollars(1_000)),
        ("orphan", "enterprise", "", dollars(150_000)),
        ("gone", "enterprise", "ana", dollars(90_000)),
        ("euro", "enterprise", "ana", dollars(80_000)),
    ];
    let accounts = book
        .iter()
        .map(|(id, segment, owner, _)| ipb::Account {
            account_id: (*id).into(),
            name: format!("{id} Inc"),
            segment: (*segment).into(),
            owner: (*owner).into(),
            updated_at: ts(at("2024-01-01")),
            ..Default::default()
        })
        .collect();
    app.ingestion
        .batch_upsert_accounts(ipb::BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts,
        })
        .await
        .unwrap();
    let subs = book
        .iter()
        .map(|(id, _, _, arr)| {
            let (start, end, recorded) = if *id == "gone" {
                (day("2024-01-01"), day("2025-01-01"), at("2023-12-15"))
            } else {
                (day("2025-01-01"), day("2026-01-01"), at("2024-12-01"))
            };
            let mut sub = subscription(&format!("{id}-s"), id, 10, *arr, start, end, recorded);
            if *id == "euro" {
                let eur = Some(Money {
                    currency_code: "EUR".into(),
                    amount_minor: *arr,
                });
                sub.arr = eur.clone();
                sub.line_items[0].arr = eur;
            }
            sub
        })
        .collect();
    subscriptions(app, subs).await;
    synced(app).await;
}

async fn report_on(
    renewals: &mut RenewalsServiceClient<TracedChannel>,
    as_of: &str,
) -> pb::GetCoverageReportResponse {
    renewals
        .get_coverage_report(pb::GetCoverageReportRequest {
            as_of: date(day(as_of)),
            model_version: 0,
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn tiers_and_books_follow_the_model_on_the_day_asked() {
    let mut app = TestStack::spawn().await;
    book(&mut app).await;
    let renewals = &mut app.renewals;
    let put = renewals
        .put_coverage_model(model("cov-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(put.model.as_ref().unwrap().version, 1);
    // A retry returns the version it made; a new request makes the next.
    let again = renewals
        .put_coverage_model(model("cov-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.model.unwrap().version, 1);

    let report = report_on(renewals, "2025-06-30").await;
    assert_eq!(report.account_count, 6, "paying in USD on the day");
    assert_eq!(report.other_currency_account_count, 1);
    assert_eq!(report.arr.unwrap().amount_minor, dollars(706_000));
    let tiers: Vec<(&str, i64, f64)> = report
        .tiers
        .iter()
        .map(|t| (t.tier_id.as_str(), t.account_count, t.hours_per_month))
        .collect();
    assert_eq!(
        tiers,
        [
            ("top", 3, 30.0),
            ("leveraged", 2, 4.0),
            ("scalable", 1, 0.0)
        ]
    );
    let top = &report.tiers[0];
    assert!((top.arr_percent - 650.0 / 706.0 * 100.0).abs() < 1e-9);
    assert_eq!(top.accounts_per_csm, 2.1);
    assert!((report.csms_needed - 34.0 / 21.0).abs() < 1e-9);
    // Half the accounts hold 92 % of the ARR: not the usual top tier.
    assert!(!report.top_tier_as_usual);
    // Ana's 21 hours hold her two top accounts (20 h); both leveraged ones
    // are over; the orphan needs hours and has no one.
    let owners: Vec<(&str, i64, i64)> = report
        .owners
        .iter()
        .map(|o| (o.owner.as_str(), o.account_count, o.accounts_over_capacity))
        .collect();
    assert_eq!(owners, [("", 1, 1), ("ana", 5, 2)]);
    assert!((report.owners[1].utilization_percent - 24.0 / 21.0 * 100.0).abs() < 1e-9);
    assert_eq!(report.accounts_over_capacity, 3);

    let over = renewals
        .list_account_tiers(pb::ListAccountTiersRequest {
            as_of: date(day("2025-06-30")),
            over_capacity_only: true,
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = over
        .accounts
        .iter()
        .map(|a| a.account_id.as_str())
        .collect();
    assert_eq!(ids, ["orphan", "small-1"]);
    assert!(!over.next_page_token.is_empty());
    let rest = renewals
        .list_account_tiers(pb::ListAccountTiersRequest {
            as_of: date(day("2025-06-30")),
            over_capacity_only: true,
            page_size: 2,
            page_token: over.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = rest
        .accounts
        .iter()
        .map(|a| a.account_id.as_str())
        .collect();
    assert_eq!(ids, ["small-2"]);
    assert!(rest.next_page_token.is_empty());

    // The year before, only `gone` paid (the others' terms were not yet
    // recorded).
    let before = renewals
        .list_account_tiers(pb::ListAccountTiersRequest {
            as_of: date(day("2024-06-30")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let tiers: Vec<(&str, &str)> = before
        .accounts
        .iter()
        .map(|a| (a.account_id.as_str(), a.tier_id.as_str()))
        .collect();
    assert_eq!(tiers, [("gone", "leveraged")]);

    // A second version changes the answer; the first can still be asked.
    let mut wider = model("cov-2");
    wider.csm_hours_per_month = 40.0;
    let v2 = renewals
        .put_coverage_model(wider)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v2.model.unwrap().version, 2);
    let latest = report_on(renewals, "2025-06-30").await;
    assert_eq!(latest.accounts_over_capacity, 1, "only the orphan");
    let first = renewals
        .get_coverage_model(pb::GetCoverageModelRequest { version: 1 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.model.unwrap().csm_hours_per_month, 21.0);
    let missing = renewals
        .get_coverage_model(pb::GetCoverageModelRequest { version: 9 })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn a_bad_model_is_refused_with_every_fault_and_nothing_stored() {
    let mut app = TestStack::spawn().await;
    let renewals = &mut app.renewals;
    let none = renewals
        .get_coverage_report(pb::GetCoverageReportRequest::default())
        .await
        .unwrap_err();
    assert_eq!(none.code(), tonic::Code::FailedPrecondition);
    let mut bad = model("bad");
    bad.tiers[0].tier_id = "Top Tier".into();
    bad.tiers[1].hours_per_account_month = f64::INFINITY;
    bad.tiers[2].min_arr = Some(Money {
        currency_code: "EUR".into(),
        amount_minor: 5,
    });
    bad.csm_hours_per_month = 0.0;
    let refused = renewals.put_coverage_model(bad).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        violated_fields(&refused),
        [
            "tiers[0].tier_id",
            "tiers[1].hours_per_account_month",
            "tiers[2].min_arr.currency_code",
            "tiers[2]",
            "csm_hours_per_month",
        ]
    );
    let still_none = renewals
        .get_coverage_model(pb::GetCoverageModelRequest { version: 0 })
        .await
        .unwrap_err();
    assert_eq!(still_none.code(), tonic::Code::FailedPrecondition);
    renewals.put_coverage_model(model("good")).await.unwrap();
    let unknown_tier = renewals
        .list_account_tiers(pb::ListAccountTiersRequest {
            tier_id: "platinum".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&unknown_tier), ["tier_id"]);
}
