//! Listing a bucket as S3's ListObjectsV2 does: names in UTF-8 byte order, a prefix, a
//! delimiter that rolls names up into common prefixes, a start-after key, a page size and an
//! opaque continuation token. Served from the object table's primary key (bucket, name):
//! each page is a few range scans, whatever the bucket's size.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dare_metadata::{By, NameRange, read_with};

use crate::Dare;
use crate::error::Error;
use crate::object::{ObjectInfo, info_of};

/// Most keys a page holds (S3's limit too).
pub const MAX_KEYS: usize = 1000;

/// Names starting with this are the store's own (an S3 server's multipart parts and upload
/// records): listings leave them out unless their prefix asks for them. It begins with a NUL,
/// which no S3 key can carry (S3 servers refuse it), so no user object is hidden by it.
pub const INTERNAL_PREFIX: &str = "\0dare/";

/// What to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Only names starting with this.
    pub prefix: String,
    /// Roll names up to the first occurrence of this after the prefix (usually `/`).
    pub delimiter: Option<String>,
    /// Only names after this one (ignored when a continuation token is given).
    pub start_after: Option<String>,
    /// Continue a listing: the token of the previous page.
    pub continuation_token: Option<String>,
    /// Most entries (objects and common prefixes together) on this page, 1..=1000; 0 means
    /// 1000.
    pub max_keys: usize,
}

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// Objects, in name order.
    pub objects: Vec<ObjectInfo>,
    /// Common prefixes (with a delimiter), in order.
    pub common_prefixes: Vec<String>,
    /// Whether more entries follow.
    pub is_truncated: bool,
    /// The token that continues the listing, when truncated.
    pub next_continuation_token: Option<String>,
}

/// The smallest byte string above every string that starts with `p`: `p` with its last byte
/// incremented (UTF-8 never contains 0xFF, so there is no carry).
fn after_all_with_prefix(p: &str) -> Vec<u8> {
    let mut v = p.as_bytes().to_vec();
    if let Some(last) = v.last_mut() {
        *last += 1;
    }
    v
}

impl Dare {
    /// One page of the objects of `bucket`.
    pub fn list(&self, bucket: &str, q: &ListQuery) -> Result<ListPage, Error> {
        let max = match q.max_keys {
            0 => MAX_KEYS,
            n => n.min(MAX_KEYS),
        };
        let delimiter = q.delimiter.as_deref().filter(|d| !d.is_empty());
        let mut after: Option<Vec<u8>> = match &q.continuation_token {
            Some(t) => Some(URL_SAFE_NO_PAD.decode(t).map_err(|_| {
                Error::InvalidArgument("the continuation token is not one dare issued".into())
            })?),
            None => q.start_after.as_ref().map(|s| s.as_bytes().to_vec()),
        };
        // Internal names sort before every other name that does not start with a NUL:
        // start past them unless the listing is of them.
        if !q.prefix.starts_with('\0') {
            let past = after_all_with_prefix(INTERNAL_PREFIX);
            if after.as_ref().is_none_or(|a| *a < past) {
                after = Some(past);
            }
        }
        read_with(&*self.meta, |tx| {
            let b = tx
                .bucket(By::Name(bucket))?
                .ok_or_else(|| Error::NoSuchBucket(bucket.into()))?;
            let mut page = ListPage::default();
            let mut count = 0usize;
            loop {
                // One more than needed tells whether the listing is truncated.
                let want = max - count + 1;
                let rows = tx.objects(
                    b.id,
                    NameRange {
                        prefix: &q.prefix,
                        after: after.as_deref(),
                    },
                    want,
                )?;
                if rows.is_empty() {
                    return Ok(page);
                }
                let mut rolled_up = false;
                for row in &rows {
                    if count == max {
                        page.is_truncated = true;
                        page.next_continuation_token =
                            after.as_ref().map(|a| URL_SAFE_NO_PAD.encode(a));
                        return Ok(page);
                    }
                    // The database filtered by prefix; a row that does not start with it is a
                    // broken backend, not a reason to panic.
                    let Some(rest) = row.name.strip_prefix(q.prefix.as_str()) else {
                        return Err(Error::Metadata(dare_metadata::MetaError::Corrupt(
                            "a listing returned a name outside its prefix".into(),
                        )));
                    };
                    if let Some(d) = delimiter
                        && let Some(at) = rest.find(d)
                    {
                        let cp = row.name[..q.prefix.len() + at + d.len()].to_owned();
                        // Skip every name under this common prefix with one new range scan.
                        after = Some(after_all_with_prefix(&cp));
                        page.common_prefixes.push(cp);
                        count += 1;
                        rolled_up = true;
                        break;
                    }
                    page.objects.push(info_of(bucket, row));
                    count += 1;
                    after = Some(row.name.as_bytes().to_vec());
                }
                if !rolled_up && rows.len() < want {
                    return Ok(page);
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_after_a_prefix() {
        assert_eq!(after_all_with_prefix("a/"), b"a0".to_vec());
        assert_eq!(after_all_with_prefix("é"), vec![0xc3, 0xaa]);
        assert!(after_all_with_prefix("photos/").as_slice() > "photos/zzz\u{10ffff}".as_bytes());
    }
}
