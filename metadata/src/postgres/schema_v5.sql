-- dare metadata schema for PostgreSQL, version 5 (docs/METADATA.md §2 `sites`, `site_keys`;
-- KEYS.md §8.5): sites that joined the store. A site that holds the master keys grants them
-- to a new site by encrypting each top-level key (every master key, the RT data key) to the
-- new site's RSA public key; `sites` records the site and its public key, `site_keys` one
-- RSA-OAEP ciphertext per root-of-trust blob of the store. Applied once, in one transaction
-- under the migration lock, to a database at version 4. No existing row changes. Constraints
-- are named: postgres/error.rs maps violations by name.
CREATE TABLE sites (
    name        text   COLLATE "C" NOT NULL CONSTRAINT sites_pkey PRIMARY KEY
                CONSTRAINT sites_name_length CHECK (char_length(name) BETWEEN 1 AND 64),
    -- SHA-256 of public_key.
    fingerprint bytea  NOT NULL CONSTRAINT sites_fingerprint_key UNIQUE
                CONSTRAINT sites_fingerprint_length CHECK (octet_length(fingerprint) = 32),
    -- X.509 SubjectPublicKeyInfo DER of an RSA key.
    public_key  bytea  NOT NULL
                CONSTRAINT sites_public_key_length
                    CHECK (octet_length(public_key) BETWEEN 1 AND 4096),
    granted     bigint NOT NULL CONSTRAINT sites_granted_valid CHECK (granted >= 0)
);

CREATE TABLE site_keys (
    fingerprint bytea NOT NULL
                CONSTRAINT site_keys_site_fkey REFERENCES sites (fingerprint) ON DELETE CASCADE,
    -- SHA-256 of the root-of-trust blob whose key `wrapped` holds.
    blob_hash   bytea NOT NULL
                CONSTRAINT site_keys_blob_hash_length CHECK (octet_length(blob_hash) = 32),
    -- RSA-OAEP ciphertext: as long as the site's modulus.
    wrapped     bytea NOT NULL
                CONSTRAINT site_keys_wrapped_length
                    CHECK (octet_length(wrapped) BETWEEN 1 AND 1024),
    CONSTRAINT site_keys_pkey PRIMARY KEY (fingerprint, blob_hash)
);
