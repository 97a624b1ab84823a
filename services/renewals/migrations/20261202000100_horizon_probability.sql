-- The model's renewal probability for a term when it came within the
-- forecast horizon, and the day it was taken: calibration learns from what
-- the forecast saw then, not from what was known when the outcome came.
ALTER TABLE renewals.opportunities
    ADD COLUMN horizon_probability double precision,
    ADD COLUMN horizon_day date;
