//! The Tenure command line's library: the whole stack in one process
//! ([`stack`]), health checks of a running stack ([`status`]), a guided
//! demo ([`demo`]), file imports ([`import`]) and a generated customer
//! base to import ([`generate`]), and an HTML report of charts
//! ([`report`]).

pub mod demo;
pub mod forecast;
pub mod generate;
pub mod import;
pub mod model;
pub mod outbox;
pub mod receivers;
pub mod report;
pub mod rescore;
pub mod stack;
pub mod status;
