//! Namespaces and buckets: policy, removal, and crypto-shredding.

use std::fs;

use dare::{Dare, Error, GetOptions, Options, PutOptions};

#[test]
fn deleting_a_bucket_shreds_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let d = Dare::create(&store, 4096, &Options::default()).unwrap();
    d.create_bucket("doomed", "default", None).unwrap();
    d.create_bucket("kept", "default", None).unwrap();
    for i in 0..5 {
        d.put(
            "doomed",
            &format!("o{i}"),
            &mut &[i; 5000][..],
            &PutOptions::default(),
        )
        .unwrap();
    }
    d.put("kept", "k", &mut &b"stays"[..], &PutOptions::default())
        .unwrap();
    let dump: serde_json::Value = serde_json::from_str(&d.keys().dump_json().unwrap()).unwrap();
    let wrapped = dump["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "doomed")
        .map(|b| b["wrapped_key"].as_str().unwrap().to_owned())
        .unwrap();
    let wrapped = base64_decode(&wrapped);
    assert_eq!(wrapped.len(), 40);
    let holds_key = || {
        ["dare.db", "dare.db-wal"].iter().any(|f| {
            fs::read(store.join(f))
                .map(|b| b.windows(40).any(|w| w == wrapped.as_slice()))
                .unwrap_or(false)
        })
    };
    assert!(holds_key(), "the test must find the key before the delete");
    assert!(matches!(
        d.delete_bucket("doomed", false),
        Err(Error::BucketNotEmpty { objects: 5, .. })
    ));
    let doomed_id = d.bucket("doomed").unwrap().id;
    assert_eq!(d.delete_bucket("doomed", true).unwrap(), 5);
    assert!(
        !holds_key(),
        "the wrapped bucket key survives in the database files"
    );
    assert!(!store.join("objects").join(doomed_id.to_string()).exists());
    assert!(
        d.get("doomed", "o1", &GetOptions::default())
            .unwrap_err()
            .is_not_found()
    );
    assert_eq!(
        d.get("kept", "k", &GetOptions::default())
            .unwrap()
            .to_vec()
            .unwrap(),
        b"stays"
    );
    // A new bucket of the same name is a new bucket: new id, new key, empty.
    let again = d.create_bucket("doomed", "default", None).unwrap();
    assert_ne!(again.id, doomed_id);
    assert!(
        d.list("doomed", &Default::default())
            .unwrap()
            .objects
            .is_empty()
    );
    // Namespaces: refused while they hold buckets.
    d.create_namespace("ns2", false).unwrap();
    d.create_bucket("clear", "ns2", None).unwrap();
    assert!(matches!(
        d.delete_namespace("ns2"),
        Err(Error::NamespaceNotEmpty { buckets: 1, .. })
    ));
    d.delete_bucket("clear", false).unwrap();
    d.delete_namespace("ns2").unwrap();
    assert!(matches!(d.namespace("ns2"), Err(Error::NoSuchNamespace(_))));
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}
