//! The value journey: success plans measured from day one ([`plans`]) and
//! advocacy with the revenue referrals bring ([`advocacy`]).

mod advocacy;
mod plans;
