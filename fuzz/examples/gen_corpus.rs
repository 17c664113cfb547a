//! Writes the seed corpora of every fuzz target: `gen_corpus [DIR]` (default `corpus`) creates
//! `DIR/<target>/seed-*` from valid objects, headers, wrapped keys and real key store files,
//! laid out as each target's entry point reads its input (docs/FUZZING.md). Deterministic except
//! for the key store files, whose keys are random as in production.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dare_engine::format::Header;
use dare_engine::fuzzing::{OBJECT_VARIANTS, fixed_object};
use dare_keys::fuzzing::frame_store_body;
use dare_keys::{KeyStore, RootKeyFile, Secret32, StoreOptions, store_file, wrap};

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = dir.join(target);
    fs::create_dir_all(&d).expect("create corpus directory");
    fs::write(d.join(format!("seed-{name}")), bytes).expect("write seed");
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Key store files in a few states: fresh, with namespaces and buckets, after a rotation.
fn key_stores() -> Vec<Vec<u8>> {
    let dir: PathBuf = std::env::temp_dir().join(format!("dare-fuzz-seeds-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let root = Arc::new(RootKeyFile::from_secret(Secret32::from_bytes(
        "seed root",
        [7; 32],
    )));
    let store = KeyStore::init(&dir, root, StoreOptions::default()).expect("init key store");
    let mut out = vec![fs::read(store_file(&dir)).expect("read key store")];
    store.create_namespace("ns1", true).expect("namespace");
    store.create_namespace("plain", false).expect("namespace");
    store.create_bucket("b1", "ns1", None).expect("bucket");
    store
        .create_bucket("b2", "plain", Some(true))
        .expect("bucket");
    store.create_bucket("b3", "plain", None).expect("bucket");
    out.push(fs::read(store_file(&dir)).expect("read key store"));
    let id = store.start_rotation().expect("start rotation");
    store.run_rotation(id).expect("run rotation");
    out.push(fs::read(store_file(&dir)).expect("read key store"));
    let _ = fs::remove_dir_all(&dir);
    out
}

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "corpus".into()));
    for v in 0..OBJECT_VARIANTS {
        let f = fixed_object(v);
        let (h, hlen) = Header::parse(&f.bytes).expect("fixed object parses");
        // open_object: raw mode (bit 7) and edit mode (no edit, one bit flip, a truncation).
        write(
            &dir,
            "open_object",
            &format!("raw-{v}"),
            &cat(&[&[0x80 | v], &f.bytes]),
        );
        write(&dir, "open_object", &format!("edit-{v}-none"), &[v, 1]);
        write(
            &dir,
            "open_object",
            &format!("edit-{v}-flip"),
            &[v, 2, 0, 40, 0, 1],
        );
        write(
            &dir,
            "open_object",
            &format!("edit-{v}-cut"),
            &[v, 3, 1, 0x10, 0],
        );
        // open_range: whole object, one byte, a span across chunk 0/1, an out-of-range read.
        let size = f.plaintext.len() as u16;
        for (i, (off, len)) in [(0, size), (0, 1), (4000, 200), (size, 1)]
            .iter()
            .enumerate()
        {
            let mut s = vec![v];
            s.extend_from_slice(&off.to_le_bytes());
            s.extend_from_slice(&len.to_le_bytes());
            write(&dir, "open_range", &format!("{v}-{i}"), &s);
        }
        // header: exact header, header with metadata and body, header cut short.
        write(&dir, "header", &format!("{v}-exact"), &f.bytes[..hlen]);
        let meta_end = hlen + h.meta_len as usize;
        write(
            &dir,
            "header",
            &format!("{v}-meta"),
            &f.bytes[..meta_end.min(f.bytes.len())],
        );
        write(&dir, "header", &format!("{v}-cut"), &f.bytes[..hlen - 1]);
    }
    // roundtrip: cfg (shift, plaintext bit 7, name bit 6), batch, extension, metadata count, ...
    write(&dir, "roundtrip", "empty", &[0, 0, 0, 0, 0]);
    write(
        &dir,
        "roundtrip",
        "small",
        &cat(&[&[0, 1, 0, 0, 0, 0, 0, 0, 0], b"hello, world"]),
    );
    write(
        &dir,
        "roundtrip",
        "multi",
        &[0, 1, 0xff, 0x2f, 0, 0, 0, 0, 0, 1, 2, 3],
    );
    write(
        &dir,
        "roundtrip",
        "meta",
        &cat(&[
            &[
                3, 0, 0x10, 0, 2, 1, b'a', 1, b'b', 2, b'c', b'd', 0, 0, 0, 0, 0,
            ],
            b"xyz",
        ]),
    );
    write(
        &dir,
        "roundtrip",
        "plain-name",
        &cat(&[&[0xc1, 2, 0, 0x20, 0, 4], b"name", &[0, 0, 0, 0], b"body"]),
    );
    // unwrap_key: a correct wrapping (mode 0) and a wrap-then-edit input (mode 1).
    let kek = Secret32::from_bytes("seed kek", [0x11; 32]);
    let key = Secret32::from_bytes("seed key", [0x22; 32]);
    write(
        &dir,
        "unwrap_key",
        "valid",
        &cat(&[&[0], &[0x11; 32], &wrap::wrap_key(&kek, &key)]),
    );
    write(
        &dir,
        "unwrap_key",
        "tamper-none",
        &cat(&[&[1], &[0x11; 32], &[0x22; 32]]),
    );
    write(
        &dir,
        "unwrap_key",
        "tamper-flip",
        &cat(&[&[1], &[0x11; 32], &[0x22; 32], &[5, 1]]),
    );
    write(
        &dir,
        "unwrap_key",
        "tamper-cut",
        &cat(&[&[1], &[0x11; 32], &[0x22; 32], &[0x40, 8]]),
    );
    // keystore_load: real files (mode 0) and their bodies (mode 1, framed by the target).
    for (i, file) in key_stores().iter().enumerate() {
        write(
            &dir,
            "keystore_load",
            &format!("file-{i}"),
            &cat(&[&[0], file]),
        );
        write(
            &dir,
            "keystore_load",
            &format!("body-{i}"),
            &cat(&[&[1], &file[52..]]),
        );
        debug_assert_eq!(frame_store_body(&file[52..]), *file);
    }
    // aead_differential: key, nonce, AAD length, tamper mode, position, AAD, message.
    for (i, (aad_len, mode, msg_len)) in [
        (0u8, 0u8, 0usize),
        (13, 1, 64),
        (32, 5, 100),
        (0, 2, 255),
        (5, 3, 1024),
    ]
    .iter()
    .enumerate()
    {
        let mut s: Vec<u8> = (0..44).map(|x| x as u8).collect();
        s.extend_from_slice(&[*aad_len, *mode, 7, 0]);
        s.extend((0..usize::from(*aad_len) + msg_len).map(|x| (x * 7) as u8));
        write(&dir, "aead_differential", &format!("{i}"), &s);
    }
    println!("seed corpora written to {}", dir.display());
}
