//! dare-testkit: a real PostgreSQL server for tests, started by the test itself, and SoftHSM2
//! tokens for the PKCS#11 root of trust ([`softhsm`]).
//!
//! dare's PostgreSQL metadata backend is tested against a real server, not a mock: its
//! isolation levels, its error codes and what a crash does are the server's. [`PgServer`]
//! makes one in a temporary directory with the distribution's own binaries — `initdb`, then
//! `pg_ctl start` on a free port of 127.0.0.1 — and removes it when dropped:
//!
//! ```no_run
//! use dare_testkit::PgServer;
//!
//! let mut server = PgServer::start();
//! let url = server.create_database("t1"); // postgres://dare:<password>@127.0.0.1:<port>/t1
//! // ... open the database at `url` ...
//! server.stop_immediate(); // a crash: pg_ctl stop -m immediate
//! server.start_again(); // crash recovery on the same data directory and port
//! ```
//!
//! A test binary usually shares one server between its tests and gives each test a fresh
//! database: `static SERVER: OnceLock<PgServer>` and `SERVER.get_or_init(PgServer::start)`.
//! Tests that stop the server start one of their own. A static is never dropped, so every
//! server also has a watchdog process that stops it and removes its directory once the test
//! process has exited, however it exited.
//!
//! - **Binaries.** The newest `/usr/lib/postgresql/<major>/bin` (Debian's layout), else
//!   `pg_config --bindir`. With neither, [`PgServer::start`] panics: "PostgreSQL not found:
//!   apt-get install postgresql (initdb and pg_ctl are needed)". A test that cannot start its
//!   server fails; it never passes without one.
//! - **Root.** `initdb` and `pg_ctl` refuse to run as root. When the test runs as root, they
//!   run as the `postgres` user (which the Debian package creates), in a directory owned by
//!   it, mode 0700.
//! - **Authentication.** The superuser `dare` has a random password; connections over TCP
//!   (the only ones the URLs name) must give it (`scram-sha-256`), so password handling is
//!   exercised. The unix socket lives in the temporary directory, reachable only by its owner.
//! - **Durability.** The server runs with PostgreSQL's defaults (`fsync = on`,
//!   `synchronous_commit = on`): a commit that returned survives `stop_immediate`.
#![deny(unsafe_code)]

pub mod pykmip;
pub mod softhsm;

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub use postgres;

/// The superuser every [`PgServer`] creates.
pub const USER: &str = "dare";

/// How many free ports [`PgServer::start`] tries before giving up (another process may take
/// a port between the moment it is found free and the server binding it).
const PORT_ATTEMPTS: usize = 5;

/// Seconds `pg_ctl` waits for the server to start or stop.
const PG_CTL_WAIT: &str = "60";

/// A PostgreSQL server of its own in a temporary directory, listening on 127.0.0.1.
///
/// Dropping it stops the server (`pg_ctl stop -m immediate`) and removes the directory.
pub struct PgServer {
    bin: PathBuf,
    /// `server.log`, `data/` and the unix socket. `None` only inside `drop`.
    dir: Option<tempfile::TempDir>,
    port: u16,
    password: String,
    /// Who runs `initdb` and `pg_ctl`: `None` for the current user.
    run_as: Option<Account>,
    running: bool,
    watchdog: Option<Child>,
}

impl std::fmt::Debug for PgServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgServer")
            .field("bin", &self.bin)
            .field("dir", &self.dir.as_ref().map(|d| d.path()))
            .field("port", &self.port)
            .field("running", &self.running)
            .finish_non_exhaustive()
    }
}

/// A Unix account to run the server's binaries as.
#[derive(Debug, Clone, Copy)]
struct Account {
    uid: u32,
    gid: u32,
}

