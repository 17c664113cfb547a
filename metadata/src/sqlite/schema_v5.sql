-- dare metadata schema, version 5 (docs/METADATA.md §2 `sites`, `site_keys`; KEYS.md §8.5):
-- sites that joined the store. A site that holds the master keys grants them to a new site by
-- encrypting each top-level key (every master key, the RT data key) to the new site's RSA
-- public key; `sites` records the site and its public key, `site_keys` one RSA-OAEP
-- ciphertext per root-of-trust blob of the store. Applied once, in one transaction, to a
-- database at version 4. No existing row changes.
--
-- Every CHECK is written so that NULL cannot pass unnoticed (NOT NULL columns only).
CREATE TABLE sites (
    name        TEXT    NOT NULL PRIMARY KEY
                CHECK (typeof(name) = 'text' AND length(name) BETWEEN 1 AND 64),
    -- SHA-256 of public_key.
    fingerprint BLOB    NOT NULL UNIQUE
                CHECK (typeof(fingerprint) = 'blob' AND length(fingerprint) = 32),
    -- X.509 SubjectPublicKeyInfo DER of an RSA key.
    public_key  BLOB    NOT NULL
                CHECK (typeof(public_key) = 'blob' AND length(public_key) BETWEEN 1 AND 4096),
    granted     INTEGER NOT NULL CHECK (typeof(granted) = 'integer' AND granted >= 0)
);

CREATE TABLE site_keys (
    fingerprint BLOB NOT NULL REFERENCES sites (fingerprint) ON DELETE CASCADE
                CHECK (typeof(fingerprint) = 'blob' AND length(fingerprint) = 32),
    -- SHA-256 of the root-of-trust blob whose key `wrapped` holds.
    blob_hash   BLOB NOT NULL CHECK (typeof(blob_hash) = 'blob' AND length(blob_hash) = 32),
    -- RSA-OAEP ciphertext: as long as the site's modulus.
    wrapped     BLOB NOT NULL
                CHECK (typeof(wrapped) = 'blob' AND length(wrapped) BETWEEN 1 AND 1024),
    PRIMARY KEY (fingerprint, blob_hash)
) WITHOUT ROWID;
