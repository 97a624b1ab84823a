//! The files of a generated base: one JSON Lines file per kind, in the
//! import format (proto field names, RFC 3339 times, `_minor` money).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde_json::Value;

use crate::import::{BASE_FILES, Kind};

/// Rows written per kind.
pub type Counts = BTreeMap<Kind, u64>;

pub(super) struct Files {
    writers: BTreeMap<Kind, (PathBuf, BufWriter<File>)>,
    counts: Counts,
}

impl Files {
    pub(super) fn create(dir: &Path) -> anyhow::Result<Self> {
        let mut writers = BTreeMap::new();
        for (kind, name) in BASE_FILES {
            let path = dir.join(name);
            let file =
                File::create(&path).with_context(|| format!("creating {}", path.display()))?;
            writers.insert(kind, (path, BufWriter::with_capacity(1 << 16, file)));
        }
        Ok(Self {
            writers,
            counts: Counts::new(),
        })
    }

    pub(super) fn row(&mut self, kind: Kind, row: &Value) -> anyhow::Result<()> {
        let (path, out) = self
            .writers
            .get_mut(&kind)
            .with_context(|| format!("no file for {kind:?}"))?;
        serde_json::to_writer(&mut *out, row)
            .with_context(|| format!("writing {}", path.display()))?;
        out.write_all(b"\n")?;
        *self.counts.entry(kind).or_default() += 1;
        Ok(())
    }

    pub(super) fn counts(&self) -> &Counts {
        &self.counts
    }

    pub(super) fn finish(self) -> anyhow::Result<Counts> {
        for (_, (path, mut out)) in self.writers {
            out.flush()
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(self.counts)
    }
}

pub(super) fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub(super) fn day(on: NaiveDate) -> String {
    on.format("%Y-%m-%d").to_string()
}
