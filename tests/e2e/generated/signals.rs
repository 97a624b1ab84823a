//! The signals ingestion serves read only the records they can use, and
//! unchanged records from their heads; the plain definition reads every
//! version of every record. On a generated base both give the same signals
//! for every account at every as-of date, including records reported late
//! and a record moved from one account to another.

use chrono::{Days, NaiveDate};
use tenure_ingestion::signals::{self, Reading};
use tenure_proto::ingestion::v1 as pb;
use tenure_tests::TestStack;

use crate::fixtures::{date, streamed_signals, ticket, ts};

fn at(day: NaiveDate) -> chrono::DateTime<chrono::Utc> {
    day.and_hms_opt(12, 0, 0).unwrap().and_utc()
}

#[tokio::test]
async fn needed_records_give_the_signals_of_every_record() {
    let mut app = TestStack::spawn().await;
    let config = super::config(80, 23);
    let _files = super::load(&app, &config).await;
    let end = config.as_of;
    let db = app.db().await;
    let mut ids: Vec<String> =
        sqlx::query_scalar("SELECT account_id FROM ingestion.accounts ORDER BY account_id")
            .fetch_all(&db)
            .await
            .unwrap();
    let (first, second) = (ids[0].clone(), ids[1].clone());

    // A P1 ticket opened 100 days before the end under the first account,
    // reported only 20 days before the end (late data), moved to the second
    // account 10 days before the end.
    let opened = end - Days::new(100);
    let mut filed = ticket(
        "moved-ticket",
        &first,
        pb::TicketPriority::P1,
        pb::TicketCategory::Defect,
        at(opened),
        None,
    );
    filed.updated_at = ts(at(end - Days::new(20)));
    let mut moved = filed.clone();
    moved.account_id.clone_from(&second);
    moved.updated_at = ts(at(end - Days::new(10)));
    for version in [filed, moved] {
        app.ingestion
            .batch_upsert_tickets(pb::BatchUpsertTicketsRequest {
                request_id: String::new(),
                tickets: vec![version],
            })
            .await
            .unwrap();
    }

    // An account of its own with no records of any kind.
    ids.push("bare-account".into());
    app.plain_accounts(&["bare-account".to_owned()]).await;

    let as_of_dates = [
        end,
        end - Days::new(15),
        end - Days::new(50),
        end - Days::new(200),
        end - Days::new(500),
        end - Days::new(365 * 3 + 30),
    ];
    for as_of in as_of_dates {
        let needed = signals::load_many_reading(&db, &ids, as_of, Reading::Needed)
            .await
            .unwrap();
        let every = signals::load_many_reading(&db, &ids, as_of, Reading::Every)
            .await
            .unwrap();
        assert_eq!(needed.len(), every.len(), "as of {as_of}");
        for (needed, every) in needed.iter().zip(&every) {
            assert_eq!(
                signals::compute(needed, as_of),
                signals::compute(every, as_of),
                "account {} as of {as_of}",
                every.account_id
            );
        }
        // What the service serves is the needed reading.
        let served = app
            .ingestion
            .get_account_signals(pb::GetAccountSignalsRequest {
                account_id: second.clone(),
                as_of: date(as_of),
            })
            .await
            .unwrap()
            .into_inner()
            .signals
            .unwrap();
        let expected = signals::compute(&needed[1], as_of);
        assert_eq!(served, expected, "served signals as of {as_of}");
    }

    // Every account at every date in one stream of pairs (one account at
    // many days), as training asks: the signals of the plain definition
    // read one date at a time.
    let mut every_by_date = std::collections::HashMap::new();
    for as_of in as_of_dates {
        for inputs in signals::load_many_reading(&db, &ids, as_of, Reading::Every)
            .await
            .unwrap()
        {
            every_by_date.insert((inputs.account_id.clone(), as_of), inputs);
        }
    }
    let pairs: Vec<(String, NaiveDate)> = ids
        .iter()
        .flat_map(|id| as_of_dates.iter().map(move |day| (id.clone(), *day)))
        .collect();
    let request = pb::StreamAccountSignalsRequest {
        at: pairs
            .iter()
            .map(|(account_id, day)| pb::AccountDay {
                account_id: account_id.clone(),
                as_of: date(*day),
            })
            .collect(),
        ..Default::default()
    };
    let streamed = streamed_signals(&mut app, request, pairs.len()).await;
    assert_eq!(streamed.len(), pairs.len(), "one answer per pair");
    for ((account_id, as_of), served) in pairs.iter().zip(&streamed) {
        let every = &every_by_date[&(account_id.clone(), *as_of)];
        assert_eq!(
            *served,
            signals::compute(every, *as_of),
            "account {account_id} as of {as_of} among pairs"
        );
    }

    // A stream of every account ends after the last one, each sent once,
    // in id order, with the signals of the needed reading.
    let request = pb::StreamAccountSignalsRequest {
        as_of: date(end),
        ..Default::default()
    };
    let streamed = streamed_signals(&mut app, request, ids.len()).await;
    let mut sorted = ids.clone();
    sorted.sort();
    let expected: Vec<pb::AccountSignals> = signals::load_many(&db, &sorted, end)
        .await
        .unwrap()
        .iter()
        .map(|inputs| signals::compute(inputs, end))
        .collect();
    assert_eq!(streamed, expected, "every account streamed once, in order");

    // The moved ticket counts where it was filed until the move, and only
    // where it went from then on (before it was reported, its first state
    // stands for it: a backfill).
    let open_p1 = |inputs: &[signals::Inputs], as_of| {
        inputs
            .iter()
            .take(2)
            .map(|i| signals::compute(i, as_of).open_tickets_p1)
            .collect::<Vec<_>>()
    };
    let base_p1 = |as_of| {
        let db = db.clone();
        let ids = ids.clone();
        async move {
            let mut inputs = signals::load_many_reading(&db, &ids[..2], as_of, Reading::Every)
                .await
                .unwrap();
            for i in &mut inputs {
                i.tickets.retain(|t| t.ticket_id != "moved-ticket");
            }
            open_p1(&inputs, as_of)
        }
    };
    for (as_of, counted) in [
        (end, [0, 1]),
        (end - Days::new(15), [1, 0]),
        (end - Days::new(50), [1, 0]),
    ] {
        let without = base_p1(as_of).await;
        let with = open_p1(
            &signals::load_many(&db, &ids[..2], as_of).await.unwrap(),
            as_of,
        );
        let added: Vec<i32> = with.iter().zip(&without).map(|(w, o)| w - o).collect();
        assert_eq!(added, counted, "the moved ticket as of {as_of}");
    }

    // The migrations that gave the heads stored before them the days
    // between which the signals can use them agree with what the upserts
    // give.
    type Head = (String, String, Option<NaiveDate>, Option<NaiveDate>);
    let heads = "SELECT kind, record_id, useful_before, useful_from FROM ingestion.record_heads \
                 ORDER BY 1, 2";
    let upserted: Vec<Head> = sqlx::query_as(heads).fetch_all(&db).await.unwrap();
    assert!(
        upserted
            .iter()
            .any(|(kind, _, before, _)| kind == "invoice" && before.is_some()),
        "paid invoices are bounded"
    );
    for kind in ["invoice", "subscription", "ticket", "survey"] {
        assert!(
            upserted
                .iter()
                .filter(|head| head.0 == kind)
                .all(|head| head.3.is_some()),
            "every {kind} has a first day"
        );
    }
    sqlx::query("UPDATE ingestion.record_heads SET useful_before = NULL, useful_from = NULL")
        .execute(&db)
        .await
        .unwrap();
    for migration in [
        include_str!("../../../services/ingestion/migrations/20261204000200_useful_before.sql"),
        include_str!("../../../services/ingestion/migrations/20261204000400_useful_from.sql"),
    ] {
        sqlx::raw_sql(migration).execute(&db).await.unwrap();
    }
    let migrated: Vec<Head> = sqlx::query_as(heads).fetch_all(&db).await.unwrap();
    assert_eq!(migrated, upserted);
    app.stop().await;
}
