-- The accounts a record named before it moved to another account. With the
-- heads they tell which records a batch of accounts must look up in the
-- versions (those changed since the cutoff, and those that moved), so
-- as-of reads never scan every version of the batch's accounts.
CREATE TABLE ingestion.record_moves (
    account_id text NOT NULL,
    kind       text NOT NULL,
    record_id  text NOT NULL,
    PRIMARY KEY (account_id, kind, record_id)
);

INSERT INTO ingestion.record_moves (account_id, kind, record_id)
SELECT DISTINCT v.account_id, v.kind, v.record_id
FROM ingestion.record_versions v
JOIN ingestion.record_heads h USING (kind, record_id)
WHERE v.account_id IS NOT NULL AND v.account_id IS DISTINCT FROM h.account_id;
