//! `tenure forecast`: the forecast of every renewal in a window, streamed
//! from renewals and written as CSV or JSON Lines, for nightly jobs.

use std::io::Write;
use std::path::Path;

use chrono::NaiveDate;
use tenure_platform::client::TracedChannel;
use tenure_platform::time::to_date;
use tenure_proto::common::v1::DateRange;
use tenure_proto::renewals::v1 as pb;
use tenure_proto::renewals::v1::renewals_service_client::RenewalsServiceClient;

/// Output formats.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
}

const COLUMNS: [&str; 16] = [
    "subscription_id",
    "account_id",
    "account_name",
    "segment",
    "owner",
    "term_end_date",
    "currency",
    "arr_minor",
    "days_to_renewal",
    "health_score",
    "health_band",
    "renewal_probability",
    "probability_source",
    "category",
    "expected_arr_minor",
    "state",
];

fn fields(row: &pb::RenewalOpportunity) -> [String; 16] {
    let date = row
        .term_end_date
        .as_ref()
        .map(|d| format!("{:04}-{:02}-{:02}", d.year, d.month, d.day))
        .unwrap_or_default();
    let arr = row.arr.clone().unwrap_or_default();
    let name = |value: i32, f: fn(i32) -> Option<&'static str>| f(value).unwrap_or("").to_owned();
    [
        row.subscription_id.clone(),
        row.account_id.clone(),
        row.account_name.clone(),
        row.segment.clone(),
        row.owner.clone(),
        date,
        arr.currency_code,
        arr.amount_minor.to_string(),
        row.days_to_renewal.to_string(),
        row.health_score.to_string(),
        row.health_band.clone(),
        format!("{:.6}", row.renewal_probability),
        name(row.probability_source, |v| {
            pb::ProbabilitySource::try_from(v)
                .ok()
                .map(|s| s.as_str_name())
        }),
        name(row.category, |v| {
            pb::ForecastCategory::try_from(v)
                .ok()
                .map(|c| c.as_str_name())
        }),
        row.expected_arr
            .as_ref()
            .map_or(0, |m| m.amount_minor)
            .to_string(),
        name(row.state, |v| {
            pb::OpportunityState::try_from(v)
                .ok()
                .map(|s| s.as_str_name())
        }),
    ]
}

/// Streams the forecast of renewals ending in `[start, end)` into `out`;
/// returns the number of rows written.
pub async fn run(
    client: &mut RenewalsServiceClient<TracedChannel>,
    start: NaiveDate,
    end: NaiveDate,
    segment: &str,
    format: Format,
    out: &Path,
    progress: bool,
) -> anyhow::Result<u64> {
    let mut stream = client
        .stream_forecast(pb::StreamForecastRequest {
            window: Some(DateRange {
                start: Some(to_date(start)),
                end: Some(to_date(end)),
            }),
            segment: segment.to_owned(),
            chunk_size: 1000,
            ..Default::default()
        })
        .await?
        .into_inner();
    // Written beside the target and renamed at the end: a failed job never
    // leaves a half file where the last good one was.
    let partial = out.with_extension("partial");
    let file = std::io::BufWriter::new(std::fs::File::create(&partial)?);
    let (mut csv, mut jsonl) = match format {
        Format::Csv => {
            let mut writer = csv::Writer::from_writer(file);
            writer.write_record(COLUMNS)?;
            (Some(writer), None)
        }
        Format::Jsonl => (None, Some(file)),
    };
    let bar = if progress {
        indicatif::ProgressBar::new(0)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} renewals {per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut written = 0_u64;
    while let Some(message) = stream.message().await? {
        if message.total_count > 0 {
            bar.set_length(message.total_count as u64);
        }
        for row in &message.rows {
            let values = fields(row);
            if let Some(writer) = csv.as_mut() {
                writer.write_record(&values)?;
            }
            if let Some(writer) = jsonl.as_mut() {
                let object: serde_json::Map<String, serde_json::Value> = COLUMNS
                    .iter()
                    .zip(values)
                    .map(|(k, v)| ((*k).to_owned(), serde_json::Value::String(v)))
                    .collect();
                serde_json::to_writer(&mut *writer, &object)?;
                writer.write_all(b"\n")?;
            }
            written += 1;
        }
        bar.inc(message.rows.len() as u64);
    }
    if let Some(mut writer) = csv {
        writer.flush()?;
    }
    if let Some(mut writer) = jsonl {
        writer.flush()?;
    }
    bar.finish_and_clear();
    std::fs::rename(&partial, out)?;
    Ok(written)
}
