//! Issue 14, reproduced from the command line: each test runs what an attacker or a careless
//! operator ran against the `dare` binary and checks that it no longer works, and that the
//! refusal is one clear line with a non-zero exit.

mod common;

use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Store, check_failure, dare, pattern, write};

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().mode() & 0o7777
}

fn chmod(p: &Path, m: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
}

fn mkfifo(p: &Path) {
    let ok = Command::new("mkfifo").arg(p).status().unwrap().success();
    assert!(ok, "mkfifo {p:?}");
}

fn is_root() -> bool {
    fs::metadata("/proc/self").unwrap().uid() == 0
}

/// Runs `c` and fails the test if it has not finished after `secs` (a hang).
fn run_bounded(mut c: Command, secs: u64) -> std::process::Output {
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("command still running after {secs} s: {c:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// 1. `get -o` never replaces what it does not own: a device stays a device, a FIFO receives
///    the plaintext through itself, a directory is refused, a new file is 0600.
#[test]
fn get_output_targets() {
    let s = Store::new(4096);
    s.ok(&["bucket", "create", "bkt"]);
    let data = pattern(10_000, 1);
    s.ok(&["put", "bkt/o", &write(&s.tmp("in"), &data)]);

    if is_root() {
        // Only root could have replaced /dev/null; as anyone else the test proves nothing.
        s.ok(&["get", "bkt/o", "-o", "/dev/null"]);
        assert!(
            fs::metadata("/dev/null")
                .unwrap()
                .file_type()
                .is_char_device()
        );
    }

    let fifo = s.tmp("fifo");
    mkfifo(&fifo);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || fs::read(fifo).unwrap())
    };
    s.ok(&["get", "bkt/o", "-o", fifo.to_str().unwrap()]);
    assert_eq!(reader.join().unwrap(), data);
    assert!(fs::metadata(&fifo).unwrap().file_type().is_fifo());

    let (_, err) = check_failure(
        "get -o DIR",
        &s.run(&["get", "bkt/o", "-o", s.base().to_str().unwrap()]),
    );
    assert!(err.contains("directory"), "{err}");

    // Under umask 000 the plaintext file is still 0600.
    let out = s.tmp("plain.out");
    let o = Command::new("sh")
        .arg("-c")
        .arg(r#"umask 000; exec "$0" --store "$1" get bkt/o -o "$2""#)
        .arg(env!("CARGO_BIN_EXE_dare"))
        .arg(&s.path)
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(fs::read(&out).unwrap(), data);
    assert_eq!(mode(&out), 0o600);
}

/// 2a. Under umask 000 the store's directories are 0700 and its files 0600.
#[test]
fn store_modes_ignore_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let input = write(&dir.path().join("in"), &pattern(5000, 2));
    let script = r#"umask 000
        set -e
        "$0" --store "$1" init --chunk-size 4096
        "$0" --store "$1" bucket create bkt
        "$0" --store "$1" put bkt/a/b "$2""#;
    let o = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_dare"))
        .arg(&store)
        .arg(&input)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut seen = 0;
    let mut stack = vec![store.clone()];
    while let Some(p) = stack.pop() {
        let md = fs::symlink_metadata(&p).unwrap();
        if md.is_dir() {
            assert_eq!(mode(&p), 0o700, "{p:?}");
            stack.extend(fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            assert_eq!(mode(&p), 0o600, "{p:?}");
        }
        seen += 1;
    }
    assert!(seen >= 6, "walked only {seen} entries");
}

/// 2b. A store directory, root key or database that another user could have replaced is
///     refused before dare reads a key from it, with the command that fixes it.
#[test]
fn untrusted_store_files_are_refused() {
    let s = Store::new(4096);
    s.ok(&["bucket", "create", "bkt"]);
    s.ok(&["put", "bkt/o", &write(&s.tmp("in"), b"secret")]);

    for m in [0o770, 0o777, 0o722] {
        chmod(&s.path, m);
        let (code, err) = check_failure("ls on a group/other-writable store", &s.run(&["ls"]));
        assert_eq!(code, 1);
        assert!(err.contains("chmod go-w"), "{err}");
        // put too: nothing is written under keys someone else may have planted.
        check_failure(
            "put",
            &s.run(&["put", "bkt/p", s.tmp("in").to_str().unwrap()]),
        );
    }
    chmod(&s.path, 0o700);

    let db = s.path.join("dare.db");
    chmod(&db, 0o622);
    let (_, err) = check_failure("ls with a writable dare.db", &s.run(&["ls"]));
    assert!(
        err.contains("metadata database") && err.contains("chmod go-w"),
        "{err}"
    );
    chmod(&db, 0o600);

    let rk = s.path.join("root.key");
    chmod(&rk, 0o640);
    let (_, err) = check_failure("get with a readable root.key", &s.run(&["get", "bkt/o"]));
    assert!(
        err.contains("root key file") && err.contains("chmod 600"),
        "{err}"
    );
    chmod(&rk, 0o600);

    // A root key file replaced by a link to someone else's key.
    let other = s.tmp("other.key");
    fs::write(&other, [7u8; 32]).unwrap();
    chmod(&other, 0o600);
    fs::rename(&rk, s.tmp("root.key.saved")).unwrap();
    std::os::unix::fs::symlink(&other, &rk).unwrap();
    let (_, err) = check_failure("get with root.key a symlink", &s.run(&["get", "bkt/o"]));
    assert!(err.contains("symbolic link"), "{err}");
    fs::remove_file(&rk).unwrap();
    fs::rename(s.tmp("root.key.saved"), &rk).unwrap();

    assert!(
        is_root(),
        "the ownership half of this test gives files to another user, which needs root \
         (CI runs as root)"
    );
    for f in [&rk, &db] {
        std::os::unix::fs::chown(f, Some(65534), None).unwrap();
        let (_, err) = check_failure(
            "get with a foreign-owned key file",
            &s.run(&["get", "bkt/o"]),
        );
        assert!(
            err.contains("owned by uid 65534") && err.contains("chown"),
            "{err}"
        );
        std::os::unix::fs::chown(f, Some(0), None).unwrap();
    }
    std::os::unix::fs::chown(&s.path, Some(65534), None).unwrap();
    let (_, err) = check_failure("ls in a foreign-owned store", &s.run(&["ls"]));
    assert!(err.contains("directory is owned by uid 65534"), "{err}");
    std::os::unix::fs::chown(&s.path, Some(0), None).unwrap();
    assert_eq!(s.ok(&["get", "bkt/o"]), b"secret");
}

/// 3. Passphrases: empty and short ones are refused at init before anything is created; a
///    passphrase file others may read is refused; `--help` documents DARE_PASSPHRASE_FILE.
#[test]
fn passphrases() {
    let s = Store::empty();
    let pf = |name: &str, text: &[u8], m: u32| {
        let p = s.tmp(name);
        fs::write(&p, text).unwrap();
        chmod(&p, m);
        p.to_str().unwrap().to_owned()
    };
    for (text, needle) in [(&b""[..], "empty"), (b"eleven byte", "11 bytes")] {
        let f = pf("weak", text, 0o600);
        let (_, err) = check_failure(
            "init with a weak passphrase",
            &s.run(&["--passphrase-file", &f, "init"]),
        );
        assert!(err.contains(needle) && err.contains("12"), "{err}");
        assert!(!s.path.exists(), "a refused init left {:?}", s.path);
    }
    let readable = pf("readable", b"twelve bytes", 0o644);
    let (_, err) = check_failure(
        "init with a world-readable passphrase file",
        &s.run(&["--passphrase-file", &readable, "init"]),
    );
    assert!(err.contains("chmod 600"), "{err}");
    assert!(!s.path.exists());

    let good = pf("good", b"twelve bytes\n", 0o600);
    s.ok(&["--passphrase-file", &good, "init"]);
    s.ok(&["--passphrase-file", &good, "bucket", "create", "bkt"]);
    let o = s.run_env(&["ls"], &[("DARE_PASSPHRASE_FILE", good.as_str())]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Made readable later: refused when opening too.
    chmod(Path::new(&good), 0o640);
    check_failure(
        "ls with a readable passphrase file",
        &s.run(&["--passphrase-file", &good, "ls"]),
    );

    let help = dare().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("DARE_PASSPHRASE_FILE"), "{help}");
    assert!(help.contains("12 bytes"), "{help}");
}

/// 4. A customer key for an object not written with one is an error (S3's 400).
#[test]
fn customer_key_on_a_plain_object_is_an_error() {
    let s = Store::new(4096);
    s.ok(&["bucket", "create", "bkt"]);
    s.ok(&["put", "bkt/o", &write(&s.tmp("in"), b"data")]);
    let key = write(&s.tmp("ck"), &[5u8; 32]);
    for cmd in ["get", "head"] {
        let (_, err) = check_failure(
            "customer key on a non-SSE-C object",
            &s.run(&[cmd, "bkt/o", "--sse-c-key-file", &key]),
        );
        assert!(err.contains("customer-supplied key"), "{err}");
    }
}

/// 5. Standard output on a full disk is one line and exit 1; a reader that goes away is a
///    quiet exit 0; never a panic.
#[test]
fn full_disk_and_broken_pipe_on_stdout() {
    let s = Store::new(4096);
    s.ok(&["bucket", "create", "bkt"]);
    let big = pattern(1 << 20, 3);
    s.ok(&["put", "bkt/big", &write(&s.tmp("in"), &big)]);
    let full = || {
        fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    for args in [
        &["ls"][..],
        &["ls", "bkt"],
        &["keys", "dump"],
        &["head", "bkt/big"],
        &["get", "bkt/big"],
        &["bucket", "ls", "--json"],
        &["keys", "rotation", "status"],
        &["cpu"],
    ] {
        let o = s.cmd(args).stdout(full()).output().unwrap();
        let (code, err) = check_failure(&format!("{args:?} > /dev/full"), &o);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(
            err.contains("cannot write to standard output") && err.contains("No space left"),
            "{args:?}: {err}"
        );
    }
    // The reader reads 10 bytes of a 1 MiB object and goes away: the write fails with EPIPE.
    let mut child = s
        .cmd(&["get", "bkt/big"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 10];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(&first, &big[..10]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// 6. Control characters in names and metadata never reach the terminal raw, and cannot
///    forge a line of `head`'s output; `--json` keeps them exact.
#[test]
fn terminal_injection() {
    let s = Store::new(4096);
    s.ok(&["bucket", "create", "bkt"]);
    let evil = "v\nsize:        999 bytes\u{1b}[31m";
    let name = "n\u{1b}]0;owned\u{7}\nx";
    s.ok(&[
        "put",
        &format!("bkt/{name}"),
        &write(&s.tmp("in"), b"data"),
        "--meta",
        &format!("k={evil}"),
    ]);
    let head = String::from_utf8(s.ok(&["head", &format!("bkt/{name}")])).unwrap();
    assert!(
        !head.contains('\u{1b}') && !head.contains('\u{7}'),
        "{head:?}"
    );
    assert_eq!(
        head.lines().filter(|l| l.starts_with("size:")).count(),
        1,
        "{head}"
    );
    let ls = String::from_utf8(s.ok(&["ls", "bkt"])).unwrap();
    assert!(!ls.contains('\u{1b}'), "{ls:?}");
    assert_eq!(ls.lines().count(), 1, "{ls:?}");
    let v = s.json(&["head", &format!("bkt/{name}"), "--json"]);
    assert_eq!(v["metadata"]["k"], evil);
    assert_eq!(v["name"], name);
    // Errors escape too.
    let (_, err) = check_failure(
        "get of a missing name with ESC",
        &s.run(&["get", "bkt/missing\u{1b}[2J"]),
    );
    assert!(!err.contains('\u{1b}'), "{err:?}");
}

/// 7. A FIFO, device or link planted where a data file should be is refused at once, with an
///    error naming what it is; `get` and `head` do not hang.
#[test]
fn special_files_in_the_store() {
    let s = Store::new(4096);
    s.ok(&["bucket", "create", "bkt"]);
    let data = pattern(5000, 4);
    s.ok(&["put", "bkt/o", &write(&s.tmp("in"), &data)]);
    let f = s.data_file("bkt", "o");
    let saved = s.tmp("saved");
    fs::copy(&f, &saved).unwrap();
    let plant = |what: &str| {
        fs::remove_file(&f).unwrap();
        match what {
            "FIFO" => mkfifo(&f),
            "symbolic link" => std::os::unix::fs::symlink(&saved, &f).unwrap(),
            "directory" => fs::create_dir(&f).unwrap(),
            _ => unreachable!(),
        }
    };
    for what in ["FIFO", "symbolic link", "directory"] {
        plant(what);
        for cmd in ["get", "head"] {
            let o = run_bounded(s.cmd(&[cmd, "bkt/o"]), 20);
            let (code, err) = check_failure(&format!("{cmd} with a {what} planted"), &o);
            assert_eq!(code, 4, "{err}");
            assert!(
                err.contains(&format!("not a regular file but a {what}")),
                "{err}"
            );
        }
        if what == "directory" {
            fs::remove_dir(&f).unwrap();
        } else {
            fs::remove_file(&f).unwrap();
        }
        fs::copy(&saved, &f).unwrap();
    }
    assert_eq!(s.ok(&["get", "bkt/o"]), data);
}

/// 8. Bucket names follow S3's rules, checked before the file system is touched.
#[test]
fn bucket_names_follow_s3_rules() {
    let s = Store::new(4096);
    let before = common::walk(&s.path);
    for bad in [
        "ab",
        "Abc",
        "a..b",
        "192.168.1.1",
        "abc_d",
        "abc-",
        ".abc",
        "xn--abc",
        "abc-s3alias",
        &"a".repeat(64),
    ] {
        let (code, err) = check_failure(
            &format!("bucket create {bad:?}"),
            &s.run(&["bucket", "create", bad]),
        );
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("S3's bucket naming rules"), "{err}");
    }
    // A leading '-' passed as a value (after `--`) reaches the name check.
    let (_, err) = check_failure(
        "bucket create -- -abc",
        &s.run(&["bucket", "create", "--", "-abc"]),
    );
    assert!(
        err.contains("begin and end with a letter or digit"),
        "{err}"
    );
    assert_eq!(
        common::walk(&s.path),
        before,
        "a refused name touched the store"
    );
    s.ok(&["bucket", "create", "photos.2026-x"]);
}

/// 9. Ranges as HTTP has them: END clamped to the size, a start past the end unsatisfiable.
#[test]
fn ranges_as_http() {
    let s = Store::new(4096);
    s.ok(&["bucket", "create", "bkt"]);
    s.ok(&["put", "bkt/ten", &write(&s.tmp("in"), b"0123456789")]);
    assert_eq!(s.ok(&["get", "bkt/ten", "--range", "0-100"]), b"0123456789");
    assert_eq!(s.ok(&["get", "bkt/ten", "--range", "8-"]), b"89");
    assert_eq!(s.ok(&["get", "bkt/ten", "--range", "-3"]), b"789");
    assert_eq!(s.ok(&["get", "bkt/ten", "--range", "-100"]), b"0123456789");
    for r in ["10-", "10-20", "11-12"] {
        let (_, err) = check_failure(
            &format!("range {r}"),
            &s.run(&["get", "bkt/ten", "--range", r]),
        );
        assert!(err.contains("not satisfiable"), "{err}");
    }
}

/// Whether a `: `-separated message says something twice.
fn repeats(err: &str) -> bool {
    let parts: Vec<&str> = err.trim_end().split(": ").map(str::trim).collect();
    (0..parts.len()).any(|i| (i + 1..parts.len()).any(|j| parts[i] == parts[j]))
}

/// 10. Messages: none names a command that does not exist, none repeats itself, and each
///     says what is wrong.
#[test]
fn messages() {
    let s = Store::new(4096);
    s.ok(&["bucket", "create", "bkt"]);
    s.ok(&["put", "bkt/o", &write(&s.tmp("in"), b"data")]);

    // No rotation yet: an empty history, exit 0.
    let out = String::from_utf8(s.ok(&["keys", "rotation", "status"])).unwrap();
    assert!(out.contains("no rotation"), "{out}");
    let v = s.json(&["keys", "rotation", "status", "--json"]);
    assert_eq!(v["history"], serde_json::json!([]));

    let mut errors = Vec::new();
    let (_, err) = check_failure(
        "missing customer key file",
        &s.run(&["get", "bkt/o", "--sse-c-key-file", "/nonexistent/ck"]),
    );
    assert!(
        err.contains("cannot read customer key file /nonexistent/ck"),
        "{err}"
    );
    errors.push(err);

    let rk = s.path.join("root.key");
    let saved = fs::read(&rk).unwrap();
    fs::write(&rk, [1u8; 16]).unwrap();
    let (_, err) = check_failure("short root key", &s.run(&["ls"]));
    assert!(
        err.contains("holds 16 bytes") && err.contains("exactly 32"),
        "{err}"
    );
    assert!(!err.contains("key store is corrupt"), "{err}");
    errors.push(err);
    fs::write(&rk, &saved).unwrap();

    let none = Store::empty();
    for args in [
        &["ls"][..],
        &["keys", "dump"],
        &["keys", "rotate"],
        &["get", "b/x"],
    ] {
        let (_, err) = check_failure(&format!("{args:?} with no store"), &none.run(args));
        assert!(err.contains("dare init"), "{err}");
        errors.push(err);
    }
    for args in [
        &["get", "bkt/missing"][..],
        &["get", "nob/x"],
        &["bucket", "create", "bkt"],
        &["get", "bkt/o", "--range", "9-"],
    ] {
        errors.push(check_failure(&format!("{args:?}"), &s.run(args)).1);
    }
    for err in &errors {
        assert!(
            !err.contains("keys init"),
            "names a command that does not exist: {err}"
        );
        assert!(!repeats(err), "repeats itself: {err}");
    }
}

/// 11. An interrupted benchmark removes its scratch store; one killed outright has it
///     removed by the next run.
#[test]
fn benchmark_scratch_stores_do_not_pile_up() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = |d: &Path| -> Vec<std::path::PathBuf> {
        fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("dare-bench-")
            })
            .collect()
    };
    let bench = || {
        let mut c = dare();
        c.args([
            "bench", "overhead", "--quick", "--no-fio", "--sizes", "4k", "--dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        c
    };
    let wait_for_scratch = || {
        let deadline = Instant::now() + Duration::from_secs(30);
        while scratch(dir.path()).is_empty() {
            assert!(Instant::now() < deadline, "no scratch store appeared");
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    for (signal, code) in [("TERM", 130), ("INT", 130)] {
        let child = bench().spawn().unwrap();
        wait_for_scratch();
        std::thread::sleep(Duration::from_millis(300));
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let o = child.wait_with_output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(code),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            scratch(dir.path()).is_empty(),
            "SIGINT/TERM left {:?}",
            scratch(dir.path())
        );
    }

    let mut child = bench().spawn().unwrap();
    wait_for_scratch();
    // The directory is named after its owner from the moment it exists: a SIGKILL at any
    // point leaves a directory the next run claims.
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let left = scratch(dir.path());
    assert_eq!(
        left.len(),
        1,
        "SIGKILL should leave its scratch store: {left:?}"
    );
    // A store kept with --keep is not the next run's to remove.
    let kept = dir.path().join("dare-bench-kept");
    fs::create_dir(&kept).unwrap();
    let o = bench().output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("left by a benchmark that was killed"), "{err}");
    assert_eq!(scratch(dir.path()), vec![kept]);
}

/// 8b. Every documented limit is a validation error that says the limit, never a raw OS or
///     format error.
#[test]
fn limits_are_validated() {
    let s = Store::new(4096);
    s.ok(&["bucket", "create", "bkt"]);
    let input = write(&s.tmp("in"), b"x");
    let long_name = format!("bkt/{}", "a".repeat(1025));
    let (_, err) = check_failure("1025-byte name", &s.run(&["put", &long_name, &input]));
    assert!(
        err.contains("invalid object name: object names must be 1 to 1024 bytes"),
        "{err}"
    );
    s.ok(&["put", &format!("bkt/{}", "a".repeat(1024)), &input]);

    let big_value = format!("k={}", "v".repeat(70_000));
    let (_, err) = check_failure(
        "70000-byte metadata value",
        &s.run(&["put", "bkt/m", &input, "--meta", &big_value]),
    );
    assert!(
        err.contains("user metadata refused") && err.contains("65535"),
        "{err}"
    );
    assert!(!err.contains("malformed"), "{err}");

    let e = Store::empty();
    let (_, err) = check_failure("chunk size 3", &e.run(&["init", "--chunk-size", "3"]));
    assert!(err.contains("chunk size must be a power of two"), "{err}");
    assert!(!err.contains("name"), "{err}");
    assert!(!e.path.exists(), "a refused init created {:?}", e.path);
}
