//! The Tenure command line's library: the whole stack in one process
//! ([`stack`]), health checks of a running stack ([`status`]) and a guided
//! demo ([`demo`]).

pub mod demo;
pub mod stack;
pub mod status;
