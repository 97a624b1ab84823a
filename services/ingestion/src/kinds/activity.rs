//! What happens at an account: tickets, surveys, invoices and external
//! signals.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::{RECENT_DAYS, day_of, start_of};
use crate::records::Record;

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TicketCategory {
    Defect,
    HowTo,
    FeatureRequest,
    Billing,
    Other,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TicketStatus {
    Open,
    Pending,
    Solved,
    Closed,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TicketRecord {
    pub ticket_id: String,
    pub account_id: String,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    /// 1 (most urgent) to 4.
    pub priority: u8,
    pub category: TicketCategory,
    pub status: TicketStatus,
    pub csat: Option<u8>,
    pub updated_at: DateTime<Utc>,
}

impl TicketRecord {
    /// Open at `instant`: opened before it and not closed by then.
    pub fn open_at(&self, instant: DateTime<Utc>) -> bool {
        self.opened_at < instant && self.closed_at.is_none_or(|closed| closed >= instant)
    }
}

impl TicketRecord {
    /// A closed ticket counts while it was opened or closed in the 90 days
    /// up to a day's end: not from 90 days after the later of the two.
    fn useful_before(&self) -> Option<NaiveDate> {
        let closed = self.closed_at?;
        let last = closed.max(self.opened_at) + chrono::Duration::days(RECENT_DAYS);
        Some(last.date_naive() + chrono::Days::new(1))
    }
}

record!(
    TicketRecord,
    "ticket",
    ticket_id,
    account,
    |r| r.opened_at,
    TicketRecord::useful_before,
    |r| day_of(
        r.closed_at
            .map_or(r.opened_at, |closed| closed.min(r.opened_at))
    )
);

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SurveyKind {
    Nps,
    Csat,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SurveyRecord {
    pub response_id: String,
    pub account_id: String,
    pub contact_id: String,
    pub kind: SurveyKind,
    pub score: i32,
    pub comment: String,
    pub responded_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

record!(
    SurveyRecord,
    "survey",
    response_id,
    account,
    |r| r.responded_at,
    |_| None,
    |r| day_of(r.responded_at)
);

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    Open,
    Paid,
    Void,
    Uncollectible,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct InvoiceRecord {
    pub invoice_id: String,
    pub account_id: String,
    pub currency: String,
    pub amount_minor: i64,
    pub issued_on: NaiveDate,
    pub due_on: NaiveDate,
    pub paid_on: Option<NaiveDate>,
    pub status: InvoiceStatus,
    pub updated_at: DateTime<Utc>,
}

impl InvoiceRecord {
    /// Days overdue on `day` (0 when not due, paid by then, or void).
    pub fn days_overdue_on(&self, day: NaiveDate) -> i64 {
        let unpaid = self.paid_on.is_none_or(|paid| paid > day);
        if self.status == InvoiceStatus::Void || !unpaid || self.issued_on > day {
            return 0;
        }
        (day - self.due_on).num_days().max(0)
    }
}

impl InvoiceRecord {
    /// Never overdue from the day it is paid; a void one never at all
    /// (bounded by its issue day, before which it was not overdue either).
    fn useful_before(&self) -> Option<NaiveDate> {
        if self.status == InvoiceStatus::Void {
            return Some(self.issued_on);
        }
        self.paid_on
    }
}

record!(
    InvoiceRecord,
    "invoice",
    invoice_id,
    account,
    |r| start_of(r.issued_on),
    InvoiceRecord::useful_before,
    |r| Some(r.issued_on)
);

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    FundingRound,
    Acquisition,
    Layoffs,
    KeyPersonChange,
    CompetitorEngagement,
    Other,
}

impl SignalKind {
    /// Signals that put the renewal at risk.
    pub fn is_risk(self) -> bool {
        matches!(
            self,
            Self::Acquisition | Self::Layoffs | Self::KeyPersonChange | Self::CompetitorEngagement
        )
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SignalRecord {
    pub signal_id: String,
    pub account_id: String,
    pub kind: SignalKind,
    pub occurred_at: DateTime<Utc>,
    pub source: String,
    pub properties: serde_json::Value,
    pub updated_at: DateTime<Utc>,
}

impl SignalRecord {
    /// Counts in the 90 days up to a day's end: not from 90 days after it.
    fn useful_before(&self) -> Option<NaiveDate> {
        let last = self.occurred_at + chrono::Duration::days(RECENT_DAYS);
        Some(last.date_naive() + chrono::Days::new(1))
    }
}

record!(
    SignalRecord,
    "external_signal",
    signal_id,
    account,
    |r| r.occurred_at,
    SignalRecord::useful_before,
    |r| day_of(r.occurred_at)
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::tests::day;

    #[test]
    fn invoices_are_overdue_only_while_unpaid() {
        let invoice = InvoiceRecord {
            invoice_id: "i".into(),
            account_id: "a".into(),
            currency: "USD".into(),
            amount_minor: 100,
            issued_on: day(2026, 1, 1),
            due_on: day(2026, 1, 31),
            paid_on: Some(day(2026, 3, 1)),
            status: InvoiceStatus::Paid,
            updated_at: Utc::now(),
        };
        assert_eq!(invoice.days_overdue_on(day(2026, 1, 15)), 0);
        assert_eq!(
            invoice.days_overdue_on(day(2026, 2, 10)),
            10,
            "paid later than the as-of day"
        );
        assert_eq!(invoice.days_overdue_on(day(2026, 3, 2)), 0);
        // From its payment on, nothing the signals read of it can count.
        let useful_before = Record::useful_before(&invoice).unwrap();
        assert_eq!(useful_before, day(2026, 3, 1));
        assert!(invoice.days_overdue_on(useful_before.pred_opt().unwrap()) > 0);
        for later in useful_before.iter_days().take(400) {
            assert_eq!(invoice.days_overdue_on(later), 0, "{later}");
        }
        // Before its issue day it is not overdue either.
        let from = Record::useful_from(&invoice).unwrap();
        assert!(invoice.days_overdue_on(from) == 0 && invoice.days_overdue_on(day(2026, 2, 1)) > 0);
        for earlier in from.iter_days().rev().skip(1).take(400) {
            assert_eq!(invoice.days_overdue_on(earlier), 0, "{earlier}");
        }
        let void = InvoiceRecord {
            status: InvoiceStatus::Void,
            paid_on: None,
            ..invoice
        };
        let from = Record::useful_before(&void).unwrap();
        assert!(
            from.iter_days()
                .take(400)
                .all(|d| void.days_overdue_on(d) == 0)
        );
    }

    #[test]
    fn closed_tickets_stop_counting_after_the_recent_window() {
        let opened = day(2026, 1, 1).and_hms_opt(9, 0, 0).unwrap().and_utc();
        let ticket = TicketRecord {
            ticket_id: "t".into(),
            account_id: "a".into(),
            opened_at: opened,
            closed_at: Some(opened + chrono::Duration::days(3)),
            priority: 2,
            category: TicketCategory::Defect,
            status: TicketStatus::Closed,
            csat: None,
            updated_at: Utc::now(),
        };
        // The window a day reads: the RECENT_DAYS before the end of the day.
        let recent = |t: DateTime<Utc>, d: NaiveDate| {
            t >= start_of(d + chrono::Days::new(1)) - chrono::Duration::days(RECENT_DAYS)
        };
        let bound = Record::useful_before(&ticket).unwrap();
        let closed = ticket.closed_at.unwrap();
        assert!(recent(
            closed,
            bound.pred_opt().unwrap() - chrono::Days::new(1)
        ));
        assert!(
            bound
                .iter_days()
                .take(400)
                .all(|d| !recent(closed, d) && !recent(opened, d))
        );
        let open = TicketRecord {
            closed_at: None,
            ..ticket
        };
        assert_eq!(
            Record::useful_before(&open),
            None,
            "an open ticket always counts"
        );
    }
}
