//! Contacts and subscriptions: validated from protos, and back.

use tenure_platform::{money, time};
use tenure_proto::common::v1::Money;
use tenure_proto::ingestion::v1 as pb;

use super::*;
use crate::kinds::*;

pub fn contact(c: &mut Checker<'_>, item: &pb::Contact, path: &str) -> Option<ContactRecord> {
    clean(c, |c| {
        c.id(&item.contact_id, format!("{path}.contact_id"));
        c.id(&item.account_id, format!("{path}.account_id"));
        c.violations
            .require_text(&item.email, format!("{path}.email"), 320);
        c.violations.check(
            item.email.contains('@'),
            format!("{path}.email"),
            "must be an email address",
        );
        c.violations
            .limit_text(&item.name, format!("{path}.name"), MAX_NAME);
        c.violations
            .limit_text(&item.title, format!("{path}.title"), MAX_NAME);
        let mut roles = Vec::new();
        for (i, role) in item.roles.iter().enumerate() {
            let role = match pb::ContactRole::try_from(*role) {
                Ok(pb::ContactRole::EconomicSponsor) => Some(Role::Sponsor),
                Ok(pb::ContactRole::Champion) => Some(Role::Champion),
                Ok(pb::ContactRole::Admin) => Some(Role::Admin),
                Ok(pb::ContactRole::User) => Some(Role::User),
                _ => None,
            };
            if let Some(role) = c.known(role, format!("{path}.roles[{i}]")) {
                roles.push(role);
            }
        }
        roles.sort();
        roles.dedup();
        let updated_at = c.updated_at(item.updated_at.as_ref(), path)?;
        Some(ContactRecord {
            contact_id: item.contact_id.clone(),
            account_id: item.account_id.clone(),
            email: item.email.trim().to_lowercase(),
            name: item.name.clone(),
            title: item.title.clone(),
            roles,
            active: item.active,
            updated_at,
        })
    })
}

pub fn subscription(
    c: &mut Checker<'_>,
    item: &pb::Subscription,
    path: &str,
) -> Option<SubscriptionRecord> {
    clean(c, |c| {
        c.id(&item.subscription_id, format!("{path}.subscription_id"));
        c.id(&item.account_id, format!("{path}.account_id"));
        let status = match pb::SubscriptionStatus::try_from(item.status) {
            Ok(pb::SubscriptionStatus::Trial) => Some(SubscriptionStatus::Trial),
            Ok(pb::SubscriptionStatus::Active) => Some(SubscriptionStatus::Active),
            Ok(pb::SubscriptionStatus::Canceled) => Some(SubscriptionStatus::Canceled),
            Ok(pb::SubscriptionStatus::Expired) => Some(SubscriptionStatus::Expired),
            _ => None,
        };
        let status = c.known(status, format!("{path}.status"));
        let term_start = c.date(item.term_start.as_ref(), format!("{path}.term_start"));
        let term_end = c.date(item.term_end.as_ref(), format!("{path}.term_end"));
        if let (Some(start), Some(end)) = (term_start, term_end) {
            c.violations.check(
                start < end,
                format!("{path}.term_end"),
                "must be after term_start",
            );
        }
        let arr = money::non_negative(item.arr.as_ref(), &format!("{path}.arr"), c.violations);
        c.violations.check(
            item.seats >= 0,
            format!("{path}.seats"),
            "must not be negative",
        );
        let mut line_items = Vec::with_capacity(item.line_items.len());
        for (i, line) in item.line_items.iter().enumerate() {
            let line_path = format!("{path}.line_items[{i}]");
            c.violations
                .require_text(&line.product, format!("{line_path}.product"), MAX_LABEL);
            c.violations
                .limit_text(&line.plan, format!("{line_path}.plan"), MAX_LABEL);
            c.violations.check(
                line.quantity >= 0,
                format!("{line_path}.quantity"),
                "must not be negative",
            );
            let line_arr =
                money::non_negative(line.arr.as_ref(), &format!("{line_path}.arr"), c.violations);
            if let (Some(line_arr), Some(arr)) = (line_arr, arr) {
                c.violations.check(
                    line_arr.currency == arr.currency,
                    format!("{line_path}.arr.currency_code"),
                    "must match the subscription's currency",
                );
            }
            line_items.push(LineItemRecord {
                product: line.product.clone(),
                plan: line.plan.clone(),
                quantity: line.quantity,
                arr_minor: line_arr.map_or(0, |a| a.minor),
            });
        }
        let updated_at = c.updated_at(item.updated_at.as_ref(), path);
        let arr = arr?;
        Some(SubscriptionRecord {
            subscription_id: item.subscription_id.clone(),
            account_id: item.account_id.clone(),
            status: status?,
            term_start: term_start?,
            term_end: term_end?,
            currency: arr.currency_code().to_owned(),
            arr_minor: arr.minor,
            seats: item.seats,
            auto_renew: item.auto_renew,
            line_items,
            updated_at: updated_at?,
        })
    })
}

/// A stored contact as the API shows it.
pub fn contact_to_proto(record: ContactRecord) -> pb::Contact {
    let roles = record
        .roles
        .iter()
        .map(|role| match role {
            Role::Sponsor => pb::ContactRole::EconomicSponsor,
            Role::Champion => pb::ContactRole::Champion,
            Role::Admin => pb::ContactRole::Admin,
            Role::User => pb::ContactRole::User,
        } as i32)
        .collect();
    pb::Contact {
        contact_id: record.contact_id,
        account_id: record.account_id,
        email: record.email,
        name: record.name,
        title: record.title,
        roles,
        active: record.active,
        updated_at: Some(time::to_timestamp(record.updated_at)),
    }
}

/// A stored subscription version as the API shows it.
pub fn subscription_to_proto(record: SubscriptionRecord) -> pb::Subscription {
    let money = |minor| Money {
        currency_code: record.currency.clone(),
        amount_minor: minor,
    };
    let status = match record.status {
        SubscriptionStatus::Trial => pb::SubscriptionStatus::Trial,
        SubscriptionStatus::Active => pb::SubscriptionStatus::Active,
        SubscriptionStatus::Canceled => pb::SubscriptionStatus::Canceled,
        SubscriptionStatus::Expired => pb::SubscriptionStatus::Expired,
    };
    pb::Subscription {
        subscription_id: record.subscription_id.clone(),
        account_id: record.account_id.clone(),
        status: status as i32,
        term_start: Some(time::to_date(record.term_start)),
        term_end: Some(time::to_date(record.term_end)),
        arr: Some(money(record.arr_minor)),
        seats: record.seats,
        auto_renew: record.auto_renew,
        line_items: record
            .line_items
            .iter()
            .map(|line| pb::LineItem {
                product: line.product.clone(),
                plan: line.plan.clone(),
                quantity: line.quantity,
                arr: Some(money(line.arr_minor)),
            })
            .collect(),
        updated_at: Some(time::to_timestamp(record.updated_at)),
    }
}
