-- dare metadata schema for PostgreSQL, version 2 (docs/METADATA.md §2 `tasks`, §7.3; KEYS.md
-- §8.2): the lease of a task — who may commit its steps, until when, and the fencing token
-- that each step's transaction checks. Applied once, in one transaction under the migration
-- lock, to a database at version 1 (and to a new database after version 1). Existing tasks
-- get a free lease with token 0.
--
-- Every CHECK is written so that NULL cannot pass: it tests IS NULL itself or reads only
-- NOT NULL columns (`state`, `lease_token`). Constraints are named, as in version 1.
ALTER TABLE tasks
    ADD COLUMN lease_owner   text,
    ADD COLUMN lease_expires bigint,
    ADD COLUMN lease_token   bigint NOT NULL DEFAULT 0,
    ADD CONSTRAINT tasks_lease_owner_length
        CHECK (lease_owner IS NULL OR char_length(lease_owner) BETWEEN 1 AND 255),
    -- An expiry exactly when there is an owner.
    ADD CONSTRAINT tasks_lease_whole CHECK ((lease_owner IS NULL) = (lease_expires IS NULL)),
    ADD CONSTRAINT tasks_lease_expires_valid CHECK (lease_expires IS NULL OR lease_expires >= 0),
    ADD CONSTRAINT tasks_lease_token_valid CHECK (lease_token >= 0),
    -- A completed task holds no lease.
    ADD CONSTRAINT tasks_completed_lease_free CHECK (state <> 'completed' OR lease_owner IS NULL);
