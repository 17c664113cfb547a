//! Writes the seed corpora of every fuzz target: `gen_corpus [DIR]` (default `corpus`) creates
//! `DIR/<target>/seed-*` from valid objects (format 2 and format 1), headers, wrapped keys, and
//! files written by the last format-1 release, laid out as each target's entry point reads its
//! input (docs/FUZZING.md). Deterministic.

use std::fs;
use std::path::{Path, PathBuf};

use dare_engine::format::v1::Header;
use dare_engine::fuzzing::{
    OBJECT_VARIANTS, OBJECT_VARIANTS_V1, encode_raw_case, fixed_object, fixed_object_v1,
};
use dare_keys::fuzzing::frame_store_body;
use dare_keys::{Secret32, wrap};

/// Files written by dare 0.1.0 (format 1): objects, and a format-1 key store file.
const RELEASE_V1_OBJECTS: [(&str, &[u8]); 3] = [
    (
        "readme",
        include_bytes!("../../engine/tests/fixtures/v1/readme"),
    ),
    (
        "data",
        include_bytes!("../../engine/tests/fixtures/v1/data"),
    ),
    (
        "cat",
        include_bytes!("../../engine/tests/fixtures/v1/cat.jpg"),
    ),
];
const RELEASE_V1_KEYSTORE: &[u8] =
    include_bytes!("../../dare/tests/fixtures/v1-store/store/keystore.dat");

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = dir.join(target);
    fs::create_dir_all(&d).expect("create corpus directory");
    fs::write(d.join(format!("seed-{name}")), bytes).expect("write seed");
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "corpus".into()));
    for v in 0..OBJECT_VARIANTS {
        let f = fixed_object(v);
        // open_object: raw mode (bit 7); edit mode: none, a body bit flip, a cut into the
        // header, a header byte (a mismatch), and one edit of each row field, identity and key.
        write(
            &dir,
            "open_object",
            &format!("raw-{v}"),
            &cat(&[&[0x80 | v], &encode_raw_case(f)]),
        );
        let edits: [(&str, &[u8]); 13] = [
            ("none", &[]),
            ("flip", &[0, 40, 0, 1]),
            ("cut", &[1, 0x10, 0]),
            ("header", &[0, 9, 0, 0x10]),
            ("meta", &[6, 0, 1]),
            ("meta-cut", &[7, 0x80, 3]),
            ("size", &[8, 1, 0, 0]),
            ("prefix", &[9, 3, 1]),
            ("shift", &[10, 13, 0]),
            ("suite", &[11, 0, 0]),
            ("etag", &[12, 0, 0x80, 1, 2]),
            ("name", &[13, 3, b'x']),
            ("other-key", &[14, 0, 0]),
        ];
        for (i, (what, e)) in edits.iter().enumerate() {
            write(
                &dir,
                "open_object",
                &format!("edit-{v}-{what}"),
                &cat(&[&[v, i as u8 % 4], e]),
            );
        }
        // open_range: whole object, one byte, a span across chunk 0/1, an out-of-range read;
        // and a whole read with the size in the row edited.
        let size = f.plaintext.len() as u16;
        for (i, (off, len)) in [(0, size), (0, 1), (4000, 200), (size, 1)]
            .iter()
            .enumerate()
        {
            let s = cat(&[
                &[v | (i as u8) << 3],
                &off.to_le_bytes(),
                &len.to_le_bytes(),
            ]);
            write(&dir, "open_range", &format!("{v}-{i}"), &s);
        }
        write(
            &dir,
            "open_range",
            &format!("{v}-size"),
            &cat(&[&[v, 0, 0], &size.to_le_bytes(), &[8, 0, 0x10, 0]]),
        );
        // header: the format-2 data file header, cut and followed by the body; the metadata block.
        write(&dir, "header", &format!("v2-{v}-exact"), &f.file[..32]);
        write(&dir, "header", &format!("v2-{v}-cut"), &f.file[..31]);
        write(
            &dir,
            "header",
            &format!("v2-{v}-file"),
            &f.file[..f.file.len().min(200)],
        );
        write(&dir, "header", &format!("v2-{v}-meta"), &f.row.meta_block);
    }
    for v in 0..OBJECT_VARIANTS_V1 {
        let f = fixed_object_v1(v);
        let (h, hlen) = Header::parse(&f.bytes).expect("fixed object parses");
        // open_v1: raw mode (bit 7) and edit mode (no edit, one bit flip, a truncation).
        write(
            &dir,
            "open_v1",
            &format!("raw-{v}"),
            &cat(&[&[0x80 | v], &f.bytes]),
        );
        write(&dir, "open_v1", &format!("edit-{v}-none"), &[v, 1]);
        write(
            &dir,
            "open_v1",
            &format!("edit-{v}-flip"),
            &[v, 2, 0, 40, 0, 1],
        );
        write(
            &dir,
            "open_v1",
            &format!("edit-{v}-cut"),
            &[v, 3, 1, 0x10, 0],
        );
        // header: exact format-1 header, header with metadata and body, header cut short.
        write(&dir, "header", &format!("v1-{v}-exact"), &f.bytes[..hlen]);
        let meta_end = hlen + h.meta_len as usize;
        write(
            &dir,
            "header",
            &format!("v1-{v}-meta"),
            &f.bytes[..meta_end.min(f.bytes.len())],
        );
        write(&dir, "header", &format!("v1-{v}-cut"), &f.bytes[..hlen - 1]);
    }
    for (name, bytes) in RELEASE_V1_OBJECTS {
        write(
            &dir,
            "open_v1",
            &format!("release-{name}"),
            &cat(&[&[0x80], bytes]),
        );
        write(&dir, "header", &format!("release-{name}"), bytes);
    }
    // roundtrip: cfg (shift, clear bit 7, name bit 6), batch, object id, extension (u16),
    // metadata count and entries, [name], range (2 × u16), plaintext.
    write(&dir, "roundtrip", "empty", &[0, 0, 0, 0, 0, 0]);
    write(
        &dir,
        "roundtrip",
        "small",
        &cat(&[&[0, 1, 0, 0, 0, 0, 0, 0, 0, 0], b"hello, world"]),
    );
    write(
        &dir,
        "roundtrip",
        "multi",
        &[0, 1, 1, 0xff, 0x2f, 0, 0, 0, 0, 0, 1, 2, 3],
    );
    write(
        &dir,
        "roundtrip",
        "meta",
        &cat(&[
            &[
                3, 0, 2, 0x10, 0, 2, 1, b'a', 1, b'b', 2, b'c', b'd', 0, 0, 0, 0, 0,
            ],
            b"xyz",
        ]),
    );
    write(
        &dir,
        "roundtrip",
        "clear-name",
        &cat(&[
            &[0xc1, 2, 3, 0, 0x20, 0, 9],
            b"a/b/c.txt",
            &[0, 0, 0, 0],
            b"body",
        ]),
    );
    // kms_ciphertext: an intact sealing to edit (mode 1), one edit and a cut, a short
    // ciphertext (mode 0) and a token-sized input (mode 2).
    write(&dir, "kms_ciphertext", "intact", &[1]);
    write(&dir, "kms_ciphertext", "flip", &[1, 40, 1]);
    write(&dir, "kms_ciphertext", "cut", &[1, 0, 0, 49]);
    write(
        &dir,
        "kms_ciphertext",
        "short",
        &cat(&[&[0, 1, 3], &[0; 60]]),
    );
    write(&dir, "kms_ciphertext", "token", &cat(&[&[2, 1], &[0; 88]]));
    // kmip_ttlv: a successful and a failed KMIP response, and a KMIP root blob.
    {
        use dare_kmip::message::tag;
        use dare_kmip::ttlv::{Item, encode};
        let response = |items: Vec<Item>| {
            let mut out = Vec::new();
            encode(
                &Item::structure(
                    tag::RESPONSE_MESSAGE,
                    vec![
                        Item::structure(
                            tag::RESPONSE_HEADER,
                            vec![Item::integer(tag::BATCH_COUNT, 1)],
                        ),
                        Item::structure(tag::BATCH_ITEM, items),
                    ],
                ),
                &mut out,
            );
            out
        };
        let ok = response(vec![
            Item::enumeration(tag::OPERATION, 0x20),
            Item::enumeration(tag::RESULT_STATUS, 0),
            Item::structure(
                tag::RESPONSE_PAYLOAD,
                vec![
                    Item::text(tag::UNIQUE_IDENTIFIER, "1"),
                    Item::bytes(tag::DATA, &[7; 32]),
                ],
            ),
        ]);
        let failed = response(vec![
            Item::enumeration(tag::RESULT_STATUS, 1),
            Item::enumeration(tag::RESULT_REASON, 1),
            Item::text(tag::RESULT_MESSAGE, "Could not locate object: 9"),
        ]);
        write(&dir, "kmip_ttlv", "decrypt-ok", &ok);
        write(&dir, "kmip_ttlv", "failed", &failed);
        let blob = dare_kmip::blob::encode("kmip-a", "17", &[1; 12], &[2; 16], &[3; 32]).unwrap();
        write(&dir, "kmip_ttlv", "blob", &blob);
    }
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
    // keystore_load: the format-1 key store file of the release fixture (mode 0), its body
    // (mode 1, framed by the target) and a torn copy.
    let file = RELEASE_V1_KEYSTORE;
    write(&dir, "keystore_load", "release-file", &cat(&[&[0], file]));
    write(
        &dir,
        "keystore_load",
        "release-body",
        &cat(&[&[1], &file[52..]]),
    );
    write(
        &dir,
        "keystore_load",
        "release-torn",
        &cat(&[&[0], &file[..file.len() / 2]]),
    );
    assert_eq!(
        frame_store_body(&file[52..]),
        file,
        "the fixture is a framed format-1 store"
    );
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