impl PgServer {
    /// Creates a new cluster (`initdb`) in a temporary directory and starts it on a free
    /// port of 127.0.0.1. Panics, saying why, when PostgreSQL is not installed or the server
    /// does not start.
    pub fn start() -> PgServer {
        let bin = find_bindir().unwrap_or_else(|| {
            panic!(
                "PostgreSQL not found: apt-get install postgresql (initdb and pg_ctl are needed)"
            )
        });
        let dir = tempfile::Builder::new()
            .prefix("dare-pg-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        // The directory's owner is the effective user: root needs another account.
        let run_as = match fs::metadata(dir.path()).map(|m| m.uid()) {
            Ok(0) => Some(postgres_account()),
            Ok(_) => None,
            Err(e) => panic!("cannot stat {}: {e}", dir.path().display()),
        };
        let mut server = PgServer {
            bin,
            dir: Some(dir),
            port: 0,
            password: random_password(),
            run_as,
            running: false,
            watchdog: None,
        };
        server.init();
        server.watchdog = Some(server.spawn_watchdog());
        for attempt in 1..=PORT_ATTEMPTS {
            server.port = free_port();
            server.configure();
            let out = server.pg_ctl(&["start"]);
            if out.status.success() {
                server.running = true;
                return server;
            }
            let log = server.log();
            let port_taken = log.contains("could not bind") || log.contains("already in use");
            if !port_taken || attempt == PORT_ATTEMPTS {
                panic!(
                    "PostgreSQL did not start (pg_ctl: {})\n--- server log ---\n{}",
                    describe(&out),
                    tail(&log)
                );
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// The URL of the `postgres` database, with the superuser's password:
    /// `postgres://dare:<password>@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// The URL of another database of this server.
    pub fn url_for(&self, database: &str) -> String {
        format!(
            "postgres://{USER}:{}@127.0.0.1:{}/{database}",
            self.password, self.port
        )
    }

    /// The superuser's password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates an empty database named `name` (lower-case letters, digits and `_`, at most
    /// 63) and returns its URL. Panics if the name is invalid or taken.
    pub fn create_database(&self, name: &str) -> String {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        assert!(valid, "invalid database name {name:?}");
        self.client("postgres")
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {}", error_text(&e)));
        self.url_for(name)
    }

    /// A superuser connection to `database`, for what a test does behind the back of the
    /// code under test (terminating a backend, editing a row).
    pub fn client(&self, database: &str) -> postgres::Client {
        postgres::Client::connect(&self.url_for(database), postgres::NoTls)
            .unwrap_or_else(|e| panic!("cannot connect to {database}: {}", error_text(&e)))
    }

    /// Crashes the server: `pg_ctl stop -m immediate` (every server process quits at once,
    /// without a checkpoint; the next start runs crash recovery from the WAL).
    pub fn stop_immediate(&mut self) {
        assert!(self.running, "the server is not running");
        let out = self.pg_ctl(&["stop", "-m", "immediate"]);
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}\n{}",
            describe(&out),
            tail(&self.log())
        );
        self.running = false;
    }

    /// Starts the server again on the same data directory and port, after
    /// [`stop_immediate`](Self::stop_immediate).
    pub fn start_again(&mut self) {
        assert!(!self.running, "the server is running");
        let out = self.pg_ctl(&["start"]);
        assert!(
            out.status.success(),
            "PostgreSQL did not start again (pg_ctl: {})\n--- server log ---\n{}",
            describe(&out),
            tail(&self.log())
        );
        self.running = true;
    }

    /// Whether the server is running (not stopped by [`stop_immediate`](Self::stop_immediate)).
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        fs::read(self.root().join("server.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    fn root(&self) -> &Path {
        // `dir` is `None` only inside `drop`, after the last use.
        self.dir.as_ref().expect("server directory").path()
    }

    fn data(&self) -> PathBuf {
        self.root().join("data")
    }

    /// A command that runs as the server's account.
    fn command(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        // The test's working directory may be closed to the server's account.
        c.current_dir(self.root()).stdin(Stdio::null());
        if let Some(a) = self.run_as {
            // std drops the supplementary groups too (setgroups(0)) before setuid.
            c.uid(a.uid).gid(a.gid);
        }
        c
    }

    /// `initdb` with the superuser's password in a file that exists only meanwhile.
    fn init(&mut self) {
        let root = self.root().to_path_buf();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", root.display()));
        let pwfile = root.join("pwfile");
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&pwfile)
            .and_then(|mut f| f.write_all(self.password.as_bytes()))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", pwfile.display()));
        if let Some(a) = self.run_as {
            for p in [&root, &pwfile] {
                std::os::unix::fs::chown(p, Some(a.uid), Some(a.gid))
                    .unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
            }
        }
        let out = self
            .command(&self.bin.join("initdb"))
            .arg("--pgdata")
            .arg(self.data())
            .args(["--username", USER])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args([
                "--auth-host=scram-sha-256",
                // The socket is in a 0700 directory: only the server's account reaches it.
                "--auth-local=trust",
                "--encoding=UTF8",
                "--locale=C",
                // A throwaway cluster: no need to wait for its files to reach the disk.
                "--no-sync",
            ])
            .output()
            .unwrap_or_else(|e| panic!("cannot run initdb: {e}"));
        let _ = fs::remove_file(&pwfile);
        assert!(out.status.success(), "initdb failed: {}", describe(&out));
    }

    /// Appends the listening settings to `postgresql.conf` (the last setting of a name wins),
    /// so that [`start_again`](Self::start_again) finds them too.
    fn configure(&self) {
        let conf = self.data().join("postgresql.conf");
        let settings = format!(
            "\n# dare-testkit\nlisten_addresses = '127.0.0.1'\nport = {}\n\
             unix_socket_directories = '{}'\n",
            self.port,
            self.root().display()
        );
        fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .and_then(|mut f| f.write_all(settings.as_bytes()))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", conf.display()));
    }

    /// Runs `pg_ctl <args>` on the data directory, waiting for it to finish.
    fn pg_ctl(&self, args: &[&str]) -> Output {
        self.command(&self.bin.join("pg_ctl"))
            .arg("--pgdata")
            .arg(self.data())
            .arg("--log")
            .arg(self.root().join("server.log"))
            .args(["--wait", "--timeout", PG_CTL_WAIT, "--silent"])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run pg_ctl: {e}"))
    }

    /// A process that waits for this test process to exit, then stops the server and removes
    /// its directory: statics are never dropped, and a test process may be killed.
    fn spawn_watchdog(&self) -> Child {
        const SCRIPT: &str = r#"while [ -d "/proc/$1" ]; do sleep 1; done
"$2" --pgdata "$3/data" --mode immediate stop >/dev/null 2>&1
rm -rf "$3""#;
        self.command(Path::new("/bin/sh"))
            .arg("-c")
            .arg(SCRIPT)
            .arg("dare-testkit-watchdog")
            .arg(std::process::id().to_string())
            .arg(self.bin.join("pg_ctl"))
            .arg(self.root())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Not in the test's process group: a Ctrl-C to the tests must not kill it first.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the server's watchdog: {e}"))
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.running {
            let _ = self.pg_ctl(&["stop", "-m", "immediate"]);
        }
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        // Removes the directory (as root, or as its owner).
        drop(self.dir.take());
    }
}

/// The newest `/usr/lib/postgresql/<major>/bin` holding `initdb` and `pg_ctl`, else
/// `pg_config --bindir`.
fn find_bindir() -> Option<PathBuf> {
    let has_tools = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((major, e.path().join("bin")))
        })
        .filter(|(_, bin)| has_tools(bin))
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    let bin = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    (out.status.success() && has_tools(&bin)).then_some(bin)
}

