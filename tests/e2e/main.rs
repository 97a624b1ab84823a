//! Integration tests of the Tenure stack: every service on a random port,
//! real Postgres (a throwaway cluster per test process, or `DATABASE_URL`),
//! one database per test.

mod access;
mod benchmarks;
mod clusters;
mod database;
mod demo;
mod erasure;
mod events;
mod faults;
mod fixtures;
mod generated;
mod health;
mod hostile;
mod import;
mod ingestion;
mod learning;
mod maturity;
mod outbox;
mod pipeline;
mod playbooks;
mod properties;
mod records;
mod renewals;
mod retention;
mod runs;
mod scoring;
mod secrets;
mod signals;
mod stack;
mod traces;
mod value;
mod wakeups;
