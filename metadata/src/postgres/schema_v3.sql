-- dare metadata schema for PostgreSQL, version 3 (docs/METADATA.md §2 `buckets`, §7.3, §9;
-- KMS.md): the key management service — customer master keys (CMKs), their versions, their
-- registrations and the audit trail — and SSE-KMS buckets, whose bucket key a CMK wraps.
-- Applied once, in one transaction under the migration lock, to a database at version 2 (and
-- to a new database after version 2). Existing buckets get `kms_key_id` NULL.
--
-- Types as in version 1: u64 fields bigint (values above 2^63 - 1 are refused before they get
-- here), u32 fields bigint with a range CHECK, flags boolean, byte strings bytea; ids,
-- aliases and resources `text COLLATE "C"` (compared and sorted byte for byte, and immune to
-- the operating system's collation changing under an index). Every CHECK is written so that
-- NULL cannot pass: it tests IS NULL itself or reads only NOT NULL columns. Constraints are
-- named: postgres/error.rs maps violations by name.

-- buckets: a new column, and the key CHECK of version 1 replaced (the wrapped key of an
-- SSE-KMS bucket is a KMS ciphertext, not a 40-byte RFC 5649 wrap). The column is not a
-- foreign key: the control plane checks the CMK in the transaction that names it, and CMK
-- rows are never deleted (a deleted CMK stays as a tombstone).
ALTER TABLE buckets
    ADD COLUMN kms_key_id text COLLATE "C",
    DROP CONSTRAINT buckets_key_iff_encrypted,
    -- A key exactly when encrypted: 40 bytes, or a KMS ciphertext when a CMK wraps it.
    ADD CONSTRAINT buckets_key_iff_encrypted CHECK (
        CASE WHEN encryption
             THEN wrapped_key IS NOT NULL
                  AND (kms_key_id IS NOT NULL OR octet_length(wrapped_key) = 40)
             ELSE wrapped_key IS NULL
        END),
    -- Only an encrypted bucket names a CMK; its ciphertext is 1..=4096 bytes.
    ADD CONSTRAINT buckets_kms_encrypted CHECK (
        kms_key_id IS NULL
        OR (encryption AND wrapped_key IS NOT NULL
            AND char_length(kms_key_id) BETWEEN 1 AND 255
            AND octet_length(wrapped_key) BETWEEN 1 AND 4096));

-- One row per CMK, deleted ones included (tombstones: the id is never reused).
CREATE TABLE kms_keys (
    key_id                  text    COLLATE "C" NOT NULL CONSTRAINT kms_keys_pkey PRIMARY KEY
                            CONSTRAINT kms_keys_key_id_length
                                CHECK (char_length(key_id) BETWEEN 1 AND 255),
    -- Unique while set; several deleted keys have none (a UNIQUE constraint lets NULLs repeat).
    alias                   text    COLLATE "C" CONSTRAINT kms_keys_alias_key UNIQUE
                            CONSTRAINT kms_keys_alias_length
                                CHECK (alias IS NULL OR char_length(alias) BETWEEN 1 AND 255),
    description             text    NOT NULL
                            CONSTRAINT kms_keys_description_length
                                CHECK (char_length(description) <= 255),
    state                   text    NOT NULL
                            CONSTRAINT kms_keys_state_valid
                                CHECK (state IN ('enabled', 'disabled', 'pending-deletion',
                                                 'pending-import', 'deleted')),
    origin                  text    NOT NULL
                            CONSTRAINT kms_keys_origin_valid
                                CHECK (origin IN ('generated', 'external')),
    default_key             boolean NOT NULL,
    created_ms              bigint  NOT NULL CHECK (created_ms >= 0),
    rotation_enabled        boolean NOT NULL,
    rotation_days           bigint  NOT NULL
                            CONSTRAINT kms_keys_rotation_days_valid
                                CHECK (rotation_days BETWEEN 30 AND 365),
    last_rotation_ms        bigint  NOT NULL CHECK (last_rotation_ms >= 0),
    rotations               bigint  NOT NULL CHECK (rotations BETWEEN 0 AND 4294967295),
    last_manual_rotation_ms bigint
                            CHECK (last_manual_rotation_ms IS NULL OR last_manual_rotation_ms >= 0),
    deletion_due_ms         bigint  CHECK (deletion_due_ms IS NULL OR deletion_due_ms >= 0),
    state_before            text
                            CONSTRAINT kms_keys_state_before_valid
                                CHECK (state_before IS NULL
                                       OR state_before IN ('enabled', 'disabled')),
    material_expires_ms     bigint
                            CHECK (material_expires_ms IS NULL OR material_expires_ms >= 0),
    material_fingerprint    bytea,
    min_decryption_version  bigint  NOT NULL
                            CHECK (min_decryption_version BETWEEN 1 AND 4294967295),
    -- Pending import parameters: all five or none (kms_keys_import_whole).
    import_token_id         bytea
                            CHECK (import_token_id IS NULL OR octet_length(import_token_id) = 32),
    import_algorithm        text,
    import_private_key      bytea,
    import_public_key       bytea,
    import_expires_ms       bigint  CHECK (import_expires_ms IS NULL OR import_expires_ms >= 0),
    deleted_ms              bigint  CHECK (deleted_ms IS NULL OR deleted_ms >= 0),
    row_version             bigint  NOT NULL CHECK (row_version >= 0),
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

-- The versions of a CMK's key material.
CREATE TABLE kms_versions (
    key_id      text   COLLATE "C" NOT NULL
                CONSTRAINT kms_versions_key_fkey REFERENCES kms_keys (key_id) ON DELETE CASCADE,
    version     bigint NOT NULL CHECK (version BETWEEN 1 AND 4294967295),
    -- Root-of-trust blob of the material; NULL while an external CMK has none.
    material    bytea,
    created_ms  bigint NOT NULL CHECK (created_ms >= 0),
    encryptions bigint NOT NULL CHECK (encryptions >= 0),
    CONSTRAINT kms_versions_pkey PRIMARY KEY (key_id, version)
);

-- The resources a CMK protects.
CREATE TABLE kms_registrations (
    key_id      text   COLLATE "C" NOT NULL
                CONSTRAINT kms_registrations_key_fkey REFERENCES kms_keys (key_id),
    resource    text   COLLATE "C" NOT NULL
                CONSTRAINT kms_registrations_resource_length
                    CHECK (octet_length(resource) BETWEEN 1 AND 1024),
    version     bigint NOT NULL CHECK (version BETWEEN 1 AND 4294967295),
    description text   NOT NULL,
    created_ms  bigint NOT NULL CHECK (created_ms >= 0),
    updated_ms  bigint NOT NULL CHECK (updated_ms >= 0),
    CONSTRAINT kms_registrations_pkey PRIMARY KEY (key_id, resource)
);

-- The audit trail, one row per record, from seq 1 without gaps. `key_id` is not a foreign
-- key: the trail outlives keys, and records operations that named no existing key.
CREATE TABLE kms_audit (
    seq        bigint NOT NULL CONSTRAINT kms_audit_pkey PRIMARY KEY CHECK (seq >= 1),
    time_ms    bigint NOT NULL CHECK (time_ms >= 0),
    actor      text   NOT NULL,
    operation  text   NOT NULL,
    key_id     text   COLLATE "C",
    version    bigint CHECK (version IS NULL OR version BETWEEN 0 AND 4294967295),
    request_id text   NOT NULL,
    outcome    text   NOT NULL,
    detail     text   NOT NULL,
    mac        bytea  NOT NULL CHECK (octet_length(mac) = 32)
);

-- The trail's head: the last record's seq and MAC, kept apart from the records (no row
-- before the first record). Truncating the trail's tail or rewriting a record leaves a head
-- that no longer matches the chain.
CREATE TABLE kms_audit_head (
    id  smallint NOT NULL CONSTRAINT kms_audit_head_pkey PRIMARY KEY CHECK (id = 1),
    seq bigint   NOT NULL CHECK (seq >= 1),
    mac bytea    NOT NULL CHECK (octet_length(mac) = 32)
);
