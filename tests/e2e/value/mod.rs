//! The value journey: success plans measured from day one ([`plans`]),
//! advocacy with the revenue referrals bring ([`advocacy`]), and the three
//! R's by segment and tier ([`report`]).

mod advocacy;
mod plans;
mod report;
