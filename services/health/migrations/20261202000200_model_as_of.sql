-- A model trained as of a past day learns only from outcomes decided by
-- then, so a forecast backtest of that day can use it without leakage.
ALTER TABLE health.churn_models ADD COLUMN as_of date;
