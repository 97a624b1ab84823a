//! Changes derived from applied records: sponsor and champion changes of
//! contacts, and contract changes of subscriptions. Both are dated by the
//! source and kept as their own rows.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::kinds::{ContactRecord, Role, SubscriptionRecord, SubscriptionStatus};
use crate::records::Applied;

/// A sponsor or champion arriving or leaving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationshipChange {
    pub account_id: String,
    pub contact_id: String,
    pub role: Role,
    /// `added`, `removed` (lost the role) or `departed` (no longer active).
    pub change: &'static str,
    pub occurred_at: DateTime<Utc>,
}

const WATCHED: [Role; 2] = [Role::Sponsor, Role::Champion];

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Sponsor => "sponsor",
        Role::Champion => "champion",
        Role::Admin => "admin",
        Role::User => "user",
    }
}

/// The sponsor and champion changes in a batch of applied contacts.
/// `had_role` holds the (account, role) pairs some contact held before the
/// batch: a first sponsor ever is the start of a relationship, not a change.
pub fn relationship_changes(
    applied: &[Applied<ContactRecord>],
    had_role: &HashSet<(String, Role)>,
) -> Vec<RelationshipChange> {
    let mut changes = Vec::new();
    // A batch may carry a history: a role taken earlier in it counts as held.
    let mut had_role = had_role.clone();
    for Applied { new, old } in applied {
        for role in WATCHED {
            let was = old.as_ref().is_some_and(|o| o.acts_as(role));
            let is = new.acts_as(role);
            let key = (new.account_id.clone(), role);
            let held = had_role.contains(&key);
            if is {
                had_role.insert(key);
            }
            let change = match (was, is) {
                (false, true) if held => "added",
                (true, false) if !new.active => "departed",
                (true, false) => "removed",
                _ => continue,
            };
            changes.push(RelationshipChange {
                account_id: new.account_id.clone(),
                contact_id: new.contact_id.clone(),
                role,
                change,
                occurred_at: new.updated_at,
            });
        }
    }
    changes
}

/// The (account, role) pairs any contact of `account_ids` ever held.
pub async fn roles_held(
    tx: &mut PgConnection,
    account_ids: &[String],
) -> sqlx::Result<HashSet<(String, Role)>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT DISTINCT account_id, role FROM ingestion.record_versions, \
           jsonb_array_elements_text(data->'roles') AS role \
         WHERE kind = 'contact' AND account_id = ANY($1) AND role IN ('sponsor', 'champion')",
    )
    .bind(account_ids)
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(account, role)| {
            let role = match role.as_str() {
                "sponsor" => Role::Sponsor,
                "champion" => Role::Champion,
                _ => return None,
            };
            Some((account, role))
        })
        .collect())
}

pub async fn insert_relationship_changes(
    tx: &mut PgConnection,
    changes: &[RelationshipChange],
) -> sqlx::Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let accounts: Vec<&str> = changes.iter().map(|c| c.account_id.as_str()).collect();
    let contacts: Vec<&str> = changes.iter().map(|c| c.contact_id.as_str()).collect();
    let roles: Vec<&str> = changes.iter().map(|c| role_name(c.role)).collect();
    let kinds: Vec<&str> = changes.iter().map(|c| c.change).collect();
    let times: Vec<DateTime<Utc>> = changes.iter().map(|c| c.occurred_at).collect();
    sqlx::query(
        "INSERT INTO ingestion.relationship_changes (account_id, contact_id, role, change, occurred_at) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[]) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&accounts)
    .bind(&contacts)
    .bind(&roles)
    .bind(&kinds)
    .bind(&times)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The kind of contract change from `old` to `new`, if it is one.
pub fn subscription_change(
    old: Option<&SubscriptionRecord>,
    new: &SubscriptionRecord,
) -> Option<&'static str> {
    let Some(old) = old else { return Some("new") };
    let was_live = matches!(
        old.status,
        SubscriptionStatus::Active | SubscriptionStatus::Trial
    );
    let is_live = matches!(
        new.status,
        SubscriptionStatus::Active | SubscriptionStatus::Trial
    );
    if was_live && !is_live {
        Some("cancellation")
    } else if new.term_end > old.term_end {
        Some("renewal")
    } else if new.arr_minor > old.arr_minor {
        Some("expansion")
    } else if new.arr_minor < old.arr_minor {
        Some("contraction")
    } else {
        None
    }
}

