//! Rewrapping object envelopes without touching data (IBM Key Protect's rewrap after a root
//! key rotation, Vault transit's `rewrap`, AWS KMS ReEncrypt).
//!
//! After a key rotation, existing objects' data keys stay wrapped under the virtual bucket key
//! of the old rotation version — still readable, since versions are never deleted. Rewrapping
//! moves each envelope to the active version: unwrap the data key under the old virtual bucket
//! key, wrap it under the new one, and swap the envelope in the object's row with a
//! compare-and-swap on (object id, row version), so an overwrite, delete or other rewrap that
//! came in between wins and nothing is lost. The data file is neither read nor written: the
//! envelope is not part of the data's associated data (FORMAT.md §4).
//!
//! The work is idempotent and resumable: it walks the bucket in name order, batch by batch,
//! each batch one transaction; an envelope already under the active version is left alone,
//! so running it again after an interruption just continues.

use dare_envelope::{Envelope, KeyKind};
use dare_metadata::{By, read_with, write_with};

use crate::pages::for_each_page;

use crate::Dare;
use crate::error::Error;

/// Objects per transaction.
pub const REWRAP_BATCH: usize = 1000;

/// What a rewrap did (so far, when passed to the progress callback).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RewrapReport {
    /// Objects in the bucket when the rewrap started.
    pub total: u64,
    /// Objects looked at.
    pub scanned: u64,
    /// Envelopes moved to the active rotation version.
    pub rewrapped: u64,
    /// Envelopes already under the active version.
    pub current: u64,
    /// Objects under a customer key (SSE-C): only the customer can rewrap those.
    pub customer_keys: u64,
    /// Objects stored in clear.
    pub clear: u64,
    /// Objects in format 1, whose envelope is inside the authenticated data file header and
    /// cannot be rewrapped without rewriting the object.
    pub format1: u64,
    /// Rows that changed between reading and swapping (overwritten, deleted or rewrapped by
    /// someone else); their new state needs nothing from us.
    pub raced: u64,
    /// The active rotation version envelopes were moved to.
    pub rotation_version: u32,
}

impl Dare {
    /// Moves every envelope of `bucket` that is not under the active rotation key to it,
    /// without reading or writing any data file. `progress` is called after each batch.
    pub fn rewrap(
        &self,
        bucket: &str,
        progress: &mut dyn FnMut(&RewrapReport),
    ) -> Result<RewrapReport, Error> {
        self.keys.refresh()?;
        let (b, total) = read_with(&*self.meta, |tx| {
            let b = tx
                .bucket(By::Name(bucket))?
                .ok_or_else(|| Error::NoSuchBucket(bucket.into()))?;
            let n = tx.object_count(b.id)?;
            Ok::<_, Error>((b, n))
        })?;
        let mut report = RewrapReport {
            total,
            rotation_version: self.keys.store_record().active_rotation,
            ..RewrapReport::default()
        };
        if !b.encryption {
            report.scanned = total;
            report.clear = total;
            progress(&report);
            return Ok(report);
        }
        let provider = self.hierarchy(&b)?;
        for_each_page(&*self.meta, b.id, REWRAP_BATCH, |rows| {
            let mut swaps = Vec::new();
            for row in rows {
                report.scanned += 1;
                let kind = row.envelope_kind.and_then(KeyKind::from_byte);
                match (row.format, kind, &row.envelope) {
                    (1, _, _) => report.format1 += 1,
                    (_, Some(KeyKind::Hierarchy), Some(bytes)) => {
                        let env = Envelope {
                            kind: KeyKind::Hierarchy,
                            bytes: bytes.clone(),
                        };
                        match provider.rewrap(&env)? {
                            Some(new) => swaps.push((row, new)),
                            None => report.current += 1,
                        }
                    }
                    (_, Some(KeyKind::CustomerKey), _) => report.customer_keys += 1,
                    (_, None, None) => report.clear += 1,
                    (_, _, _) => {
                        return Err(Error::Key(dare_envelope::KeyError::Malformed(
                            "an object row carries an envelope of an unexpected kind",
                        )));
                    }
                }
            }
            if !swaps.is_empty() {
                let (done, raced) = write_with(&*self.meta, Error::is_retryable, |tx| {
                    let (mut done, mut raced) = (0u64, 0u64);
                    for (row, new) in &swaps {
                        if tx.swap_envelope(
                            row.bucket_id,
                            &row.name,
                            &row.object_id,
                            row.row_version,
                            new.kind.to_byte(),
                            &new.bytes,
                        )? {
                            done += 1;
                        } else {
                            raced += 1;
                        }
                    }
                    Ok((done, raced))
                })?;
                report.rewrapped += done;
                report.raced += raced;
            }
            progress(&report);
            Ok(())
        })?;
        Ok(report)
    }

    /// How many envelopes of `bucket` are not under the active rotation key (what a rewrap
    /// would move), without changing anything.
    pub fn stale_envelopes(&self, bucket: &str) -> Result<u64, Error> {
        self.keys.refresh()?;
        let active = self.keys.store_record().active_rotation;
        let b = read_with(&*self.meta, |tx| tx.bucket(By::Name(bucket)))?
            .ok_or_else(|| Error::NoSuchBucket(bucket.into()))?;
        let mut stale = 0;
        for_each_page(&*self.meta, b.id, REWRAP_BATCH, |rows| {
            for row in rows {
                if let crate::KeyRef::Hierarchy {
                    rotation_version, ..
                } = crate::object::key_ref_of(row)
                    && rotation_version != active
                    && row.format != 1
                {
                    stale += 1;
                }
            }
            Ok(())
        })?;
        Ok(stale)
    }
}
