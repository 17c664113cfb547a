-- dare metadata schema for PostgreSQL, version 4 (docs/METADATA.md §2 `master_keys`,
-- `tasks`; KEYS.md §8.3): the rekey. A rekey is a rotation whose new master key is protected
-- by another root of trust, so each master key row says which root protects it (NULL: the
-- store row's, as for every row made before this version and by plain rotations), with the
-- RT data key under that root, and when its key was deactivated in the key manager after it
-- was retired. A task records the root a rekey moves to. Applied once, in one transaction
-- under the migration lock, to a database at version 3. Existing rows get NULL in every new
-- column. Every CHECK tests IS NULL itself, so NULL cannot pass unnoticed.
ALTER TABLE master_keys
    ADD COLUMN root_of_trust text,
    ADD COLUMN management    text,
    ADD COLUMN key_id        text,
    ADD COLUMN rt_wrapped    bytea,
    ADD COLUMN deactivated   bigint,
    ADD COLUMN deactivation  text,
    ADD CONSTRAINT master_keys_root_length
        CHECK (root_of_trust IS NULL OR char_length(root_of_trust) BETWEEN 1 AND 1024),
    ADD CONSTRAINT master_keys_management_valid
        CHECK (management IS NULL OR management IN ('internal', 'external', 'hsm')),
    ADD CONSTRAINT master_keys_key_id_length
        CHECK (key_id IS NULL OR char_length(key_id) BETWEEN 1 AND 1024),
    ADD CONSTRAINT master_keys_rt_wrapped_length
        CHECK (rt_wrapped IS NULL OR octet_length(rt_wrapped) BETWEEN 1 AND 65536),
    ADD CONSTRAINT master_keys_deactivated_valid CHECK (deactivated IS NULL OR deactivated >= 0),
    -- A deactivation result exactly when a deactivation time.
    ADD CONSTRAINT master_keys_deactivation_whole
        CHECK ((deactivation IS NULL AND deactivated IS NULL)
               OR (deactivation IN ('deactivated', 'nothing') AND deactivated IS NOT NULL));

ALTER TABLE tasks
    ADD COLUMN target_root text,
    -- When a runner last saved the task, Unix seconds (the report's last-update time).
    ADD COLUMN updated     bigint,
    ADD CONSTRAINT tasks_target_root_length
        CHECK (target_root IS NULL OR char_length(target_root) BETWEEN 1 AND 1024),
    ADD CONSTRAINT tasks_updated_valid CHECK (updated IS NULL OR updated >= 0);
