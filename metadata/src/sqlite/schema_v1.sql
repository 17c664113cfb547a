-- dare metadata schema, version 1 (docs/METADATA.md). Applied once, in one transaction, to a
-- new database; later versions add files schema_v2.sql, ... applied in order.

-- The schema version this database is at (one row).
CREATE TABLE dare_schema (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);

-- Resource table ------------------------------------------------------------------------

-- The one store row.
CREATE TABLE store (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    store_id        BLOB    NOT NULL CHECK (length(store_id) = 16),
    chunk_shift     INTEGER NOT NULL CHECK (chunk_shift BETWEEN 12 AND 22),
    root_of_trust   TEXT    NOT NULL,
    rt_data_key     BLOB    NOT NULL,
    active_master   INTEGER NOT NULL,
    active_rotation INTEGER NOT NULL,
    key_epoch       INTEGER NOT NULL,
    created         INTEGER NOT NULL,
    row_version     INTEGER NOT NULL
);

CREATE TABLE master_keys (
    version INTEGER PRIMARY KEY CHECK (version >= 1),
    state   TEXT    NOT NULL CHECK (state IN ('pending', 'active', 'retiring', 'retired')),
    wrapped BLOB    NOT NULL,
    created INTEGER NOT NULL,
    retired INTEGER
);

CREATE TABLE rotation_keys (
    version        INTEGER PRIMARY KEY CHECK (version >= 1),
    master_version INTEGER NOT NULL REFERENCES master_keys (version),
    wrapped        BLOB    NOT NULL CHECK (length(wrapped) = 40),
    created        INTEGER NOT NULL,
    row_version    INTEGER NOT NULL
);

CREATE TABLE namespaces (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    name           TEXT    NOT NULL UNIQUE,
    encryption     INTEGER NOT NULL CHECK (encryption IN (0, 1)),
    master_version INTEGER NOT NULL REFERENCES master_keys (version),
    wrapped_key    BLOB    NOT NULL CHECK (length(wrapped_key) = 40),
    created        INTEGER NOT NULL,
    row_version    INTEGER NOT NULL
);

CREATE TABLE buckets (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT    NOT NULL UNIQUE,
    namespace_id INTEGER NOT NULL REFERENCES namespaces (id),
    encryption   INTEGER NOT NULL CHECK (encryption IN (0, 1)),
    wrapped_key  BLOB,
    created      INTEGER NOT NULL,
    row_version  INTEGER NOT NULL,
    -- `IS NOT NULL` is needed: length(NULL) is NULL, and a CHECK that is NULL passes.
    CHECK ((encryption = 1 AND wrapped_key IS NOT NULL AND length(wrapped_key) = 40)
        OR (encryption = 0 AND wrapped_key IS NULL))
);
CREATE INDEX buckets_by_namespace ON buckets (namespace_id);

CREATE TABLE tasks (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT    NOT NULL,
    state           TEXT    NOT NULL
                    CHECK (state IN ('pending', 'running', 'transient_error', 'completed')),
    step            INTEGER NOT NULL CHECK (step >= 0),
    started         INTEGER NOT NULL,
    ended           INTEGER,
    outcome         TEXT,
    error           TEXT,
    previous_master INTEGER NOT NULL,
    new_master      INTEGER,
    new_rotation    INTEGER,
    master_attempts INTEGER NOT NULL,
    row_version     INTEGER NOT NULL
);
-- At most one unfinished task of each kind (one rotation at a time).
CREATE UNIQUE INDEX tasks_one_open_per_kind ON tasks (kind) WHERE state <> 'completed';

-- Object table --------------------------------------------------------------------------

-- One row per visible object. `name` is the UTF-8 bytes of the object's name as a BLOB, so
-- that it compares and sorts bytewise (S3 listing order) whatever the collation.
CREATE TABLE objects (
    bucket_id     INTEGER NOT NULL REFERENCES buckets (id),
    name          BLOB    NOT NULL CHECK (length(name) BETWEEN 1 AND 1024),
    object_id     BLOB    NOT NULL CHECK (length(object_id) = 16),
    size          INTEGER NOT NULL CHECK (size >= 0),
    created_ms    INTEGER NOT NULL,
    etag          TEXT    NOT NULL,
    format        INTEGER NOT NULL CHECK (format IN (1, 2)),
    suite         INTEGER NOT NULL CHECK (suite IN (0, 1)),
    chunk_shift   INTEGER NOT NULL CHECK (chunk_shift BETWEEN 12 AND 22),
    nonce_prefix  BLOB    NOT NULL CHECK (length(nonce_prefix) = 7),
    envelope_kind INTEGER,
    envelope      BLOB,
    meta          BLOB    NOT NULL,
    row_version   INTEGER NOT NULL,
    PRIMARY KEY (bucket_id, name),
    CHECK ((envelope_kind IS NULL) = (envelope IS NULL))
) WITHOUT ROWID;
