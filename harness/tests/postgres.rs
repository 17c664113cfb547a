//! The `dare` binary on a PostgreSQL metadata database (a real server, started here with
//! dare-testkit) and one store directory: two processes ("nodes") creating buckets in
//! parallel, objects written by one around a rotation and read back by the other, the server
//! crashing in the middle of a big put, an unreachable server, a wrong password — and the
//! password never in any output. Without PostgreSQL installed these tests fail, saying how
//! to install it.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use dare_testkit::PgServer;
use serde_json::Value;

static SERVER: OnceLock<PgServer> = OnceLock::new();

/// The server shared by this binary's tests (the crash test starts its own).
fn server() -> &'static PgServer {
    SERVER.get_or_init(PgServer::start)
}

/// A new, empty database on `server`; its URL (with the password).
fn fresh_database(server: &PgServer) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    server.create_database(&format!("c{n}"))
}

/// `postgres://dare:***@127.0.0.1:<port>/<db>`: how dare must show `url`.
fn shown(url: &str, port: u16) -> String {
    let db = url.rsplit('/').next().expect("database");
    format!("postgres://dare:***@127.0.0.1:{port}/{db}")
}

/// How a node gives the URL: in the environment (as the help recommends) or as the flag.
#[derive(Clone, Copy, Debug)]
enum Give {
    Env,
    Flag,
}

/// One node: the `dare` binary on the shared store directory and database. Every output it
/// produces is checked for the passwords.
struct Node {
    store: PathBuf,
    url: String,
    give: Give,
    secrets: Vec<String>,
}