pub async fn insert_subscription_changes(
    tx: &mut PgConnection,
    applied: &[Applied<SubscriptionRecord>],
) -> sqlx::Result<usize> {
    let mut rows = Vec::new();
    for Applied { new, old } in applied {
        if let Some(kind) = subscription_change(old.as_ref(), new) {
            rows.push((new, old.as_ref(), kind));
        }
    }
    if rows.is_empty() {
        return Ok(0);
    }
    let ids: Vec<&str> = rows
        .iter()
        .map(|(n, _, _)| n.subscription_id.as_str())
        .collect();
    let accounts: Vec<&str> = rows.iter().map(|(n, _, _)| n.account_id.as_str()).collect();
    let kinds: Vec<&str> = rows.iter().map(|(_, _, k)| *k).collect();
    let times: Vec<DateTime<Utc>> = rows.iter().map(|(n, _, _)| n.updated_at).collect();
    let currencies: Vec<&str> = rows.iter().map(|(n, _, _)| n.currency.as_str()).collect();
    let previous: Vec<i64> = rows
        .iter()
        .map(|(_, o, _)| o.map_or(0, |o| o.arr_minor))
        .collect();
    let new_arr: Vec<i64> = rows.iter().map(|(n, _, _)| n.arr_minor).collect();
    let previous_end: Vec<Option<chrono::NaiveDate>> =
        rows.iter().map(|(_, o, _)| o.map(|o| o.term_end)).collect();
    let new_end: Vec<chrono::NaiveDate> = rows.iter().map(|(n, _, _)| n.term_end).collect();
    sqlx::query(
        "INSERT INTO ingestion.subscription_changes (subscription_id, account_id, kind, occurred_at, \
           currency, previous_arr_minor, new_arr_minor, previous_term_end, new_term_end) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], \
                              $6::int8[], $7::int8[], $8::date[], $9::date[]) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&ids)
    .bind(&accounts)
    .bind(&kinds)
    .bind(&times)
    .bind(&currencies)
    .bind(&previous)
    .bind(&new_arr)
    .bind(&previous_end)
    .bind(&new_end)
    .execute(&mut *tx)
    .await?;
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(id: &str, roles: &[Role], active: bool) -> ContactRecord {
        ContactRecord {
            contact_id: id.into(),
            account_id: "acme".into(),
            email: format!("{id}@acme.test"),
            name: id.into(),
            title: String::new(),
            roles: roles.to_vec(),
            active,
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn a_new_sponsor_is_a_change_but_the_first_is_not() {
        let first = [Applied {
            new: contact("ann", &[Role::Sponsor], true),
            old: None,
        }];
        assert!(relationship_changes(&first, &HashSet::new()).is_empty());

        let had = HashSet::from([("acme".to_owned(), Role::Sponsor)]);
        let next = [Applied {
            new: contact("bob", &[Role::Sponsor], true),
            old: None,
        }];
        let changes = relationship_changes(&next, &had);
        assert_eq!(changes.len(), 1);
        assert_eq!(
            (changes[0].role, changes[0].change),
            (Role::Sponsor, "added")
        );
    }

    #[test]
    fn losing_a_role_or_leaving_is_a_change() {
        let was = contact("ann", &[Role::Sponsor, Role::Champion], true);
        let left = [Applied {
            new: contact("ann", &[Role::Sponsor, Role::Champion], false),
            old: Some(was.clone()),
        }];
        let changes: Vec<_> = relationship_changes(&left, &HashSet::new())
            .into_iter()
            .map(|c| c.change)
            .collect();
        assert_eq!(changes, ["departed", "departed"]);
        let demoted = [Applied {
            new: contact("ann", &[Role::Champion], true),
            old: Some(was),
        }];
        let changes = relationship_changes(&demoted, &HashSet::new());
        assert_eq!(changes.len(), 1);
        assert_eq!(
            (changes[0].role, changes[0].change),
            (Role::Sponsor, "removed")
        );
    }

    #[test]
    fn classifies_contract_changes() {
        let day = |m, d| chrono::NaiveDate::from_ymd_opt(2026, m, d).unwrap();
        let base = SubscriptionRecord {
            subscription_id: "s".into(),
            account_id: "acme".into(),
            status: SubscriptionStatus::Active,
            term_start: day(1, 1),
            term_end: day(12, 31),
            currency: "USD".into(),
            arr_minor: 1_000,
            seats: 10,
            auto_renew: true,
            line_items: vec![],
            updated_at: Utc::now(),
        };
        assert_eq!(subscription_change(None, &base), Some("new"));
        let more = SubscriptionRecord {
            arr_minor: 1_500,
            ..base.clone()
        };
        assert_eq!(subscription_change(Some(&base), &more), Some("expansion"));
        assert_eq!(subscription_change(Some(&more), &base), Some("contraction"));
        let renewed = SubscriptionRecord {
            term_end: day(12, 31) + chrono::Days::new(365),
            ..base.clone()
        };
        assert_eq!(subscription_change(Some(&base), &renewed), Some("renewal"));
        let canceled = SubscriptionRecord {
            status: SubscriptionStatus::Canceled,
            ..base.clone()
        };
        assert_eq!(
            subscription_change(Some(&base), &canceled),
            Some("cancellation")
        );
        assert_eq!(subscription_change(Some(&base), &base), None);
    }
}
