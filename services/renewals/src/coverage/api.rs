//! The coverage RPCs: requests checked into the model's types, answers
//! mapped back.

use tenure_platform::{ApiError, ApiResult, Violations, idempotency, money, paging, time};
use tenure_proto::renewals::v1 as pb;

use super::model::{Customer, Model, Placement, Tier, Totals, percent};
use super::store;
use crate::SCHEMA;
use crate::forecasts::{day_or_today, filter_text};
use crate::state::RenewalsApi;
use crate::views::money as amount;

const MAX_TIERS: usize = 10;
const MAX_SEGMENTS: usize = 50;
const MAX_ID: usize = 64;
const MAX_NAME: usize = 200;
/// Hours in the longest month.
const MAX_HOURS: f64 = 744.0;

/// The tiers of a request, checked: ids unique and well formed, rules in
/// the model's currency, hours within a month, the last tier for everyone.
fn tiers_from(
    request: &[pb::ServiceTier],
    currency: &str,
    violations: &mut Violations,
) -> Vec<Tier> {
    if request.is_empty() || request.len() > MAX_TIERS {
        violations.add("tiers", format!("must hold 1 to {MAX_TIERS} tiers"));
        return Vec::new();
    }
    let mut tiers = Vec::with_capacity(request.len());
    let mut seen = std::collections::HashSet::new();
    for (i, tier) in request.iter().enumerate() {
        let field = |name: &str| format!("tiers[{i}].{name}");
        let id_ok = !tier.tier_id.is_empty()
            && tier.tier_id.len() <= MAX_ID
            && tier
                .tier_id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        violations.check(
            id_ok,
            field("tier_id"),
            format!("must be 1 to {MAX_ID} lower-case letters, digits, '-' or '_'"),
        );
        violations.check(
            !id_ok || seen.insert(tier.tier_id.as_str()),
            field("tier_id"),
            "is used by an earlier tier",
        );
        violations.limit_text(&tier.display_name, field("display_name"), MAX_NAME);
        let min_arr_minor = match &tier.min_arr {
            None => 0,
            Some(min_arr) => {
                let checked = money::non_negative(Some(min_arr), &field("min_arr"), violations);
                if let Some(checked) = checked {
                    violations.check(
                        checked.currency_code() == currency,
                        field("min_arr.currency_code"),
                        format!("must be the model's currency {currency}"),
                    );
                }
                checked.map_or(0, |c| c.minor)
            }
        };
        if tier.segments.len() > MAX_SEGMENTS {
            violations.add(
                field("segments"),
                format!("may name at most {MAX_SEGMENTS}"),
            );
        }
        for (j, segment) in tier.segments.iter().enumerate() {
            violations.require_text(segment, format!("tiers[{i}].segments[{j}]"), MAX_ID * 2);
        }
        violations.check(
            tier.hours_per_account_month.is_finite()
                && (0.0..=MAX_HOURS).contains(&tier.hours_per_account_month),
            field("hours_per_account_month"),
            format!("must be 0 to {MAX_HOURS} hours"),
        );
        tiers.push(Tier {
            id: tier.tier_id.clone(),
            name: if tier.display_name.is_empty() {
                tier.tier_id.clone()
            } else {
                tier.display_name.clone()
            },
            min_arr_minor,
            segments: tier.segments.clone(),
            hours_per_account_month: tier.hours_per_account_month,
        });
    }
    if let Some(last) = tiers.last() {
        violations.check(
            last.takes_all(),
            format!("tiers[{}]", tiers.len() - 1),
            "the last tier must take every account: no min_arr and no segments",
        );
    }
    tiers
}

fn model_to_proto(model: &Model) -> pb::CoverageModel {
    pb::CoverageModel {
        version: model.version,
        currency_code: model.currency.clone(),
        tiers: model
            .tiers
            .iter()
            .map(|tier| pb::ServiceTier {
                tier_id: tier.id.clone(),
                display_name: tier.name.clone(),
                min_arr: (tier.min_arr_minor > 0)
                    .then(|| amount(&model.currency, tier.min_arr_minor)),
                segments: tier.segments.clone(),
                hours_per_account_month: tier.hours_per_account_month,
            })
            .collect(),
        csm_hours_per_month: model.csm_hours_per_month,
        create_time: Some(time::to_timestamp(model.created)),
    }
}

/// The version a request names (0: the latest), or a violation.
pub(super) fn version_of(version: i32, field: &str, violations: &mut Violations) -> Option<i32> {
    violations.check(version >= 0, field, "must not be negative");
    (version > 0).then_some(version)
}

