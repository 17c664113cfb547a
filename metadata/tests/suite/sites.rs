//! Sites that joined the store (schema version 5; KEYS.md §8.5).

use dare_metadata::{MetaError, SiteKeyRecord, SiteRecord};

use super::{Fixture, fails, read, write};

fn site(name: &str, fp: u8) -> SiteRecord {
    SiteRecord {
        name: name.into(),
        fingerprint: [fp; 32],
        public_key: vec![0x30, fp, 1, 2, 3],
        granted: 1_700_000_000,
    }
}

fn key(fp: u8, blob: u8) -> SiteKeyRecord {
    SiteKeyRecord {
        fingerprint: [fp; 32],
        blob_hash: [blob; 32],
        wrapped: vec![blob; 384],
    }
}

/// Sites and their keys round-trip; names and fingerprints are unique; a key needs its site;
/// a key is replaced in place; deleting a site deletes its keys and only its keys.
pub fn sites_round_trip(f: &Fixture) {
    let db = &*f.db;
    assert_eq!(read(db, |tx| tx.sites()), vec![]);
    write(db, |tx| {
        tx.insert_site(&site("west", 2))?;
        tx.insert_site(&site("east", 1))?;
        tx.put_site_key(&key(1, 9))?;
        tx.put_site_key(&key(1, 3))?;
        tx.put_site_key(&key(2, 3))
    });
    assert_eq!(
        read(db, |tx| tx.sites()),
        vec![site("east", 1), site("west", 2)]
    );
    assert_eq!(
        read(db, |tx| tx.site_keys(&[1; 32])),
        vec![key(1, 3), key(1, 9)]
    );
    match fails(db, |tx| tx.insert_site(&site("east", 7))) {
        MetaError::AlreadyExists { what: "site", name } => assert_eq!(name, "east"),
        e => panic!("{e:?}"),
    }
    match fails(db, |tx| tx.insert_site(&site("north", 1))) {
        MetaError::AlreadyExists {
            what: "site key pair",
            ..
        } => {}
        e => panic!("{e:?}"),
    }
    assert!(matches!(
        fails(db, |tx| tx.put_site_key(&key(5, 1))),
        MetaError::NotFound { what: "site", .. }
    ));
    let mut replaced = key(1, 9);
    replaced.wrapped = vec![0xee; 512];
    write(db, |tx| tx.put_site_key(&replaced));
    assert_eq!(
        read(db, |tx| tx.site_keys(&[1; 32])),
        vec![key(1, 3), replaced]
    );
    assert!(write(db, |tx| tx.delete_site("east")));
    assert!(!write(db, |tx| tx.delete_site("east")));
    assert_eq!(read(db, |tx| tx.sites()), vec![site("west", 2)]);
    assert_eq!(read(db, |tx| tx.site_keys(&[1; 32])), vec![]);
    assert_eq!(read(db, |tx| tx.site_keys(&[2; 32])), vec![key(2, 3)]);
    // Invalid records are refused by the schema's checks (`fails` panics on success).
    for bad in [site("", 4), site(&"x".repeat(65), 4)] {
        fails(db, |tx| tx.insert_site(&bad));
    }
    let mut long = key(2, 4);
    long.wrapped = vec![1; 1025];
    fails(db, |tx| tx.put_site_key(&long));
}
