//! A large object streams through `dare put` and `dare get` in memory bounded by the batch
//! size, not the object size. Its own test binary, so the children's peak RSS that
//! getrusage(RUSAGE_CHILDREN) reports are only these.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

const SIZE: u64 = 1 << 30; // 1 GiB

fn byte_at(i: u64) -> u8 {
    (i.wrapping_mul(0x9E37_79B9) >> 7) as u8
}

fn peak_child_rss_kib() -> i64 {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage struct.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    assert_eq!(rc, 0);
    ru.ru_maxrss
}

#[test]
fn one_gib_object_streams_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let dare = env!("CARGO_BIN_EXE_dare");
    let run = |args: &[&str]| {
        let o = Command::new(dare)
            .arg("--store")
            .arg(&store)
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    run(&["init"]);
    run(&["bucket", "create", "bkt"]);

    let mut put = Command::new(dare)
        .arg("--store")
        .arg(&store)
        .args(["put", "bkt/big", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = put.stdin.take().unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut i = 0u64;
    while i < SIZE {
        for b in buf.iter_mut() {
            *b = byte_at(i);
            i += 1;
        }
        stdin.write_all(&buf).unwrap();
    }
    drop(stdin);
    assert!(put.wait().unwrap().success());

    let mut get = Command::new(dare)
        .arg("--store")
        .arg(&store)
        .args(["get", "bkt/big"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = get.stdout.take().unwrap();
    let mut pos = 0u64;
    loop {
        let n = out.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        for &b in &buf[..n] {
            assert_eq!(b, byte_at(pos), "byte {pos}");
            pos += 1;
        }
    }
    assert!(get.wait().unwrap().success());
    assert_eq!(pos, SIZE);

    let peak_mib = peak_child_rss_kib() / 1024;
    eprintln!("peak RSS of dare put/get for a 1 GiB object: {peak_mib} MiB");
    assert!(
        peak_mib < 96,
        "dare held {peak_mib} MiB for a 1 GiB object: memory is not bounded by the batch size"
    );
}
