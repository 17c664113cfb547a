-- dare metadata schema, version 3 (docs/METADATA.md §2 `buckets`, §9; KMS.md): the key
-- management service — customer master keys (CMKs), their versions, their registrations and
-- the audit trail — and SSE-KMS buckets, whose bucket key a CMK wraps. Applied once, in one
-- transaction, to a database at version 2 (and to a new database after version 2). Existing
-- buckets keep their rows and ids and get `kms_key_id` NULL.
--
-- Every CHECK is written so that NULL cannot pass (a CHECK whose value is NULL passes): it
-- tests IS NULL itself or reads only NOT NULL columns. Integers are checked against the
-- range of the Rust field they hold (u64: >= 0, dare refuses values above 2^63 - 1 before
-- they get here; u32: 0..=4294967295). Text compares with SQLite's default BINARY collation:
-- byte for byte (memcmp of the UTF-8), so aliases and resources are unique and sorted as bytes.

-- buckets: a new column, and a CHECK that changes. ------------------------------------------
--
-- The wrapped key of an SSE-KMS bucket is a KMS ciphertext, not a 40-byte RFC 5649 wrap, so
-- the table CHECK of version 1 must change, and ALTER TABLE cannot change a CHECK: the table
-- is rebuilt. SQLite's own procedure (turning foreign_keys off) cannot run inside the
-- migration's transaction, and `objects` names `buckets` in a foreign key. With
-- defer_foreign_keys on (until this transaction ends), the DROP TABLE's implicit delete counts
-- one deferred violation per object row instead of failing, and each row inserted into the new
-- `buckets` counts its objects' violations off again: at the COMMIT the count is back at zero,
-- or the commit — and the whole migration — fails. `objects` is neither copied nor touched.
PRAGMA defer_foreign_keys = ON;

CREATE TABLE buckets_v2_rows AS
    SELECT id, name, namespace_id, encryption, wrapped_key, created, row_version FROM buckets;
-- The id counter (AUTOINCREMENT) survives the DROP under another name, so that ids of deleted
-- buckets are never handed out again.
UPDATE sqlite_sequence SET name = 'buckets_v2_rows' WHERE name = 'buckets';
DROP TABLE buckets;

CREATE TABLE buckets (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT    NOT NULL UNIQUE,
    namespace_id INTEGER NOT NULL REFERENCES namespaces (id),
    encryption   INTEGER NOT NULL CHECK (encryption IN (0, 1)),
    wrapped_key  BLOB,
    created      INTEGER NOT NULL,
    row_version  INTEGER NOT NULL,
    -- SSE-KMS: the CMK whose current version wraps the bucket key. Not a foreign key: the
    -- control plane checks the CMK in the transaction that names it, and CMK rows are never
    -- deleted (a deleted CMK stays as a tombstone).
    kms_key_id   TEXT,
    -- A key exactly when encrypted: 40 bytes (RFC 5649 under the namespace key), or a KMS
    -- ciphertext of 1..=4096 bytes when a CMK wraps it. `IS NOT NULL` is needed: length(NULL)
    -- is NULL, and a CHECK that is NULL passes.
    CONSTRAINT buckets_key_iff_encrypted CHECK (
        (encryption = 1 AND wrapped_key IS NOT NULL
            AND (length(wrapped_key) = 40 OR kms_key_id IS NOT NULL))
        OR (encryption = 0 AND wrapped_key IS NULL)),
    -- Only an encrypted bucket names a CMK.
    CONSTRAINT buckets_kms_encrypted CHECK (
        kms_key_id IS NULL
        OR (encryption = 1 AND wrapped_key IS NOT NULL
            AND typeof(kms_key_id) = 'text' AND length(kms_key_id) BETWEEN 1 AND 255
            AND length(wrapped_key) BETWEEN 1 AND 4096))
);
INSERT INTO buckets (id, name, namespace_id, encryption, wrapped_key, kms_key_id, created,
                     row_version)
    SELECT id, name, namespace_id, encryption, wrapped_key, NULL, created, row_version
    FROM buckets_v2_rows ORDER BY id;
-- The inserts above started a new counter at the largest id; the old one is at least that.
DELETE FROM sqlite_sequence WHERE name = 'buckets';
UPDATE sqlite_sequence SET name = 'buckets' WHERE name = 'buckets_v2_rows';
-- secure_delete (every dare connection) zeroes the copy's pages as they are freed.
DROP TABLE buckets_v2_rows;
CREATE INDEX buckets_by_namespace ON buckets (namespace_id);

-- Key management service (METADATA.md §9) ---------------------------------------------------

