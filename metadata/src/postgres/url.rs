//! The connection URL: parsed once, shown only without its password.
//!
//! Whatever form the caller used (`postgres://USER:PASSWORD@HOST:PORT/DB?params`,
//! `postgresql://...`, or libpq's `key=value` pairs), what dare shows — [`Target::shown`], in
//! `describe()` and in every error — is rebuilt from the parsed fields that are not secret:
//! `postgres://USER:***@HOST:PORT/DB`. The text the caller gave is never echoed, not even
//! when it does not parse (it may hold a password in a place the parser did not expect).

use std::fmt::Write;
use std::str::FromStr;
use std::time::Duration;

use postgres::config::{Host, SslMode};
use postgres::{Client, Config, NoTls};

use super::PostgresOptions;
use super::error::connect_error;
use crate::MetaError;

/// Where the database is and how to reach it.
pub(super) struct Target {
    config: Config,
    shown: String,
}

/// TCP keepalive settings given to connections whose URL sets none: a server that vanished
/// without closing the connection (a network partition) is noticed in about a minute rather
/// than the operating system's two hours.
const KEEPALIVES_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVES_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVES_RETRIES: u32 = 3;
/// How long sent data may stay unacknowledged before the connection is dropped.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(60);
/// libpq's keepalive idle default, which `Config` reports when the URL sets none.
const DEFAULT_KEEPALIVES_IDLE: Duration = Duration::from_secs(2 * 60 * 60);

