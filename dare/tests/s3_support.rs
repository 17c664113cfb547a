//! What the S3 server needs from the library: internal names hidden from listings, objects
//! assembled from parts with S3's `-N` ETag (readable, checksum still verified), and a bucket's
//! encryption changed only while it is empty.

use dare::{Dare, GetOptions, INTERNAL_PREFIX, ListQuery, Options, PutOptions};

fn store() -> (tempfile::TempDir, Dare) {
    let dir = tempfile::tempdir().unwrap();
    let d = Dare::create(&dir.path().join("s"), 4096, &Options::default()).unwrap();
    (dir, d)
}

#[test]
fn internal_names_are_hidden_unless_asked_for() {
    let (_t, d) = store();
    d.create_bucket("bkt", dare::DEFAULT_NAMESPACE, None)
        .unwrap();
    let opts = PutOptions::default();
    for n in ["a", "b/c"] {
        d.put("bkt", n, &mut &b"x"[..], &opts).unwrap();
    }
    let hidden = format!("{INTERNAL_PREFIX}mpu/1");
    d.put("bkt", &hidden, &mut &b"y"[..], &opts).unwrap();
    let all = d.list("bkt", &ListQuery::default()).unwrap();
    let names: Vec<_> = all.objects.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["a", "b/c"]);
    let q = ListQuery {
        delimiter: Some("/".into()),
        ..ListQuery::default()
    };
    let p = d.list("bkt", &q).unwrap();
    assert_eq!(p.common_prefixes, ["b/"]);
    assert_eq!(p.objects.len(), 1);
    let q = ListQuery {
        prefix: INTERNAL_PREFIX.into(),
        ..ListQuery::default()
    };
    let inner = d.list("bkt", &q).unwrap();
    assert_eq!(inner.objects.len(), 1);
    assert_eq!(inner.objects[0].name, hidden);
}

#[test]
fn multipart_objects_carry_the_part_count_and_stay_readable() {
    let (_t, d) = store();
    d.create_bucket("enc", dare::DEFAULT_NAMESPACE, None)
        .unwrap();
    d.create_namespace("clear", false).unwrap();
    d.create_bucket("plain", "clear", Some(false)).unwrap();
    let data: Vec<u8> = (0..20_000u32).map(|i| (i % 253) as u8).collect();
    for b in ["enc", "plain"] {
        let info = d
            .put_multipart(b, "o", &mut &data[..], &PutOptions::default(), 3)
            .unwrap();
        assert!(info.etag.ends_with("-3"), "{}", info.etag);
        assert_eq!(d.head(b, "o").unwrap().etag, info.etag);
        let obj = d.get(b, "o", &GetOptions::default()).unwrap();
        assert_eq!(obj.to_vec().unwrap(), data, "{b}");
    }
}

#[test]
fn bucket_encryption_changes_only_while_empty() {
    let (_t, d) = store();
    d.create_bucket("bkt", dare::DEFAULT_NAMESPACE, None)
        .unwrap();
    let key = d.kms().default_key().unwrap().key_id;
    let b = d.set_bucket_encryption("bkt", Some(&key)).unwrap();
    assert_eq!(b.kms_key_id.as_deref(), Some(key.as_str()));
    d.put("bkt", "x", &mut &b"data"[..], &PutOptions::default())
        .unwrap();
    match d.set_bucket_encryption("bkt", None) {
        Err(dare::Error::BucketNotEmpty { .. }) => {}
        other => panic!("changed the encryption of a bucket holding objects: {other:?}"),
    }
    assert_eq!(
        d.bucket("bkt").unwrap().kms_key_id.as_deref(),
        Some(key.as_str())
    );
    let obj = d.get("bkt", "x", &GetOptions::default()).unwrap();
    assert_eq!(obj.to_vec().unwrap(), b"data");
    d.delete("bkt", "x").unwrap();
    let b = d.set_bucket_encryption("bkt", None).unwrap();
    assert_eq!(b.kms_key_id, None);
    assert!(b.encryption);
}