-- One row per CMK, deleted ones included (tombstones: the id is never reused).
CREATE TABLE kms_keys (
    key_id                  TEXT    NOT NULL PRIMARY KEY
                            CHECK (typeof(key_id) = 'text' AND length(key_id) BETWEEN 1 AND 255),
    -- Unique while set; several deleted keys have none (UNIQUE lets NULLs repeat).
    alias                   TEXT    UNIQUE
                            CHECK (alias IS NULL
                                   OR (typeof(alias) = 'text' AND length(alias) BETWEEN 1 AND 255)),
    description             TEXT    NOT NULL
                            CHECK (typeof(description) = 'text' AND length(description) <= 255),
    state                   TEXT    NOT NULL
                            CHECK (state IN ('enabled', 'disabled', 'pending-deletion',
                                             'pending-import', 'deleted')),
    origin                  TEXT    NOT NULL CHECK (origin IN ('generated', 'external')),
    default_key             INTEGER NOT NULL CHECK (default_key IN (0, 1)),
    created_ms              INTEGER NOT NULL CHECK (created_ms >= 0),
    rotation_enabled        INTEGER NOT NULL CHECK (rotation_enabled IN (0, 1)),
    rotation_days           INTEGER NOT NULL CHECK (rotation_days BETWEEN 30 AND 365),
    last_rotation_ms        INTEGER NOT NULL CHECK (last_rotation_ms >= 0),
    rotations               INTEGER NOT NULL CHECK (rotations BETWEEN 0 AND 4294967295),
    last_manual_rotation_ms INTEGER
                            CHECK (last_manual_rotation_ms IS NULL OR last_manual_rotation_ms >= 0),
    deletion_due_ms         INTEGER CHECK (deletion_due_ms IS NULL OR deletion_due_ms >= 0),
    state_before            TEXT    CHECK (state_before IS NULL
                                           OR state_before IN ('enabled', 'disabled')),
    material_expires_ms     INTEGER
                            CHECK (material_expires_ms IS NULL OR material_expires_ms >= 0),
    material_fingerprint    BLOB,
    min_decryption_version  INTEGER NOT NULL
                            CHECK (min_decryption_version BETWEEN 1 AND 4294967295),
    -- Pending import parameters: all five or none.
    import_token_id         BLOB    CHECK (import_token_id IS NULL OR length(import_token_id) = 32),
    import_algorithm        TEXT,
    import_private_key      BLOB,
    import_public_key       BLOB,
    import_expires_ms       INTEGER CHECK (import_expires_ms IS NULL OR import_expires_ms >= 0),
    deleted_ms              INTEGER CHECK (deleted_ms IS NULL OR deleted_ms >= 0),
    row_version             INTEGER NOT NULL CHECK (row_version >= 0),
    -- Every key but a deleted one has an alias; a deleted one has none (its alias is freed).
    CONSTRAINT kms_keys_alias_iff_live CHECK ((alias IS NULL) = (state = 'deleted')),
    -- Only a tombstone has a deletion time.
    CONSTRAINT kms_keys_deleted_ms_tombstone CHECK (deleted_ms IS NULL OR state = 'deleted'),
    CONSTRAINT kms_keys_import_whole CHECK (
        (import_token_id IS NULL) = (import_algorithm IS NULL)
        AND (import_token_id IS NULL) = (import_private_key IS NULL)
        AND (import_token_id IS NULL) = (import_public_key IS NULL)
        AND (import_token_id IS NULL) = (import_expires_ms IS NULL))
);
CREATE INDEX kms_keys_by_creation ON kms_keys (created_ms, key_id);

-- The versions of a CMK's key material. A rowid table, so that overwriting a version's
-- material with zeros of the same length rewrites it in place (sqlite/tx.rs
-- `delete_kms_versions`).
CREATE TABLE kms_versions (
    key_id      TEXT    NOT NULL REFERENCES kms_keys (key_id) ON DELETE CASCADE,
    version     INTEGER NOT NULL CHECK (version BETWEEN 1 AND 4294967295),
    -- Root-of-trust blob of the material; NULL while an external CMK has none.
    material    BLOB,
    created_ms  INTEGER NOT NULL CHECK (created_ms >= 0),
    encryptions INTEGER NOT NULL CHECK (encryptions >= 0),
    PRIMARY KEY (key_id, version)
);

-- The resources a CMK protects.
CREATE TABLE kms_registrations (
    key_id      TEXT    NOT NULL REFERENCES kms_keys (key_id),
    -- 1..=1024 bytes of UTF-8 (length() of TEXT counts characters; of a BLOB, bytes).
    resource    TEXT    NOT NULL
                CHECK (typeof(resource) = 'text'
                       AND length(CAST(resource AS BLOB)) BETWEEN 1 AND 1024),
    version     INTEGER NOT NULL CHECK (version BETWEEN 1 AND 4294967295),
    description TEXT    NOT NULL,
    created_ms  INTEGER NOT NULL CHECK (created_ms >= 0),
    updated_ms  INTEGER NOT NULL CHECK (updated_ms >= 0),
    PRIMARY KEY (key_id, resource)
) WITHOUT ROWID;

-- The audit trail, one row per record, from seq 1 without gaps. `key_id` is not a foreign
-- key: the trail outlives keys, and records operations that named no existing key.
CREATE TABLE kms_audit (
    seq        INTEGER PRIMARY KEY CHECK (seq >= 1),
    time_ms    INTEGER NOT NULL CHECK (time_ms >= 0),
    actor      TEXT    NOT NULL,
    operation  TEXT    NOT NULL,
    key_id     TEXT,
    version    INTEGER CHECK (version IS NULL OR version BETWEEN 0 AND 4294967295),
    request_id TEXT    NOT NULL,
    outcome    TEXT    NOT NULL,
    detail     TEXT    NOT NULL,
    mac        BLOB    NOT NULL CHECK (length(mac) = 32)
);

-- The trail's head: the last record's seq and MAC, kept apart from the records (no row
-- before the first record). Truncating the trail's tail or rewriting a record leaves a head
-- that no longer matches the chain.
CREATE TABLE kms_audit_head (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL CHECK (seq >= 1),
    mac BLOB    NOT NULL CHECK (length(mac) = 32)
);
