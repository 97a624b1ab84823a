//! Service tiers and coverage: the coverage model's versions, each
//! customer's tier on a day, and each CSM's book against their capacity.
//! [`model`] is the pure core, [`store`] its storage, [`api`] the gRPC edge;
//! [`three_rs`] reports adoption, success and retention by tier and
//! segment.

mod api;
pub mod model;
mod store;
mod three_rs;
