-- dare metadata schema, version 4 (docs/METADATA.md §2 `master_keys`, `tasks`; KEYS.md §8.3):
-- the rekey. A rekey is a rotation whose new master key is protected by another root of
-- trust, so each master key row says which root protects it (NULL: the store row's, as for
-- every row made before this version and by plain rotations), with the RT data key under
-- that root, and when its key was deactivated in the key manager after it was retired. A
-- task records the root a rekey moves to. Applied once, in one transaction, to a database at
-- version 3. Existing rows get NULL in every new column.
--
-- Every CHECK is written so that NULL cannot pass unnoticed: it tests IS NULL itself.
ALTER TABLE master_keys ADD COLUMN root_of_trust TEXT
    CHECK (root_of_trust IS NULL
           OR (typeof(root_of_trust) = 'text' AND length(root_of_trust) BETWEEN 1 AND 1024));
ALTER TABLE master_keys ADD COLUMN management TEXT
    CHECK (management IS NULL OR management IN ('internal', 'external', 'hsm'));
ALTER TABLE master_keys ADD COLUMN key_id TEXT
    CHECK (key_id IS NULL OR (typeof(key_id) = 'text' AND length(key_id) BETWEEN 1 AND 1024));
ALTER TABLE master_keys ADD COLUMN rt_wrapped BLOB
    CHECK (rt_wrapped IS NULL OR (typeof(rt_wrapped) = 'blob' AND length(rt_wrapped) BETWEEN 1 AND 65536));
ALTER TABLE master_keys ADD COLUMN deactivated INTEGER
    CHECK (deactivated IS NULL OR (typeof(deactivated) = 'integer' AND deactivated >= 0));
-- A deactivation result exactly when a deactivation time.
ALTER TABLE master_keys ADD COLUMN deactivation TEXT
    CHECK ((deactivation IS NULL AND deactivated IS NULL)
           OR (deactivation IN ('deactivated', 'nothing') AND deactivated IS NOT NULL));

ALTER TABLE tasks ADD COLUMN target_root TEXT
    CHECK (target_root IS NULL
           OR (typeof(target_root) = 'text' AND length(target_root) BETWEEN 1 AND 1024));
-- When a runner last saved the task, Unix seconds (the report's last-update time).
ALTER TABLE tasks ADD COLUMN updated INTEGER
    CHECK (updated IS NULL OR (typeof(updated) = 'integer' AND updated >= 0));
