//! What a step does outside Tenure. Each carries a key derived from run
//! and step, so that a retry after a crash is recognised by whoever
//! receives it: the task row, the email's Message-ID, the webhook's
//! delivery id.

pub(super) mod destination;
mod email;
mod task;
mod webhook;