impl Target {
    /// Parses a connection URL. An invalid one is [`MetaError::Database`] naming what is
    /// wrong, never quoting the URL.
    pub(super) fn parse(url: &str, opts: &PostgresOptions) -> Result<Target, MetaError> {
        let mut config = Config::from_str(url).map_err(|e| {
            MetaError::Database(format!(
                "invalid PostgreSQL connection URL ({}); expected \
                 postgres://USER:PASSWORD@HOST:PORT/DATABASE (the URL is not shown: it may \
                 hold a password)",
                parse_reason(&e)
            ))
        })?;
        let shown = show(&config);
        if config.get_ssl_mode() == SslMode::Require {
            return Err(MetaError::Database(format!(
                "{shown}: sslmode=require, but this build of dare connects to PostgreSQL \
                 without TLS; use it on loopback or a trusted network with sslmode=disable \
                 or prefer (docs/METADATA.md §7)"
            )));
        }
        if config.get_hosts().is_empty() {
            return Err(MetaError::Database(format!(
                "{shown}: the connection URL names no host"
            )));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(opts.connect_timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("dare");
        }
        if config.get_keepalives_idle() == DEFAULT_KEEPALIVES_IDLE {
            config.keepalives_idle(KEEPALIVES_IDLE);
        }
        if config.get_keepalives_interval().is_none() {
            config.keepalives_interval(KEEPALIVES_INTERVAL);
        }
        if config.get_keepalives_retries().is_none() {
            config.keepalives_retries(KEEPALIVES_RETRIES);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        Ok(Target { config, shown })
    }

    /// The URL without its password, for messages.
    pub(super) fn shown(&self) -> &str {
        &self.shown
    }

    /// Opens a new connection (plain TCP or a unix socket: no TLS in this build).
    pub(super) fn connect(&self) -> Result<Client, MetaError> {
        self.config
            .connect(NoTls)
            .map_err(|e| connect_error(&e, &self.shown))
    }
}

/// `postgres://USER[:***]@HOST:PORT[,HOST:PORT...]/DB[?host=/socket/dir]`, from the parsed
/// fields: `***` stands for a password when there is one.
fn show(config: &Config) -> String {
    let mut s = String::from("postgres://");
    if let Some(user) = config.get_user() {
        s.push_str(&encode(user));
        if config.get_password().is_some() {
            s.push_str(":***");
        }
        s.push('@');
    } else if config.get_password().is_some() {
        s.push_str(":***@");
    }
    let ports = config.get_ports();
    let port = |i: usize| match ports {
        [] => 5432,
        [one] => *one,
        many => many.get(i).copied().unwrap_or(5432),
    };
    let mut sockets = Vec::new();
    let mut tcp = Vec::new();
    for (i, host) in config.get_hosts().iter().enumerate() {
        match host {
            Host::Tcp(name) if name.contains(':') => tcp.push(format!("[{name}]:{}", port(i))),
            Host::Tcp(name) => tcp.push(format!("{}:{}", encode(name), port(i))),
            Host::Unix(dir) => sockets.push(encode(&dir.to_string_lossy())),
        }
    }
    s.push_str(&tcp.join(","));
    s.push('/');
    if let Some(db) = config.get_dbname() {
        s.push_str(&encode(db));
    }
    for (i, dir) in sockets.iter().enumerate() {
        let sep = if i == 0 { '?' } else { '&' };
        let _ = write!(s, "{sep}host={dir}");
    }
    s
}

/// Percent-encodes everything but RFC 3986's unreserved characters (and `/` in socket paths,
/// which stays readable).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Why a URL did not parse, in words that quote none of it. The parser's messages name
/// options and positions; one of them quotes a character of the input, and is not passed on.
fn parse_reason(e: &postgres::Error) -> String {
    let cause = std::error::Error::source(e).map(ToString::to_string);
    match cause {
        Some(c)
            if c.starts_with("invalid value for option")
                || c.starts_with("unknown option")
                || c == "unexpected EOF"
                || c.starts_with("unterminated") =>
        {
            c
        }
        Some(c) if c.starts_with("unexpected character") => {
            "unexpected character (the URL is not shown)".to_owned()
        }
        Some(c) if c.contains("utf-8") || c.contains("UTF-8") => "not UTF-8 once decoded".into(),
        _ => "cannot be parsed".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(url: &str) -> String {
        Target::parse(url, &PostgresOptions::default())
            .map(|t| t.shown)
            .unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn the_password_is_never_shown() {
        let secret = "s3cr%40t-pw";
        for (url, expect) in [
            (
                format!("postgres://dare:{secret}@127.0.0.1:5433/meta"),
                "postgres://dare:***@127.0.0.1:5433/meta",
            ),
            (
                format!("postgresql://dare:{secret}@db.example:5432/meta?sslmode=disable"),
                "postgres://dare:***@db.example:5432/meta",
            ),
            (
                format!("host=10.1.2.3 port=6000 user=dare password={secret} dbname=meta"),
                "postgres://dare:***@10.1.2.3:6000/meta",
            ),
            (
                format!("postgres://dare:{secret}@a:1,b:2/meta"),
                "postgres://dare:***@a:1,b:2/meta",
            ),
            (
                format!("postgres://dare:{secret}@[::1]/meta"),
                "postgres://dare:***@[::1]:5432/meta",
            ),
            (
                "postgres://dare@%2Fvar%2Frun%2Fpostgresql/meta".to_owned(),
                "postgres://dare@/meta?host=/var/run/postgresql",
            ),
            (
                "postgres://d%20a@localhost/m%C3%A9ta".to_owned(),
                "postgres://d%20a@localhost:5432/m%C3%A9ta",
            ),
        ] {
            let got = shown(&url);
            assert_eq!(got, expect, "{url}");
            assert!(!got.contains("s3cr") && !got.contains("%40t"), "{got}");
        }
    }

    #[test]
    fn invalid_urls_are_not_quoted() {
        for url in [
            "postgres://dare:hunter2@host:notaport/db",
            "postgres://dare:hunter2@host/db?bogus=hunter2",
            "host=h password='hunter2",
            "host=h password=hunter2 sslmode=hunter2",
            "host=h password=hunter2 ?=x",
        ] {
            let e = Target::parse(url, &PostgresOptions::default())
                .map(|_| ())
                .expect_err(url);
            let text = format!("{e} {e:?}");
            assert!(matches!(e, MetaError::Database(_)), "{e:?}");
            assert!(!text.contains("hunter2"), "{url}: {text}");
            assert!(text.contains("invalid PostgreSQL connection URL"), "{text}");
        }
    }

    #[test]
    fn tls_required_is_refused_without_the_password() {
        let e = Target::parse(
            "postgres://dare:hunter2@h/db?sslmode=require",
            &PostgresOptions::default(),
        )
        .map(|_| ())
        .expect_err("sslmode=require");
        let text = e.to_string();
        assert!(text.contains("sslmode=require"), "{text}");
        assert!(
            text.contains("postgres://dare:***@h:5432/db: sslmode"),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
    }
}
