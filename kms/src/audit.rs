//! The audit trail's chain (KMS.md §7): each record's MAC covers the previous record's MAC and
//! every field of its own, under a key derived from the root of trust; the head (last
//! sequence number and MAC) is kept in a table of its own. An edited, inserted, deleted,
//! reordered or truncated record breaks the chain or disagrees with the head.

use dare_keys::Secret32;
use dare_keys::derive::hmac_sha256;
use dare_metadata::{KmsAuditHead, KmsAuditRecord};
use serde::Serialize;
use subtle::ConstantTimeEq;

/// Label of the audit key derivation (`KeyStore::service_key`).
pub const LABEL_AUDIT_KEY: &[u8] = b"dare/v1/kms/audit-key";
/// Label at the start of every record's MAC input.
pub const LABEL_RECORD: &[u8] = b"dare/v1/kms/audit-record";

fn field(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The MAC input of `r` after a record whose MAC is `prev` (32 zero bytes before the first).
pub fn mac_input(prev: &[u8; 32], r: &KmsAuditRecord) -> Vec<u8> {
    let mut m = Vec::with_capacity(128 + r.detail.len());
    m.extend_from_slice(LABEL_RECORD);
    m.push(0);
    m.extend_from_slice(&1u32.to_le_bytes());
    m.extend_from_slice(prev);
    m.extend_from_slice(&r.seq.to_le_bytes());
    m.extend_from_slice(&r.time_ms.to_le_bytes());
    field(&mut m, &r.actor);
    field(&mut m, &r.operation);
    field(&mut m, r.key_id.as_deref().unwrap_or(""));
    m.push(u8::from(r.version.is_some()));
    m.extend_from_slice(&r.version.unwrap_or(0).to_le_bytes());
    field(&mut m, &r.request_id);
    field(&mut m, &r.outcome);
    field(&mut m, &r.detail);
    m
}

/// The MAC of `r` chained after `prev`.
pub fn mac(key: &Secret32, prev: &[u8; 32], r: &KmsAuditRecord) -> [u8; 32] {
    hmac_sha256(key.expose_secret(), &[&mac_input(prev, r)])
}

/// The outcome of verifying a trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditVerification {
    /// Records checked.
    pub records: u64,
    /// The head's sequence number.
    pub head_seq: u64,
    /// `None` when intact; else the first problem found.
    pub problem: Option<String>,
}

impl AuditVerification {
    /// Whether the trail is intact.
    pub fn ok(&self) -> bool {
        self.problem.is_none()
    }
}

/// Incremental verifier: feed records in ascending `seq`, then [`Verifier::finish`] with the
/// head.
#[derive(Debug)]
pub struct Verifier<'k> {
    key: &'k Secret32,
    prev: [u8; 32],
    expect_seq: u64,
    records: u64,
    problem: Option<String>,
}

impl<'k> Verifier<'k> {
    /// A verifier under the audit key.
    pub fn new(key: &'k Secret32) -> Self {
        Verifier {
            key,
            prev: [0; 32],
            expect_seq: 1,
            records: 0,
            problem: None,
        }
    }

    /// Checks the next record. Returns false once a problem was found (stop feeding).
    pub fn feed(&mut self, r: &KmsAuditRecord) -> bool {
        if self.problem.is_some() {
            return false;
        }
        if r.seq != self.expect_seq {
            self.problem = Some(if r.seq > self.expect_seq {
                format!(
                    "record {} is missing (the next record is {}): records were removed",
                    self.expect_seq, r.seq
                )
            } else {
                format!("record {} is out of order or duplicated", r.seq)
            });
            return false;
        }
        let want = mac(self.key, &self.prev, r);
        if r.mac.len() != 32 || !bool::from(want.ct_eq(&r.mac[..])) {
            self.problem = Some(format!(
                "record {} does not match its MAC: it was changed, or a record before it was",
                r.seq
            ));
            return false;
        }
        self.prev = want;
        self.expect_seq += 1;
        self.records += 1;
        true
    }

    /// Compares the last record with the head.
    pub fn finish(mut self, head: &KmsAuditHead) -> AuditVerification {
        if self.problem.is_none() {
            let last = self.expect_seq - 1;
            if head.seq != last {
                self.problem = Some(if head.seq > last {
                    format!(
                        "the trail ends at record {last} but the head says {}: the last \
                         records were removed",
                        head.seq
                    )
                } else {
                    format!(
                        "the trail goes on to record {last} past the head ({}): records were \
                         added outside the service or the head was rolled back",
                        head.seq
                    )
                });
            } else if last > 0
                && (head.mac.len() != 32 || !bool::from(self.prev.ct_eq(&head.mac[..])))
            {
                self.problem =
                    Some("the last record does not match the head's MAC: it was replaced".into());
            }
        }
        AuditVerification {
            records: self.records,
            head_seq: head.seq,
            problem: self.problem,
        }
    }
}
