//! The Tenure command line's library: the whole stack in one process
//! ([`stack`]), health checks of a running stack ([`status`]), a guided
//! demo ([`demo`]) and file imports ([`import`]).

pub mod demo;
pub mod forecast;
pub mod import;
pub mod model;
pub mod stack;
pub mod status;