/// The `postgres` account, from `/etc/passwd`.
fn postgres_account() -> Account {
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 4 && f[0] == "postgres").then(|| {
                Some(Account {
                    uid: f[2].parse().ok()?,
                    gid: f[3].parse().ok()?,
                })
            })?
        })
        .unwrap_or_else(|| {
            panic!(
                "running as root, and initdb refuses to: no `postgres` user to run it as \
                 (apt-get install postgresql creates one), or run the tests as another user"
            )
        })
}

/// A free TCP port on 127.0.0.1 (free now; the caller retries if it is taken before use).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot find a free port on 127.0.0.1: {e}"))
}

/// 32 hex digits from the operating system's generator.
fn random_password() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).unwrap_or_else(|e| panic!("no randomness: {e}"));
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Exit status and output of a finished command, for a panic message.
fn describe(out: &Output) -> String {
    format!(
        "{}; {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

/// The last lines of a log.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// A client error with the server's message, if it sent one.
fn error_text(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{e}: {}", db.message()),
        None => match std::error::Error::source(e) {
            Some(s) => format!("{e}: {s}"),
            None => e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_runs_checks_passwords_and_survives_a_crash() {
        let mut s = PgServer::start();
        let url = s.create_database("kit");
        assert!(
            url.ends_with(&format!("@127.0.0.1:{}/kit", s.port())),
            "{url}"
        );
        let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        c.batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
            .expect("write");

        // Password authentication over TCP is enforced.
        let wrong = url.replace(s.password(), "wrong");
        let e = match postgres::Client::connect(&wrong, postgres::NoTls) {
            Ok(_) => panic!("a wrong password was accepted"),
            Err(e) => e,
        };
        assert_eq!(
            e.code(),
            Some(&postgres::error::SqlState::INVALID_PASSWORD),
            "{e:?}"
        );

        s.stop_immediate();
        assert!(!s.is_running());
        assert!(c.batch_execute("SELECT 1").is_err(), "server still answers");
        s.start_again();
        let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("reconnect");
        let n: i64 = c
            .query_one("SELECT count(*) FROM t", &[])
            .expect("read")
            .get(0);
        assert_eq!(n, 1, "a committed row was lost by the crash");

        let root = s.root().to_path_buf();
        drop(c);
        drop(s);
        assert!(!root.exists(), "{} left behind", root.display());
    }
}
