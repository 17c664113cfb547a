//! `dare site init | grant | list | revoke` (docs/KEYS.md §8.5): parses, calls the library,
//! prints.

use std::io::{Read, Write};

use anyhow::{Context, Result};
use dare::{Dare, SiteInfo};
use serde_json::{Value, json};

use super::{print_json, utc};
use crate::cli::SiteCommand;
use crate::settings::Settings;

/// A public key file is a few hundred bytes; anything much bigger is not one.
const PUBLIC_KEY_MAX: u64 = 64 * 1024;

fn site_json(s: &SiteInfo) -> Value {
    json!({
        "name": s.name,
        "fingerprint": s.fingerprint,
        "bits": s.bits,
        "granted": s.granted,
        "granted_time": utc(s.granted.saturating_mul(1000), true),
        "keys": s.keys,
    })
}

/// Runs a `dare site` command.
pub fn run(s: &Settings, c: SiteCommand) -> Result<()> {
    let mut o = crate::out::stdout();
    match c {
        SiteCommand::Init { objects, out } => {
            let made = Dare::site_init(s.dir(), &s.options()?, objects.as_deref())?;
            let fp = made.public.fingerprint_hex();
            if out.json {
                return print_json(&json!({
                    "store": s.dir().display().to_string(),
                    "store_id": dare_engine::format::hex(&made.store_id),
                    "public_key_file": made.public_file.display().to_string(),
                    "public_key": made.public.to_pem(),
                    "fingerprint": fp,
                    "bits": made.public.bits(),
                    "objects": made.objects.display().to_string(),
                }));
            }
            write!(o, "{}", made.public.to_pem())?;
            writeln!(
                o,
                "site key pair RSA-{} made in {} (private key sealed under this site's root of \
                 trust); fingerprint {fp}; public key in {}: run `dare site grant {} \
                 --site-name NAME` on a site that holds the master keys",
                made.public.bits(),
                s.dir().display(),
                made.public_file.display(),
                made.public_file.display(),
            )?;
            Ok(())
        }
        SiteCommand::Grant {
            public_key,
            site_name,
            out,
        } => {
            let mut pem = Vec::new();
            std::fs::File::open(&public_key)
                .and_then(|f| f.take(PUBLIC_KEY_MAX).read_to_end(&mut pem))
                .with_context(|| format!("cannot read {}", public_key.display()))?;
            let d = s.open()?;
            let site = d.grant_site(&site_name, &pem)?;
            if out.json {
                return print_json(&site_json(&site));
            }
            writeln!(
                o,
                "granted the store's keys to site {} (fingerprint {}, RSA-{}, {} keys)",
                site.name, site.fingerprint, site.bits, site.keys
            )?;
            Ok(())
        }
        SiteCommand::List(out) => {
            let d = s.open()?;
            let sites = d.sites()?;
            if out.json {
                return print_json(&json!({
                    "sites": sites.iter().map(site_json).collect::<Vec<_>>(),
                    "this_site": d.joined_site(),
                }));
            }
            if sites.is_empty() {
                writeln!(o, "no site granted")?;
            }
            for site in &sites {
                writeln!(
                    o,
                    "{}  {}  RSA-{}  granted {}  {} keys",
                    site.name,
                    site.fingerprint,
                    site.bits,
                    utc(site.granted.saturating_mul(1000), false),
                    site.keys
                )?;
            }
            Ok(())
        }
        SiteCommand::Revoke { name, out } => {
            let d = s.open()?;
            d.revoke_site(&name)?;
            if out.json {
                return print_json(&json!({"revoked": name}));
            }
            writeln!(
                o,
                "revoked site {name}: it can no longer open the store; rotate the master key \
                 (`dare keys rotate`) so that new objects are under keys it never saw"
            )?;
            Ok(())
        }
    }
}