impl Node {
    fn new(store: &Path, url: &str, give: Give, secrets: &[&str]) -> Node {
        Node {
            store: store.to_path_buf(),
            url: url.to_owned(),
            give,
            secrets: secrets.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dare"));
        for v in [
            "DARE_STORE",
            "DARE_METADATA_URL",
            "DARE_PASSPHRASE_FILE",
            "DARE_AEAD_BACKEND",
            "DARE_IO",
        ] {
            c.env_remove(v);
        }
        c.arg("--store").arg(&self.store);
        match self.give {
            Give::Env => {
                c.env("DARE_METADATA_URL", &self.url);
            }
            Give::Flag => {
                c.arg("--metadata").arg(&self.url);
            }
        }
        c.args(args);
        c
    }

    /// Runs to the end (failing the test if it hangs), checks that no output holds a
    /// password.
    fn run(&self, args: &[&str]) -> Output {
        let child = self
            .cmd(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let o = bounded(child, &format!("dare {args:?}"));
        self.clean(&o);
        o
    }

    fn clean(&self, o: &Output) {
        for s in &self.secrets {
            for (what, text) in [("stdout", &o.stdout), ("stderr", &o.stderr)] {
                let text = String::from_utf8_lossy(text);
                assert!(!text.contains(s.as_str()), "password on {what}: {text}");
            }
        }
    }

    fn ok(&self, args: &[&str]) -> Vec<u8> {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "dare {args:?} failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        o.stdout
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_slice(&out).unwrap_or_else(|e| {
            panic!(
                "{args:?}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out)
            )
        })
    }

    /// A command that must fail with one line on stderr; returns (exit status, that line).
    fn fails(&self, args: &[&str]) -> (i32, String) {
        let o = self.run(args);
        one_line_failure(&format!("{args:?}"), &o)
    }
}

/// Waits for a child, killing it and failing the test if it runs for more than two minutes
/// (a hang, not a slow machine: every command here takes well under a second or two).
fn bounded(mut child: Child, what: &str) -> Output {
    let out = std::thread::spawn({
        let stdout = child.stdout.take();
        move || {
            let mut b = Vec::new();
            if let Some(mut s) = stdout {
                std::io::Read::read_to_end(&mut s, &mut b).unwrap();
            }
            b
        }
    });
    let err = std::thread::spawn({
        let stderr = child.stderr.take();
        move || {
            let mut b = Vec::new();
            if let Some(mut s) = stderr {
                std::io::Read::read_to_end(&mut s, &mut b).unwrap();
            }
            b
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} hung");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

#[track_caller]
fn one_line_failure(what: &str, o: &Output) -> (i32, String) {
    assert!(!o.status.success(), "dare {what} unexpectedly succeeded");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "dare {what}: not one line: {err}");
    assert!(err.starts_with("dare: error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    (o.status.code().unwrap_or(-1), err)
}

/// A port of 127.0.0.1 nothing listens on (bound, then closed).
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn pattern(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn write_file(path: &Path, data: &[u8]) -> String {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.write_all(data).unwrap();
    path.to_str().unwrap().to_owned()
}

/// How many files (not directories) are under `dir`.
fn files_under(dir: &Path) -> usize {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                files_under(&e.path())
            } else {
                1
            }
        })
        .sum()
}

fn rotation_version(head: &Value) -> u64 {
    head["key_ref"]["rotation_version"]
        .as_u64()
        .unwrap_or_else(|| panic!("{head}"))
}

/// `init` on PostgreSQL, the output naming the database without its password, and every
/// command's output — text, `--json`, `--help`, errors — free of it, whether the URL comes
/// from the environment or the flag.
#[test]
fn init_and_every_output_on_postgresql_hide_the_password() {
    let s = server();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let url = fresh_database(s);
    let a = Node::new(&store, &url, Give::Env, &[s.password()]);
    let b = Node::new(&store, &url, Give::Flag, &[s.password()]);

    let init = a.json(&["init", "--json"]);
    assert_eq!(init["metadata"], "postgres");
    assert_eq!(init["metadata_database"], shown(&url, s.port()));
    assert!(!store.join("dare.db").exists());
    let recorded: Value =
        serde_json::from_slice(&fs::read(store.join("metadata.json")).unwrap()).unwrap();
    assert_eq!(recorded["url"], shown(&url, s.port()));
    assert_eq!(recorded["store_id"], init["store_id"]);
    // A second init is refused.
    let (code, err) = b.fails(&["init"]);
    assert_eq!(code, 1);
    assert!(err.contains("already holds a dare store"), "{err}");

    let input = write_file(&dir.path().join("in"), &pattern(100_000, 1));
    let backup = dir.path().join("meta.bak");
    let backup = backup.to_str().unwrap();
    for node in [&a, &b] {
        for args in [
            &["--help"][..],
            &["init", "--help"],
            &["bucket", "ls", "--json"],
            &["ls"],
            &["keys", "dump"],
            &["keys", "rotation", "status", "--json"],
            &["fsck", "--json"],
            &["fsck", "--deep"],
        ] {
            node.ok(args);
        }
    }
    a.json(&["bucket", "create", "bkt", "--json"]);
    b.json(&["put", "bkt/obj", &input, "--json"]);
    let head = a.json(&["head", "bkt/obj", "--json"]);
    assert_eq!(head["size"], 100_000);
    assert_eq!(a.ok(&["get", "bkt/obj"]), pattern(100_000, 1));
    a.json(&["ls", "bkt", "--json"]);
    a.json(&["keys", "rewrap", "--all", "--json"]);

    // The help names the variable and says why to prefer it, and shows no value.
    let help = String::from_utf8(a.ok(&["--help"])).unwrap();
    assert!(
        help.contains("DARE_METADATA_URL") && help.contains("ps"),
        "{help}"
    );

    // Backup and restore say what to use on PostgreSQL.
    let (_, err) = a.fails(&["backup", backup]);
    assert!(err.contains("pg_dump"), "{err}");
    let (_, err) = b.fails(&["restore", backup]);
    assert!(err.contains("pg_restore"), "{err}");

    // Without the URL: which database, and how to give it.
    let none = Command::new(env!("CARGO_BIN_EXE_dare"))
        .env_remove("DARE_METADATA_URL")
        .arg("--store")
        .arg(&store)
        .args(["bucket", "ls"])
        .output()
        .unwrap();
    let (code, err) = one_line_failure("bucket ls without a URL", &none);
    assert_eq!(code, 1);
    for part in [
        &shown(&url, s.port())[..],
        "DARE_METADATA_URL",
        "--metadata",
    ] {
        assert!(err.contains(part), "{part}: {err}");
    }
    // A URL for a SQLite store does not apply.
    let lite = dir.path().join("lite");
    let l = Command::new(env!("CARGO_BIN_EXE_dare"))
        .env_remove("DARE_METADATA_URL")
        .arg("--store")
        .arg(&lite)
        .arg("init")
        .output()
        .unwrap();
    assert!(l.status.success());
    let (_, err) = Node::new(&lite, &url, Give::Env, &[s.password()]).fails(&["ls"]);
    assert!(err.contains("does not apply"), "{err}");

    // The parsed command line and the settings print no password either.
    let cli =
        <dare_cli::cli::Cli as clap::Parser>::try_parse_from(["dare", "--metadata", &url, "ls"])
            .unwrap();
    let settings = dare_cli::settings::Settings::from_cli(&cli).unwrap();
    let debug = format!("{cli:?} {settings:?} {:?}", settings.options().unwrap());
    assert!(!debug.contains(s.password()), "{debug}");
}

/// Two `dare` processes on one database and one store directory create 500 buckets each at
/// the same time: 1000 buckets at the end, and no error (conflicts are retried inside).
#[test]
fn two_processes_create_a_thousand_buckets_in_parallel() {
    let s = server();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let url = fresh_database(s);
    let node = Node::new(&store, &url, Give::Env, &[s.password()]);
    node.ok(&["init"]);
    const EACH: usize = 500;
    // Each child runs a shell loop of real `dare bucket create` processes.
    let script = r#"i=0
while [ "$i" -lt "$2" ]; do
  "$3" --store "$4" bucket create "$1-$i" || exit 1
  i=$((i + 1))
done"#;
    let spawn = |prefix: &str| {
        Command::new("/bin/sh")
            .env_remove("DARE_STORE")
            .env_remove("DARE_PASSPHRASE_FILE")
            .env("DARE_METADATA_URL", &url)
            .arg("-c")
            .arg(script)
            .arg("buckets")
            .arg(prefix)
            .arg(EACH.to_string())
            .arg(env!("CARGO_BIN_EXE_dare"))
            .arg(&store)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let started = Instant::now();
    let (one, two) = (spawn("node-a"), spawn("node-b"));
    let (one, two) = (bounded(one, "node a"), bounded(two, "node b"));
    eprintln!(
        "1000 bucket creates in two processes: {:?}",
        started.elapsed()
    );
    for (name, o) in [("a", &one), ("b", &two)] {
        node.clean(o);
        assert!(
            o.status.success() && o.stderr.is_empty(),
            "node {name}: {}: {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), EACH);
    }
    let list = node.json(&["bucket", "ls", "--json"]);
    let names: BTreeSet<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_owned())
        .collect();
    let expect: BTreeSet<String> = ["node-a", "node-b"]
        .iter()
        .flat_map(|p| (0..EACH).map(move |i| format!("{p}-{i}")))
        .collect();
    assert_eq!(names.len(), 2 * EACH);
    assert_eq!(names, expect);
    let ids: BTreeSet<u64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 2 * EACH, "bucket ids are unique");
}

/// Objects written by node A before, during and after a rotation that A runs (`keys rotate
/// --wait`) read back on node B byte for byte; B rewraps them and A reads them again.
#[test]
fn objects_written_by_one_node_around_a_rotation_read_back_on_another() {
    let s = server();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let url = fresh_database(s);
    let a = Node::new(&store, &url, Give::Env, &[s.password()]);
    let b = Node::new(&store, &url, Give::Flag, &[s.password()]);
    a.ok(&["init", "--chunk-size", "4096"]);
    a.ok(&["bucket", "create", "shared"]);

    let mut written: Vec<(String, Vec<u8>)> = Vec::new();
    let mut n = 0u32;
    let mut put = |phase: &str, written: &mut Vec<(String, Vec<u8>)>| {
        n += 1;
        let data = pattern(1000 + (n as usize * 7919) % 200_000, n);
        let input = write_file(&dir.path().join(format!("in-{n}")), &data);
        let name = format!("{phase}/{n}");
        a.ok(&["put", &format!("shared/{name}"), &input]);
        written.push((name, data));
    };
    for _ in 0..5 {
        put("before", &mut written);
    }
    // During: puts while A's rotation runs in another process.
    let rotation = a
        .cmd(&["keys", "rotate", "--wait", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rotation = std::thread::spawn(move || bounded(rotation, "keys rotate --wait"));
    loop {
        put("during", &mut written);
        if rotation.is_finished() {
            break;
        }
    }
    let rotation = rotation.join().unwrap();
    a.clean(&rotation);
    assert!(
        rotation.status.success(),
        "{}",
        String::from_utf8_lossy(&rotation.stderr)
    );
    for _ in 0..5 {
        put("after", &mut written);
    }

    let check = |node: &Node| {
        for (name, data) in &written {
            let got = node.ok(&["get", &format!("shared/{name}")]);
            assert!(got == *data, "{name} differs on {:?}", node.give);
        }
    };
    check(&b);
    let version =
        |name: &str| rotation_version(&b.json(&["head", &format!("shared/{name}"), "--json"]));
    assert_eq!(version("before/1"), 1);
    assert_eq!(version(&written.last().unwrap().0), 2);
    let r = b.json(&["keys", "rewrap", "--bucket", "shared", "--json"]);
    eprintln!("{} objects, rewrap: {r}", written.len());
    for (name, _) in &written {
        assert_eq!(version(name), 2, "{name}");
    }
    check(&a);
    let f = b.json(&["fsck", "--deep", "--json"]);
    assert_eq!(f["objects"], written.len());
}

/// The server crashes (`pg_ctl stop -m immediate`) while a 64 MiB put is streaming from
/// standard input: the put fails with one line naming the database without its password;
/// after the restart the object is not there, fsck finds at most garbage, and `fsck --repair
/// --grace 0` removes it.
#[test]
fn the_server_crashing_during_a_big_put() {
    let mut s = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let url = fresh_database(&s);
    let node = Node::new(&store, &url, Give::Env, &[s.password()]);
    node.ok(&["init"]);
    node.ok(&["bucket", "create", "bkt"]);
    let data = pattern(64 << 20, 9);

    let mut put = node
        .cmd(&["put", "bkt/big", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = put.stdin.take().unwrap();
    stdin.write_all(&data[..8 << 20]).unwrap();
    s.stop_immediate();
    // The rest arrives after the crash; the put can only commit after reading it all. (A
    // put that gave up early closes the pipe: its output says why.)
    match stdin.write_all(&data[8 << 20..]) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => panic!("writing to the put: {e}"),
    }
    drop(stdin);
    let o = bounded(put, "put during a crash");
    node.clean(&o);
    let (code, err) = one_line_failure("put during a crash", &o);
    assert_eq!(code, 1);
    assert!(
        err.contains(&shown(&url, s.port())) && err.contains("unavailable"),
        "{err}"
    );

    s.start_again();
    let (code, _) = node.fails(&["head", "bkt/big"]);
    assert_eq!(code, 3, "the object is not there");
    let f = node.json(&["fsck", "--json"]);
    assert_eq!(f["errors"].as_array().unwrap().len(), 0, "{f}");
    assert!(f["garbage"].as_array().unwrap().len() <= 1, "{f}");
    node.json(&["fsck", "--repair", "--grace", "0", "--json"]);
    let f = node.json(&["fsck", "--json"]);
    assert_eq!(f["garbage"].as_array().unwrap().len(), 0, "{f}");
    assert_eq!(files_under(&store.join("objects")), 0, "a file is left");
    // The store works again.
    let input = write_file(&dir.path().join("small"), b"after the crash");
    node.ok(&["put", "bkt/small", &input]);
    assert_eq!(node.ok(&["get", "bkt/small"]), b"after the crash");
}

/// A server that cannot be reached — nothing listens on the port — at `init` and when
/// opening an existing store: one line naming the URL without its password, exit 1, no hang.
#[test]
fn an_unreachable_server_is_a_clear_error() {
    let s = server();
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port();
    let secret = "pw-unreachable-4417";
    let nowhere = format!("postgres://dare:{secret}@127.0.0.1:{port}/dare");
    let store = dir.path().join("store");
    let node = Node::new(&store, &nowhere, Give::Env, &[secret, s.password()]);
    let (code, err) = node.fails(&["init"]);
    assert_eq!(code, 1);
    let expect = format!("postgres://dare:***@127.0.0.1:{port}/dare");
    assert!(
        err.contains(&expect) && err.contains("cannot connect"),
        "{err}"
    );
    assert!(!store.exists(), "init left {} behind", store.display());

    // An existing store whose database went away.
    let url = fresh_database(s);
    Node::new(&store, &url, Give::Env, &[s.password()]).ok(&["init"]);
    for give in [Give::Env, Give::Flag] {
        let node = Node::new(&store, &nowhere, give, &[secret, s.password()]);
        let (code, err) = node.fails(&["bucket", "ls"]);
        assert_eq!(code, 1);
        assert!(
            err.contains(&expect) && err.contains("unavailable"),
            "{err}"
        );
    }
}

/// A wrong password: the server's refusal, naming the URL, and neither password.
#[test]
fn a_wrong_password_is_a_clear_error() {
    let s = server();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let url = fresh_database(s);
    Node::new(&store, &url, Give::Env, &[s.password()]).ok(&["init"]);
    let wrong_secret = "not-the-password-8812";
    let wrong = url.replace(s.password(), wrong_secret);
    assert_ne!(wrong, url);
    for give in [Give::Env, Give::Flag] {
        let node = Node::new(&store, &wrong, give, &[wrong_secret, s.password()]);
        let (code, err) = node.fails(&["ls"]);
        assert_eq!(code, 1);
        assert!(
            err.contains(&shown(&url, s.port())) && err.contains("password authentication failed"),
            "{err}"
        );
        let (_, err) = node.fails(&["init", "--json"]);
        assert!(err.contains("password authentication failed"), "{err}");
    }
}

/// `keys rotate` without `--wait` starts a background runner; with the URL given by the
/// `--metadata` flag, the runner gets it too (through its environment, not its command
/// line) and finishes the rotation.
#[test]
fn a_background_rotation_finishes_when_the_url_is_a_flag() {
    let s = server();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let url = fresh_database(s);
    let node = Node::new(&store, &url, Give::Flag, &[s.password()]);
    node.ok(&["init", "--chunk-size", "4096"]);
    let started = node.json(&["keys", "rotate", "--json"]);
    let id = started["id"].as_u64().unwrap().to_string();
    let st = node.json(&["keys", "rotation", "status", &id, "--wait", "--json"]);
    assert_eq!(st["task"]["state"], "completed", "{st}");
}