/// A model, customers and where each stands on a day.
pub(super) struct Placed {
    pub(super) model: Model,
    pub(super) customers: Vec<Customer>,
    pub(super) placements: Vec<Placement>,
    pub(super) other_currency: i64,
}

impl RenewalsApi {
    async fn model(&self, version: Option<i32>) -> ApiResult<Model> {
        store::get(&self.pool, version)
            .await?
            .ok_or_else(|| match version {
                Some(v) => ApiError::NotFound(format!("coverage model version {v}")),
                None => ApiError::FailedPrecondition("no coverage model: put one first".to_owned()),
            })
    }

    pub(super) async fn placed(
        &self,
        version: Option<i32>,
        as_of: chrono::NaiveDate,
    ) -> ApiResult<Placed> {
        let model = self.model(version).await?;
        let (customers, other_currency) =
            store::customers(&self.pool, &model.currency, as_of).await?;
        let placements = model.place(&customers);
        Ok(Placed {
            model,
            customers,
            placements,
            other_currency,
        })
    }

    pub(crate) async fn put_coverage_model(
        &self,
        request: pb::PutCoverageModelRequest,
    ) -> ApiResult<pb::PutCoverageModelResponse> {
        let mut violations = Violations::default();
        violations.limit_text(&request.request_id, "request_id", MAX_ID * 2);
        let currency =
            crate::forecasts::currency(&request.currency_code, "currency_code", &mut violations);
        let tiers = tiers_from(&request.tiers, &currency, &mut violations);
        violations.check(
            request.csm_hours_per_month.is_finite()
                && request.csm_hours_per_month > 0.0
                && request.csm_hours_per_month <= MAX_HOURS,
            "csm_hours_per_month",
            format!("must be more than 0 and at most {MAX_HOURS} hours"),
        );
        violations.into_result()?;
        const METHOD: &str = "PutCoverageModel";
        idempotency::once(&self.pool, SCHEMA, METHOD, &request, async |tx| {
            let model = store::insert(tx, &currency, &tiers, request.csm_hours_per_month).await?;
            Ok(pb::PutCoverageModelResponse {
                model: Some(model_to_proto(&model)),
            })
        })
        .await
    }

    pub(crate) async fn get_coverage_model(
        &self,
        request: pb::GetCoverageModelRequest,
    ) -> ApiResult<pb::GetCoverageModelResponse> {
        let mut violations = Violations::default();
        let version = version_of(request.version, "version", &mut violations);
        violations.into_result()?;
        Ok(pb::GetCoverageModelResponse {
            model: Some(model_to_proto(&self.model(version).await?)),
        })
    }

    pub(crate) async fn get_coverage_report(
        &self,
        request: pb::GetCoverageReportRequest,
    ) -> ApiResult<pb::GetCoverageReportResponse> {
        let mut violations = Violations::default();
        let as_of = day_or_today(request.as_of.as_ref(), "as_of", &mut violations);
        let version = version_of(request.model_version, "model_version", &mut violations);
        violations.into_result()?;
        let placed = self.placed(version, as_of).await?;
        let model = &placed.model;
        let totals = Totals::of(model, &placed.customers, &placed.placements);
        let money = |minor| Some(amount(&model.currency, minor));
        let csm = model.csm_hours_per_month;
        let tiers = model
            .tiers
            .iter()
            .zip(&totals.tiers)
            .map(|(tier, sum)| pb::TierCoverage {
                tier_id: tier.id.clone(),
                display_name: tier.name.clone(),
                account_count: sum.accounts,
                arr: money(sum.arr_minor),
                account_percent: percent(sum.accounts as f64, totals.accounts as f64),
                arr_percent: percent(sum.arr_minor as f64, totals.arr_minor as f64),
                hours_per_month: sum.hours,
                csms_needed: sum.hours / csm,
                accounts_per_csm: tier.accounts_per_csm(csm),
            })
            .collect();
        let owners = totals
            .owners
            .iter()
            .map(|(owner, sum)| pb::OwnerCoverage {
                owner: owner.clone(),
                account_count: sum.accounts,
                arr: money(sum.arr_minor),
                hours_per_month: sum.hours,
                utilization_percent: if owner.is_empty() {
                    0.0
                } else {
                    percent(sum.hours, csm)
                },
                accounts_over_capacity: sum.over_capacity,
                arr_over_capacity: money(sum.arr_over_capacity_minor),
            })
            .collect();
        let hours: f64 = totals.tiers.iter().map(|t| t.hours).sum();
        Ok(pb::GetCoverageReportResponse {
            model: Some(model_to_proto(model)),
            as_of: Some(time::to_date(as_of)),
            account_count: totals.accounts,
            arr: money(totals.arr_minor),
            tiers,
            owners,
            other_currency_account_count: placed.other_currency,
            csms_needed: hours / csm,
            accounts_over_capacity: totals.over_capacity,
            top_tier_as_usual: totals.top_tier_as_usual(),
        })
    }

