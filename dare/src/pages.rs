//! Walking a bucket's rows in name order, a page at a time, each page its own read
//! transaction (so a long walk never pins an old snapshot): rewrap, fsck and the migration
//! all do it.

use dare_metadata::{Metadata, NameRange, ObjectRecord, read_with};

use crate::error::Error;

/// Calls `f` with each page of up to `page` rows of bucket `bucket_id`, in name order, until
/// the rows run out.
pub(crate) fn for_each_page(
    meta: &dyn Metadata,
    bucket_id: u64,
    page: usize,
    mut f: impl FnMut(&[ObjectRecord]) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut after: Option<Vec<u8>> = None;
    loop {
        let rows = read_with(meta, |tx| {
            tx.objects(
                bucket_id,
                NameRange {
                    prefix: "",
                    after: after.as_deref(),
                },
                page,
            )
        })?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = Some(last.name.as_bytes().to_vec());
        f(&rows)?;
        if rows.len() < page {
            return Ok(());
        }
    }
}
