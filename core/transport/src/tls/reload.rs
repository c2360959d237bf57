//! Noticing that certificate files changed, by their modification time and
//! size. Cheap enough to poll every few seconds, and it also catches the
//! symlink swaps cert-manager and certbot do (metadata follows the link).

use std::path::Path;
use std::time::SystemTime;

/// What the files looked like when last loaded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stamp(Vec<Option<(SystemTime, u64)>>);

impl Stamp {
    pub fn of<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Stamp {
        Stamp(
            paths
                .into_iter()
                .map(|p| {
                    let meta = std::fs::metadata(p).ok()?;
                    Some((meta.modified().ok()?, meta.len()))
                })
                .collect(),
        )
    }
}
