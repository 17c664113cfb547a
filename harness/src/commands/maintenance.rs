//! `dare fsck`, `dare backup`, `dare restore`.

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use dare::fsck::Garbage;
use dare::{Dare, FsckOptions, printable};
use serde_json::json;

use super::{print_json, store_path};
use crate::cli::{FileArgs, FsckArgs};
use crate::settings::Settings;

/// `fsck` found objects that cannot be read (exit status 4).
#[derive(Debug)]
pub struct Unclean {
    /// How many.
    pub errors: usize,
}

impl fmt::Display for Unclean {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fsck found {} unreadable object(s) (listed above)",
            self.errors
        )
    }
}

impl std::error::Error for Unclean {}

/// The size of a garbage file still on disk.
fn garbage_len(d: &Dare, g: &Garbage) -> Option<u64> {
    if g.removed {
        return None;
    }
    let dir = d.dir()?;
    std::fs::symlink_metadata(dir.join(store_path(&g.path)))
        .ok()
        .map(|m| m.len())
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = n as f64;
    let mut u = 0;
    while x >= 1024.0 && u + 1 < UNITS.len() {
        x /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{x:.1} {}", UNITS[u])
    }
}

/// `dare fsck`.
pub fn fsck(d: &Dare, a: FsckArgs) -> Result<()> {
    let opts = FsckOptions {
        deep: a.deep,
        repair: a.repair,
        grace: Duration::from_secs(a.grace),
    };
    let r = d.fsck(&opts)?;
    let sizes: Vec<Option<u64>> = r.garbage.iter().map(|g| garbage_len(d, g)).collect();
    let left: Vec<(&Garbage, Option<u64>)> = r
        .garbage
        .iter()
        .zip(sizes.iter().copied())
        .filter(|(g, _)| !g.removed)
        .collect();
    let left_bytes: u64 = left.iter().filter_map(|(_, n)| *n).sum();
    let removed = r.garbage.iter().filter(|g| g.removed).count();
    if a.out.json {
        print_json(&json!({
            "clean": r.is_clean(),
            "objects": r.objects,
            "files": r.files,
            "deep": a.deep,
            "verified": r.verified,
            "skipped_customer_keys": r.skipped_customer_keys,
            "errors": r.errors.iter().map(|f| json!({
                "bucket": f.bucket,
                "name": f.name,
                "path": store_path(&f.path),
                "problem": f.problem,
            })).collect::<Vec<_>>(),
            "garbage": r.garbage.iter().zip(&sizes).map(|(g, n)| json!({
                "path": store_path(&g.path),
                "data_file": g.data_file,
                "age_secs": g.age.map(|a| a.as_secs()),
                "bytes": n,
                "removed": g.removed,
            })).collect::<Vec<_>>(),
            "garbage_left": left.len(),
            "garbage_left_bytes": left_bytes,
            "garbage_removed": removed,
        }))?;
    } else {
        let mut o = crate::out::stdout().lock();
        write!(o, "checked {} object(s) and {} file(s)", r.objects, r.files)?;
        if a.deep {
            write!(o, "; {} decrypted and verified", r.verified)?;
            if r.skipped_customer_keys > 0 {
                write!(
                    o,
                    ", {} under a customer key not decrypted (its key is not stored)",
                    r.skipped_customer_keys
                )?;
            }
        }
        writeln!(o)?;
        for f in &r.errors {
            writeln!(
                o,
                "UNREADABLE {}/{}: {} ({})",
                f.bucket,
                printable(&f.name),
                f.problem,
                store_path(&f.path)
            )?;
        }
        for (g, n) in r.garbage.iter().zip(&sizes) {
            let what = if g.data_file {
                "data file no object owns"
            } else {
                "temporary or foreign file"
            };
            let age = g
                .age
                .map(|a| format!("{} s old", a.as_secs()))
                .unwrap_or_else(|| "age unknown".into());
            let size = n
                .map(|n| format!(", {}", human_bytes(n)))
                .unwrap_or_default();
            let status = if g.removed { ": removed" } else { "" };
            writeln!(
                o,
                "garbage {} ({what}, {age}{size}){status}",
                store_path(&g.path)
            )?;
        }
        if r.is_clean() {
            writeln!(o, "no unreadable object")?;
        } else {
            writeln!(o, "{} unreadable object(s)", r.errors.len())?;
        }
        if removed > 0 {
            writeln!(o, "{removed} garbage file(s) removed")?;
        }
        if !left.is_empty() {
            let hint = if a.repair {
                format!(
                    "younger than the grace period ({} s) and kept: a put may still own them",
                    a.grace
                )
            } else {
                format!(
                    "`dare fsck --repair` removes those older than {} s (--grace)",
                    a.grace
                )
            };
            writeln!(
                o,
                "{} garbage file(s), {} reclaimable; {hint}",
                left.len(),
                human_bytes(left_bytes)
            )?;
        }
        o.flush()?;
    }
    if r.is_clean() {
        Ok(())
    } else {
        Err(Unclean {
            errors: r.errors.len(),
        }
        .into())
    }
}

/// `dare backup FILE`.
pub fn backup(d: &Dare, a: FileArgs) -> Result<()> {
    d.backup(&a.file)?;
    if a.out.json {
        return print_json(&json!({"backup": a.file.display().to_string()}));
    }
    writeln!(
        crate::out::stdout(),
        "metadata database copied to {} (wrapped keys only); data files are not in it: back up \
         {} separately",
        a.file.display(),
        dir_display(d.dir(), dare::layout::OBJECTS_DIR)
    )?;
    Ok(())
}

fn dir_display(dir: Option<&Path>, sub: &str) -> String {
    match dir {
        Some(d) => d.join(sub).display().to_string(),
        None => sub.to_owned(),
    }
}

/// `dare restore FILE`.
pub fn restore(s: &Settings, a: FileArgs) -> Result<()> {
    Dare::restore(s.dir(), &a.file, &s.engine_options())?;
    if a.out.json {
        return print_json(&json!({"restored": a.file.display().to_string()}));
    }
    writeln!(
        crate::out::stdout(),
        "metadata database restored from {}; run `dare fsck` to see data files written after \
         the backup (garbage: `dare fsck --repair` removes them) and objects whose data files \
         were deleted since",
        a.file.display()
    )?;
    Ok(())
}
