//! First light: create, put, get, list, overwrite, delete.

use dare::{Dare, GetOptions, ListQuery, Options, PutOptions};

#[test]
fn put_get_list_delete() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let d = Dare::create(&store, 4096, &Options::default()).unwrap();
    d.create_bucket("bkt", "default", None).unwrap();
    let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7) as u8).collect();
    let name = "photos/2026/cat.jpg";
    let info = d
        .put(
            "bkt",
            name,
            &mut data.as_slice(),
            &PutOptions {
                meta: vec![("k".into(), "v".into())],
                customer_key: None,
            },
        )
        .unwrap();
    assert!(info.encrypted);
    let o = d.get("bkt", name, &GetOptions::default()).unwrap();
    assert_eq!(o.to_vec().unwrap(), data);
    assert_eq!(o.meta(), &[("k".to_string(), "v".to_string())]);
    let page = d
        .list(
            "bkt",
            &ListQuery {
                prefix: "photos/".into(),
                delimiter: Some("/".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(page.common_prefixes, vec!["photos/2026/".to_string()]);
    d.put("bkt", name, &mut &b"new"[..], &PutOptions::default())
        .unwrap();
    assert_eq!(
        d.get("bkt", name, &GetOptions::default())
            .unwrap()
            .to_vec()
            .unwrap(),
        b"new"
    );
    d.delete("bkt", name).unwrap();
    assert!(d.get("bkt", name, &GetOptions::default()).is_err());
    let r = d
        .fsck(&dare::FsckOptions {
            deep: true,
            ..Default::default()
        })
        .unwrap();
    assert!(r.is_clean(), "{r:?}");
    assert!(r.garbage.is_empty(), "{r:?}");
    drop(d);
    let d = Dare::open(&store, &Options::default()).unwrap();
    assert_eq!(d.buckets(None).unwrap().len(), 1);
}