    pub(crate) async fn list_account_tiers(
        &self,
        request: pb::ListAccountTiersRequest,
    ) -> ApiResult<pb::ListAccountTiersResponse> {
        let mut violations = Violations::default();
        let as_of = day_or_today(request.as_of.as_ref(), "as_of", &mut violations);
        let version = version_of(request.model_version, "model_version", &mut violations);
        let tier_id = filter_text(&request.tier_id, "tier_id", &mut violations);
        let owner = filter_text(&request.owner, "owner", &mut violations);
        violations.into_result()?;
        let size = paging::page_size(request.page_size)?;
        let after: Option<String> = paging::decode_token(&request.page_token)?;
        let placed = self.placed(version, as_of).await?;
        let model = &placed.model;
        if let Some(tier_id) = &tier_id
            && !model.tiers.iter().any(|t| &t.id == tier_id)
        {
            return Err(ApiError::invalid(
                "tier_id",
                format!("names no tier of coverage model version {}", model.version),
            ));
        }
        // Customers come in account id order.
        let mut accounts: Vec<pb::AccountTier> = placed
            .customers
            .iter()
            .zip(&placed.placements)
            .filter(|(c, _)| after.as_ref().is_none_or(|after| &c.account_id > after))
            .filter(|(c, _)| owner.as_ref().is_none_or(|o| &c.owner == o))
            .filter(|(_, p)| {
                tier_id
                    .as_ref()
                    .is_none_or(|t| model.tiers[p.tier].id == *t)
            })
            .filter(|(_, p)| !request.over_capacity_only || p.over_capacity)
            .take(size as usize + 1)
            .map(|(c, p)| pb::AccountTier {
                account_id: c.account_id.clone(),
                name: c.name.clone(),
                segment: c.segment.clone(),
                owner: c.owner.clone(),
                arr: Some(amount(&model.currency, c.arr_minor)),
                tier_id: model.tiers[p.tier].id.clone(),
                hours_per_month: p.hours,
                over_capacity: p.over_capacity,
            })
            .collect();
        let next_page_token = paging::finish_page(&mut accounts, size, |a| a.account_id.clone());
        Ok(pb::ListAccountTiersResponse {
            accounts,
            next_page_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tier(id: &str, min: Option<i64>, hours: f64) -> pb::ServiceTier {
        pb::ServiceTier {
            tier_id: id.to_owned(),
            display_name: String::new(),
            min_arr: min.map(|m| amount("USD", m)),
            segments: vec![],
            hours_per_account_month: hours,
        }
    }

    fn fields(violations: &Violations) -> Vec<String> {
        violations.iter().map(|(f, _)| f.to_owned()).collect()
    }

    #[test]
    fn tiers_are_checked_with_the_field_of_each_fault() {
        let mut violations = Violations::default();
        let tiers = tiers_from(
            &[tier("top", Some(100), 8.0), tier("rest", None, 0.5)],
            "USD",
            &mut violations,
        );
        assert!(violations.is_empty(), "{:?}", fields(&violations));
        assert_eq!(tiers[0].name, "top");

        let mut bad_currency = tier("eu", None, 1.0);
        bad_currency.min_arr = Some(amount("EUR", 5));
        let request = [
            tier("Top", Some(100), f64::NAN),
            tier("top2", Some(-1), 800.0),
            bad_currency,
            tier("top2", Some(5), 1.0),
        ];
        let mut violations = Violations::default();
        tiers_from(&request, "USD", &mut violations);
        assert_eq!(
            fields(&violations),
            [
                "tiers[0].tier_id",
                "tiers[0].hours_per_account_month",
                "tiers[1].min_arr.amount_minor",
                "tiers[1].hours_per_account_month",
                "tiers[2].min_arr.currency_code",
                "tiers[3].tier_id",
                "tiers[3]",
            ]
        );
        let mut violations = Violations::default();
        tiers_from(&[], "USD", &mut violations);
        assert_eq!(fields(&violations), ["tiers"]);
    }
}
