-- dare metadata schema, version 2 (docs/METADATA.md §2 `tasks`, KEYS.md §8.2): the lease of a
-- task — who may commit its steps, until when, and the fencing token that each step's
-- transaction checks. Applied once, in one transaction, to a database at version 1 (and to a
-- new database after version 1). Existing tasks get a free lease with token 0.
--
-- Every CHECK is written so that NULL cannot pass (a CHECK whose value is NULL passes): it
-- tests IS NULL itself or reads only NOT NULL columns. SQLite allows a column CHECK to read
-- other columns of the row, which the pairing of owner and expiry needs (ALTER TABLE cannot
-- add a table constraint).
ALTER TABLE tasks ADD COLUMN lease_owner TEXT
    CHECK (lease_owner IS NULL
           OR (typeof(lease_owner) = 'text' AND length(lease_owner) BETWEEN 1 AND 255));
ALTER TABLE tasks ADD COLUMN lease_expires INTEGER
    -- An expiry exactly when there is an owner; a completed task holds no lease.
    CHECK ((lease_expires IS NULL) = (lease_owner IS NULL)
           AND (lease_expires IS NULL OR lease_expires >= 0)
           AND (state <> 'completed' OR lease_owner IS NULL));
ALTER TABLE tasks ADD COLUMN lease_token INTEGER NOT NULL DEFAULT 0 CHECK (lease_token >= 0);
