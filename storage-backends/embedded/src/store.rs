//! The store: opening a directory, the group-commit writer, reads, and the
//! background removal of cleared queues.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Slice};
use fogg_api::{
    BackendError, DeliveryState, ErrorKind, MessageStore, RetainStore, SessionKey, SessionStore,
    StoredMessage, StoredSession,
};
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use parking_lot::{Condvar, Mutex, RwLock};
use rustc_hash::{FxBuildHasher, FxHashMap};
use tokio::sync::oneshot;

use crate::codec::{self, DecodeError, EncodeError, QueueMeta};
use crate::keys;

/// How far a write must get before the store acknowledges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Written to the operating system (the journal's `write(2)` returned):
    /// survives the broker process dying, not a power loss or kernel crash.
    #[default]
    Os,
    /// On stable storage (`fdatasync` of the journal) before it is
    /// acknowledged; concurrent writers share each sync (group commit).
    Fsync,
}

impl Durability {
    /// The configuration spelling (`durability = "os"` / `"fsync"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Os => "os",
            Durability::Fsync => "fsync",
        }
    }
}

/// How a write gets from the caller to the engine. [`WritePath::Thread`] is
/// the one measured best (see the crate README); `Blocking` is kept so the
/// `write_path` benchmark can compare them.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WritePath {
    /// The store's writer thread commits every pending write as one group;
    /// the caller awaits a oneshot reply.
    #[default]
    Thread,
    /// The caller's write runs on tokio's blocking pool, where it commits
    /// itself and whatever is pending (the first design).
    Blocking,
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct Options {
    /// The configured backend name, used in error messages.
    pub name: String,
    pub durability: Durability,
    #[doc(hidden)]
    pub write_path: WritePath,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            name: "embedded".to_owned(),
            durability: Durability::Os,
            write_path: WritePath::Thread,
        }
    }
}

/// What the engine's journal recovery dropped when the store was opened.
///
/// fjall replays its journals at open and cuts each at the first record it
/// cannot decode. After a crash that is the unfinished last write (never
/// acknowledged); after damage to the file it may also be intact records
/// behind the damaged one. Either way the store keeps everything before the
/// cut, logs an error naming the journal, and keeps a copy of the dropped
/// bytes in the data directory, so nothing disappears silently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalLoss {
    /// The journal file that was cut.
    pub journal: PathBuf,
    /// Where it was cut.
    pub offset: u64,
    /// Non-zero bytes that were dropped after `offset`.
    pub bytes: u64,
    /// A copy of the journal as it was before recovery.
    pub copy: PathBuf,
}

/// The lock file taken in the data directory.
pub const LOCK_FILE: &str = "fogg-embedded.lock";
/// The engine's own directory inside the data directory.
pub const ENGINE_DIR: &str = "store";

/// Written once into a new store; a store with another value is refused.
const FORMAT_KEY: &[u8] = b"format";
/// Format 2 added the `delivery` and `incoming_qos2` keyspaces and sessions
/// with a will; format 3 keys queued messages by queue id (`keys`). Older
/// stores are upgraded in place at open (see `load`).
const FORMAT_VALUE: &[u8] = b"fogg-embedded/3";
const FORMAT_V2_VALUE: &[u8] = b"fogg-embedded/2";
const FORMAT_V1_VALUE: &[u8] = b"fogg-embedded/1";
/// The keyspace of queued messages keyed by session (`session_seq_key`) in
/// stores of format 2 and before; moved to `queue_messages` at open.
const LEGACY_QUEUES: &str = "queues";
/// Messages moved per batch when upgrading a store to format 3.
const UPGRADE_CHUNK: usize = 4096;
/// The next queue sequence number (store-wide, see `WriterState`).
const NEXT_SEQ_KEY: &[u8] = b"next_seq";
/// The most journal data kept before memtables are flushed to tables.
pub const JOURNAL_CAP: u64 = 64 * 1024 * 1024; // fjall's minimum
/// Queue keys removed per background purge batch.
const PURGE_CHUNK: usize = 4096;

/// Sessions, offline queues and retained messages in one directory on disk.
///
/// Cheap to share behind an `Arc`; dropping the last handle stops the
/// background purge, syncs the journal and releases the directory lock.
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    purge: Purger,
    writer: WriterThread,
    journal_losses: Vec<JournalLoss>,
}

/// Everything the writers, readers and the purge thread share.
///
/// Field order is drop order: every engine handle goes before the lock file,
/// so a new opener never finds the lock free while the engine is still open.
struct Shared {
    db: Database,
    sessions: Keyspace,
    queues: Keyspace,
    queue_meta: Keyspace,
    retained: Keyspace,
    meta: Keyspace,
    delivery: Keyspace,
    incoming: Keyspace,
    /// Per-session queue id, length and cleared floor, for every session with a
    /// non-empty `QueueMeta`. Read without touching the disk; written only by
    /// the group-commit leader, after its batch is committed.
    metas: RwLock<HashMap<Vec<u8>, QueueMeta>>,
    /// Delivery states and incoming QoS 2 ids of every session that has any:
    /// a copy of the `delivery` and `incoming_qos2` keyspaces (bounded by the
    /// sessions' inflight windows), written like `metas`.
    inflight: RwLock<HashMap<Vec<u8>, Inflight>>,
    /// Held by the group-commit leader while it writes a batch.
    writer: Mutex<WriterState>,
    /// Jobs waiting for the writer thread (or the purge thread, which commits
    /// them with its own chunk).
    pending: Mutex<Vec<Job>>,
    /// Wakes the writer thread when `pending` gets a job or at shutdown.
    pending_cv: Condvar,
    /// Set at shutdown: the writer thread exits once `pending` is empty.
    stopping: AtomicBool,
    write_path: WritePath,
    durability: Durability,
    name: String,
    engine_dir: PathBuf,
    _lock: File,
}

struct WriterState {
    /// The next sequence number to hand out. One counter for the whole store
    /// (as in the memory store): a queue dropped by `clear_queue` or
    /// `delete_session` and started again still continues above every number
    /// it ever had, and no per-session counter must outlive its session.
    next_seq: u64,
    /// Messages enqueued by earlier groups and not removed since, so that
    /// removing one (the common case: a message acknowledged soon after it
    /// was queued) needs no engine lookup.
    fresh: FreshSeqs,
}

/// Most messages [`FreshSeqs`] remembers; past it, removals look up the
/// engine as before.
const FRESH_CAPACITY: usize = 1 << 16;

/// Sequence numbers known to be queued, each with its session's
/// fingerprint. Sequence numbers are unique across the store, so one map
/// serves every session.
#[derive(Default)]
struct FreshSeqs {
    seqs: FxHashMap<u64, u64>,
}

impl FreshSeqs {
    /// The session's fingerprint; a removal job computes it once for all
    /// its numbers.
    fn fingerprint(session: &[u8]) -> u64 {
        FxBuildHasher.hash_one(session)
    }

    fn remember(&mut self, fingerprint: u64, seq: u64) {
        if self.seqs.len() < FRESH_CAPACITY {
            self.seqs.insert(seq, fingerprint);
        }
    }

    /// True (and forgotten) when known to be queued; false: not known here.
    fn take(&mut self, fingerprint: u64, seq: u64) -> bool {
        let known = self.seqs.get(&seq) == Some(&fingerprint);
        if known {
            self.seqs.remove(&seq);
        }
        known
    }

    /// A cleared queue: its numbers are no longer queued.
    fn forget_session(&mut self, session: &[u8]) {
        let fp = Self::fingerprint(session);
        self.seqs.retain(|_, s| *s != fp);
    }
}

/// The delivery states and incoming QoS 2 ids of one session.
#[derive(Debug, Clone, Default)]
struct Inflight {
    delivery: BTreeMap<u64, DeliveryState>,
    incoming: BTreeSet<u16>,
}

impl Inflight {
    fn is_empty(&self) -> bool {
        self.delivery.is_empty() && self.incoming.is_empty()
    }
}

/// One write, encoded before it reaches the writer.
enum Op {
    Enqueue {
        session: Vec<u8>,
        value: Slice,
    },
    /// Messages, each into several queues (a message's value is shared by
    /// its queues, not copied), in order; answered with all their numbers,
    /// flattened. `enqueue_many` is a batch of one.
    EnqueueBatch {
        writes: Vec<(Vec<Vec<u8>>, Slice)>,
    },
    Remove {
        session: Vec<u8>,
        seq: u64,
    },
    RemoveMany {
        session: Vec<u8>,
        seqs: Vec<u64>,
    },
    SetDelivery {
        session: Vec<u8>,
        seq: u64,
        state: Option<DeliveryState>,
    },
    SetIncoming {
        session: Vec<u8>,
        packet_id: u16,
        pending: bool,
    },
    ClearQueue {
        session: Vec<u8>,
    },
    SaveSession {
        session: Vec<u8>,
        value: Vec<u8>,
    },
    DeleteSession {
        session: Vec<u8>,
    },
    PutRetained {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    DeleteRetained {
        key: Vec<u8>,
    },
    /// Physically remove cleared messages (all numbered `<= floor`); when
    /// `done`, none is left and the floor can go.
    Purge {
        session: Vec<u8>,
        floor: u64,
        keys: Vec<Vec<u8>>,
        done: bool,
    },
}

/// What a write answers.
#[derive(Debug)]
enum Answer {
    Done,
    Seq(u64),
    Seqs(Vec<u64>),
    /// A clear left messages for the purge thread to remove.
    PurgeNeeded,
}

type Reply = Result<Answer, BackendError>;

struct Job {
    op: Op,
    reply: oneshot::Sender<Reply>,
}

/// The thread that commits the writes handed to it (`pending`).
struct WriterThread {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// The background thread that removes cleared messages.
struct Purger {
    tx: Option<Sender<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

// ---------------------------------------------------------------- errors

impl Shared {
    fn error(&self, kind: ErrorKind, operation: &'static str, message: String) -> BackendError {
        BackendError::new(kind, self.name.clone(), operation, message)
    }

    fn engine_error(&self, operation: &'static str, e: fjall::Error) -> BackendError {
        engine_error(&self.name, &self.engine_dir, operation, e)
    }

    fn decode_error(&self, operation: &'static str, what: &str, e: DecodeError) -> BackendError {
        self.error(
            ErrorKind::InvalidData,
            operation,
            format!(
                "corrupt {what} in the store at {}: {e}",
                self.engine_dir.display()
            ),
        )
    }
}

fn engine_error(
    name: &str,
    engine_dir: &Path,
    operation: &'static str,
    e: fjall::Error,
) -> BackendError {
    let (kind, what) = match &e {
        fjall::Error::Io(_) => (ErrorKind::Unavailable, "I/O error"),
        fjall::Error::Poisoned => (
            ErrorKind::Unavailable,
            "an earlier write failed; the store refuses writes until the broker restarts",
        ),
        fjall::Error::Locked => (ErrorKind::Unavailable, "the store is locked"),
        fjall::Error::KeyspaceDeleted => (ErrorKind::Internal, "internal error"),
        _ => (ErrorKind::InvalidData, "corrupt or unreadable data"),
    };
    let mut err = BackendError::new(
        kind,
        name.to_owned(),
        operation,
        format!("{what} in the store at {}: {e}", engine_dir.display()),
    );
    // A failed disk does not come back by retrying the same call.
    err.retryable = false;
    err.with_source(e)
}

fn encode_error(name: &str, operation: &'static str, e: EncodeError) -> BackendError {
    BackendError::new(ErrorKind::InvalidData, name.to_owned(), operation, e.0)
}

fn join_error(name: &str, operation: &'static str, e: tokio::task::JoinError) -> BackendError {
    BackendError::new(
        ErrorKind::Internal,
        name.to_owned(),
        operation,
        format!("storage task failed: {e}"),
    )
}

// ---------------------------------------------------------------- opening

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `dir`.
    ///
    /// Blocking: call it at start, or from `spawn_blocking`. Fails at once,
    /// naming `dir`, when another process has it open; a store that cannot
    /// be read gives an `InvalidData` error naming the engine directory.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<EmbeddedStore, BackendError> {
        let dir = dir.as_ref();
        let name = options.name.as_str();
        let fail = |kind, message: String| {
            let mut e = BackendError::new(kind, name.to_owned(), "open", message);
            e.retryable = false;
            e
        };
        std::fs::create_dir_all(dir).map_err(|e| {
            fail(
                ErrorKind::Unavailable,
                format!("cannot create the data directory {}: {e}", dir.display()),
            )
            .with_source(e)
        })?;
        let lock = take_lock(dir).map_err(|(kind, message)| fail(kind, message))?;
        let engine_dir = dir.join(ENGINE_DIR);

        let journals = JournalCheck::before_open(dir, &engine_dir)
            .map_err(|e| fail(ErrorKind::Unavailable, e))?;

        // The engine reports corruption as errors; the unwind guard is a last
        // line of defence so that a panic deep in recovery still becomes an
        // error naming the store rather than killing the broker.
        let opened =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| open_engine(&engine_dir)));
        let (db, keyspaces) = match opened {
            Ok(Ok(opened)) => opened,
            Ok(Err(e)) => return Err(engine_error(name, &engine_dir, "open", e)),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("unknown panic");
                return Err(fail(
                    ErrorKind::InvalidData,
                    format!(
                        "the store at {} cannot be recovered: the engine failed with: {what}",
                        engine_dir.display()
                    ),
                ));
            }
        };
        let [
            sessions,
            queues,
            queue_meta,
            retained,
            meta,
            delivery,
            incoming,
        ] = keyspaces;
        let journal_losses = journals.after_open();
        for loss in &journal_losses {
            tracing::error!(
                backend = name,
                journal = %loss.journal.display(),
                offset = loss.offset,
                bytes = loss.bytes,
                copy = %loss.copy.display(),
                "embedded store: journal recovery dropped bytes it could not read \
                 (an unfinished write from a crash, or damage); the journal as it was is kept"
            );
        }

        let shared = Shared {
            db,
            sessions,
            queues,
            queue_meta,
            retained,
            meta,
            delivery,
            incoming,
            metas: RwLock::new(HashMap::new()),
            inflight: RwLock::new(HashMap::new()),
            writer: Mutex::new(WriterState {
                next_seq: 1,
                fresh: FreshSeqs::default(),
            }),
            pending: Mutex::new(Vec::new()),
            pending_cv: Condvar::new(),
            stopping: AtomicBool::new(false),
            write_path: options.write_path,
            durability: options.durability,
            name: name.to_owned(),
            engine_dir,
            _lock: lock,
        };
        let to_purge = shared.load()?;
        let shared = Arc::new(shared);
        let writer = WriterThread::start(shared.clone()).map_err(|e| {
            fail(
                ErrorKind::Unavailable,
                format!("cannot start the store's writer thread: {e}"),
            )
        })?;
        let purge = Purger::start(shared.clone());
        for session in to_purge {
            purge.schedule(session);
        }
        tracing::info!(
            backend = %shared.name,
            dir = %dir.display(),
            durability = shared.durability.as_str(),
            "embedded store opened"
        );
        Ok(EmbeddedStore {
            shared,
            purge,
            writer,
            journal_losses,
        })
    }

    /// What journal recovery dropped at open (usually nothing).
    pub fn journal_losses(&self) -> &[JournalLoss] {
        &self.journal_losses
    }

    /// The durability level writes are acknowledged at.
    pub fn durability(&self) -> Durability {
        self.shared.durability
    }

    /// Bytes the engine uses on disk (tables and journals).
    pub fn disk_space(&self) -> Result<u64, BackendError> {
        self.shared
            .db
            .disk_space()
            .map_err(|e| self.shared.engine_error("disk_space", e))
    }

    /// Syncs everything written so far to stable storage (whatever the
    /// durability level). Blocking.
    pub fn sync(&self) -> Result<(), BackendError> {
        self.shared
            .db
            .persist(PersistMode::SyncAll)
            .map_err(|e| self.shared.engine_error("sync", e))
    }

    /// Waits until no cleared queue is waiting to be removed from disk. For
    /// tests and tools; the broker never needs to wait for it.
    pub fn wait_for_purge(&self) {
        loop {
            let busy = self.shared.metas.read().values().any(|m| m.floor > 0);
            if !busy {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Flushes memtables and compacts every keyspace into its last level, so
    /// that removed data leaves the disk now rather than at the engine's next
    /// compaction. Blocking and expensive: for tests and maintenance tools.
    pub fn compact(&self) -> Result<(), BackendError> {
        let s = &self.shared;
        for ks in [
            &s.sessions,
            &s.queues,
            &s.queue_meta,
            &s.retained,
            &s.meta,
            &s.delivery,
            &s.incoming,
        ] {
            ks.rotate_memtable_and_wait()
                .map_err(|e| s.engine_error("compact", e))?;
            ks.major_compact()
                .map_err(|e| s.engine_error("compact", e))?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("dir", &self.shared.engine_dir)
            .field("durability", &self.shared.durability)
            .field("queues", &self.shared.metas.read().len())
            .finish()
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        self.purge.stop();
        self.writer.stop();
        if let Err(e) = self.sync() {
            tracing::error!(error = %e, "embedded store: final sync failed");
        }
    }
}

/// Creates and locks the lock file; `Err((kind, message))` names the directory.
fn take_lock(dir: &Path) -> Result<File, (ErrorKind, String)> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| {
            (
                ErrorKind::Unavailable,
                format!("cannot create the lock file {}: {e}", path.display()),
            )
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err((
            ErrorKind::Unavailable,
            format!(
                "the data directory {} is in use by another process (it holds the lock on {})",
                dir.display(),
                path.display()
            ),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err((
            ErrorKind::Unavailable,
            format!("cannot lock {}: {e}", path.display()),
        )),
    }
}

/// Notes every journal's data extent before the engine recovers it, keeping
/// a copy, so that what recovery cuts off can be reported and kept.
struct JournalCheck {
    /// (journal, end of its non-zero data, copy of the data)
    journals: Vec<(PathBuf, u64, PathBuf)>,
    backup_dir: PathBuf,
}

const JOURNAL_BACKUP_DIR: &str = "journal-check.tmp";

impl JournalCheck {
    fn before_open(dir: &Path, engine_dir: &Path) -> Result<JournalCheck, String> {
        let backup_dir = dir.join(JOURNAL_BACKUP_DIR);
        let io = |what: &str, path: &Path, e: std::io::Error| {
            format!("cannot {what} {}: {e}", path.display())
        };
        if backup_dir.exists() {
            std::fs::remove_dir_all(&backup_dir).map_err(|e| io("remove", &backup_dir, e))?;
        }
        let mut journals = Vec::new();
        let entries = match std::fs::read_dir(engine_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(JournalCheck {
                    journals,
                    backup_dir,
                });
            }
            Err(e) => return Err(io("read", engine_dir, e)),
        };
        for entry in entries {
            let path = entry.map_err(|e| io("read", engine_dir, e))?.path();
            if path.extension().is_none_or(|ext| ext != "jnl") {
                continue;
            }
            let end = data_end(&path).map_err(|e| io("read", &path, e))?;
            if end == 0 {
                continue;
            }
            std::fs::create_dir_all(&backup_dir).map_err(|e| io("create", &backup_dir, e))?;
            let copy = backup_dir.join(path.file_name().unwrap_or_default());
            copy_prefix(&path, &copy, end).map_err(|e| io("copy", &path, e))?;
            journals.push((path, end, copy));
        }
        Ok(JournalCheck {
            journals,
            backup_dir,
        })
    }

    /// The journals the engine cut short of their data; their copies are
    /// kept, every other copy removed.
    fn after_open(self) -> Vec<JournalLoss> {
        let mut losses = Vec::new();
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        for (journal, end, copy) in self.journals {
            // A journal the engine removed was fully applied and flushed.
            let Ok(len) = std::fs::metadata(&journal).map(|m| m.len()) else {
                continue;
            };
            if len >= end {
                continue;
            }
            let name = journal
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let kept = self
                .backup_dir
                .parent()
                .unwrap_or(&self.backup_dir)
                .join(format!("journal-before-recovery-{stamp}-{name}"));
            let copy = match std::fs::rename(&copy, &kept) {
                Ok(()) => kept,
                Err(_) => copy,
            };
            losses.push(JournalLoss {
                journal,
                offset: len,
                bytes: end - len,
                copy,
            });
        }
        if losses.iter().all(|l| !l.copy.starts_with(&self.backup_dir)) {
            let _ = std::fs::remove_dir_all(&self.backup_dir);
        }
        losses
    }
}

/// The length of `path` without its trailing zero bytes (journals are
/// preallocated, so their tail is zeros).
fn data_end(path: &Path) -> std::io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    const CHUNK: u64 = 1 << 20;
    let mut file = File::open(path)?;
    let mut end = file.metadata()?.len();
    let mut buf = vec![0u8; CHUNK as usize];
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let chunk = &mut buf[..usize::try_from(end - start).unwrap_or(0)];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(last) = chunk.iter().rposition(|b| *b != 0) {
            return Ok(start + last as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

fn copy_prefix(from: &Path, to: &Path, len: u64) -> std::io::Result<()> {
    use std::io::Read;
    let mut source = File::open(from)?.take(len);
    let mut target = File::create(to)?;
    std::io::copy(&mut source, &mut target)?;
    Ok(())
}

fn open_engine(engine_dir: &Path) -> fjall::Result<(Database, [Keyspace; 7])> {
    let db = Database::builder(engine_dir)
        // Bounded memory: the block cache plus the (small) memtables below.
        .cache_size(32 * 1024 * 1024)
        // Journals are deleted once their memtables are flushed. The cap
        // bounds the disk a churning queue holds in journals (consumed
        // messages included) and the journal replayed at start.
        .max_journaling_size(JOURNAL_CAP)
        .open()?;
    let small = || KeyspaceCreateOptions::default().max_memtable_size(8 * 1024 * 1024);
    let queues_options = || {
        // Queue keys are read by range scans (read_queue) and by point
        // lookups that mostly hit (remove checks the message exists).
        KeyspaceCreateOptions::default()
            .max_memtable_size(16 * 1024 * 1024)
            .expect_point_read_hits(true)
    };
    let sessions = db.keyspace("sessions", small)?;
    let queues = db.keyspace("queue_messages", queues_options)?;
    let queue_meta = db.keyspace("queue_meta", small)?;
    let retained = db.keyspace("retained", small)?;
    let meta = db.keyspace("meta", small)?;
    // Small records, written and removed at the pace of the queues; a
    // message's delivery state is usually removed while still in the memtable.
    let delivery = db.keyspace("delivery", small)?;
    let incoming = db.keyspace("incoming_qos2", small)?;
    Ok((
        db,
        [
            sessions, queues, queue_meta, retained, meta, delivery, incoming,
        ],
    ))
}

impl Shared {
    /// Checks the format marker, reads the sequence counter and the queue
    /// metadata. Returns the sessions whose cleared messages still need to
    /// be removed.
    fn load(&self) -> Result<Vec<Vec<u8>>, BackendError> {
        const OP: &str = "open";
        // `None`: current; `Some(None)`: a new store; `Some(Some(n))`: format n.
        let outdated = match self
            .meta
            .get(FORMAT_KEY)
            .map_err(|e| self.engine_error(OP, e))?
        {
            Some(format) if &*format == FORMAT_VALUE => None,
            // Format 1 lacks the two inflight keyspaces (created empty by
            // `open_engine`) and the will in session records (format-1
            // records decode without one); formats 1 and 2 key queued
            // messages by session, moved below.
            Some(format) if &*format == FORMAT_V1_VALUE => Some(Some(1)),
            Some(format) if &*format == FORMAT_V2_VALUE => Some(Some(2)),
            Some(other) => {
                return Err(self.error(
                    ErrorKind::InvalidData,
                    OP,
                    format!(
                        "the store at {} has format {:?}; this build reads {:?}",
                        self.engine_dir.display(),
                        String::from_utf8_lossy(&other),
                        String::from_utf8_lossy(FORMAT_VALUE)
                    ),
                ));
            }
            None => Some(None),
        };
        let mut next_seq = match self
            .meta
            .get(NEXT_SEQ_KEY)
            .map_err(|e| self.engine_error(OP, e))?
        {
            Some(v) => codec::decode_u64(&v, "sequence counter")
                .map_err(|e| self.decode_error(OP, "sequence counter", e))?,
            None => 1,
        };

        let mut metas = HashMap::new();
        let mut to_purge = Vec::new();
        for item in self.queue_meta.iter() {
            let (key, value) = item.into_inner().map_err(|e| self.engine_error(OP, e))?;
            let meta = codec::decode_meta(&value)
                .map_err(|e| self.decode_error(OP, "queue metadata", e))?;
            if meta.floor > 0 {
                to_purge.push(key.to_vec());
            }
            metas.insert(key.to_vec(), meta);
        }
        // Also after an upgrade that stopped half way (its marker is
        // written last).
        if self.db.keyspace_exists(LEGACY_QUEUES) {
            self.upgrade_queues(&mut metas, &mut next_seq)?;
        }
        if let Some(from) = outdated {
            let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
            batch.insert(&self.meta, FORMAT_KEY, FORMAT_VALUE);
            batch.commit().map_err(|e| self.engine_error(OP, e))?;
            if let Some(from) = from {
                tracing::info!(
                    backend = %self.name,
                    dir = %self.engine_dir.display(),
                    "embedded store: upgraded the store format from {from} to 3"
                );
            }
        }
        self.writer.lock().next_seq = next_seq;
        *self.metas.write() = metas;
        *self.inflight.write() = self.load_inflight()?;
        Ok(to_purge)
    }

    /// Moves the queued messages of a store of format 2 or before (keyed by
    /// session) to `queue_messages` (keyed by queue id), in batches that
    /// each insert and remove the same messages: a crash in between loses
    /// nothing and the next open goes on. Every queue gets its id first.
    /// Cleared messages (at or below their queue's floor) and messages of
    /// sessions without a queue are not moved.
    fn upgrade_queues(
        &self,
        metas: &mut HashMap<Vec<u8>, QueueMeta>,
        next_seq: &mut u64,
    ) -> Result<(), BackendError> {
        const OP: &str = "open";
        let engine = |e| self.engine_error(OP, e);
        let legacy = self
            .db
            .keyspace(LEGACY_QUEUES, KeyspaceCreateOptions::default)
            .map_err(engine)?;
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
        for (session, meta) in metas.iter_mut().filter(|(_, meta)| meta.queue == 0) {
            meta.queue = *next_seq;
            *next_seq += 1;
            batch.insert(
                &self.queue_meta,
                session.as_slice(),
                codec::encode_meta(meta),
            );
        }
        batch.insert(&self.meta, NEXT_SEQ_KEY, codec::encode_u64(*next_seq));
        batch.commit().map_err(engine)?;

        let (mut moved, mut dropped) = (0u64, 0u64);
        let mut batch = self.db.batch().durability(Some(PersistMode::Buffer));
        let mut in_batch = 0;
        for item in legacy.iter() {
            let (key, value) = item.into_inner().map_err(engine)?;
            let target = keys::split_session(&key).and_then(|(session, rest)| {
                let seq = u64::from_be_bytes(rest.try_into().ok()?);
                let meta = metas.get(session)?;
                (seq > meta.floor).then(|| keys::queue_key(meta.queue, seq))
            });
            match target {
                Some(target) => {
                    batch.insert(&self.queues, target.as_slice(), value);
                    moved += 1;
                }
                None => dropped += 1,
            }
            batch.remove(&legacy, key);
            in_batch += 1;
            if in_batch == UPGRADE_CHUNK {
                let full = std::mem::replace(
                    &mut batch,
                    self.db.batch().durability(Some(PersistMode::Buffer)),
                );
                full.commit().map_err(engine)?;
                in_batch = 0;
            }
        }
        batch.commit().map_err(engine)?;
        self.db.persist(PersistMode::SyncAll).map_err(engine)?;
        self.db.delete_keyspace(legacy).map_err(engine)?;
        tracing::info!(
            backend = %self.name,
            dir = %self.engine_dir.display(),
            moved,
            not_queued = dropped,
            "embedded store: queued messages moved to the format-3 layout"
        );
        Ok(())
    }

    /// Reads every delivery state and incoming QoS 2 id (a few per session:
    /// they are bounded by the inflight windows).
    fn load_inflight(&self) -> Result<HashMap<Vec<u8>, Inflight>, BackendError> {
        const OP: &str = "open";
        let mut inflight: HashMap<Vec<u8>, Inflight> = HashMap::new();
        for item in self.delivery.iter() {
            let (key, value) = item.into_inner().map_err(|e| self.engine_error(OP, e))?;
            let parsed = keys::split_session(&key).and_then(|(session, rest)| {
                let seq: [u8; 8] = rest.try_into().ok()?;
                Some((session, u64::from_be_bytes(seq)))
            });
            let Some((session, seq)) = parsed else {
                return Err(self.decode_error(
                    OP,
                    "delivery state key",
                    DecodeError(format!(
                        "{key:?} is not a session key and a sequence number"
                    )),
                ));
            };
            let state = codec::decode_delivery_state(&value).map_err(|e| {
                self.decode_error(
                    OP,
                    &format!("delivery state of message {seq} of {}", describe(session)),
                    e,
                )
            })?;
            inflight
                .entry(session.to_vec())
                .or_default()
                .delivery
                .insert(seq, state);
        }
        for item in self.incoming.iter() {
            let (key, value) = item.into_inner().map_err(|e| self.engine_error(OP, e))?;
            let parsed = keys::split_session(&key).and_then(|(session, rest)| {
                let id: [u8; 2] = rest.try_into().ok()?;
                Some((session, u16::from_be_bytes(id)))
            });
            let Some((session, packet_id)) = parsed else {
                return Err(self.decode_error(
                    OP,
                    "incoming QoS 2 key",
                    DecodeError(format!("{key:?} is not a session key and a packet id")),
                ));
            };
            codec::decode_incoming_qos2(&value).map_err(|e| {
                self.decode_error(
                    OP,
                    &format!(
                        "incoming QoS 2 record of packet id {packet_id} of {}",
                        describe(session)
                    ),
                    e,
                )
            })?;
            inflight
                .entry(session.to_vec())
                .or_default()
                .incoming
                .insert(packet_id);
        }
        Ok(inflight)
    }
}

// ---------------------------------------------------------------- writing

impl Shared {
    /// Commits `op` on the calling thread, with every job waiting in
    /// `pending`, blocking on the writer lock if another leader is writing.
    /// For the blocking pool and the purge thread, never a reactor thread.
    fn submit_blocking(&self, op: Op) -> Reply {
        let mut state = self.writer.lock();
        let jobs = std::mem::take(&mut *self.pending.lock());
        self.commit_jobs(&mut state, jobs, Some(&op))
            .unwrap_or_else(|| Err(self.lost_write()))
    }

    /// Hands a job to the writer thread.
    fn hand_off(&self, op: Op) -> oneshot::Receiver<Reply> {
        let (reply, answer) = oneshot::channel();
        self.pending.lock().push(Job { op, reply });
        self.pending_cv.notify_one();
        answer
    }

    fn lost_write(&self) -> BackendError {
        self.error(
            ErrorKind::Internal,
            "write",
            "the write was lost by the group commit".to_owned(),
        )
    }

    /// Commits `jobs` and `own` as one batch; answers the jobs and returns
    /// `own`'s answer.
    fn commit_jobs(
        &self,
        state: &mut WriterState,
        jobs: Vec<Job>,
        own: Option<&Op>,
    ) -> Option<Reply> {
        let ops: Vec<&Op> = jobs.iter().map(|job| &job.op).chain(own).collect();
        let mut answers = self.commit_group(state, &ops);
        let own_answer = if own.is_some() { answers.pop() } else { None };
        for (job, answer) in jobs.into_iter().zip(answers) {
            // A caller that went away no longer needs its answer.
            let _ = job.reply.send(answer);
        }
        own_answer
    }

    /// Writes `ops` as one engine batch (one journal write; in `fsync` mode
    /// one `fdatasync`) and returns their answers in order.
    fn commit_group(&self, state: &mut WriterState, ops: &[&Op]) -> Vec<Reply> {
        if ops.is_empty() {
            return Vec::new();
        }
        let persist = match self.durability {
            Durability::Os => PersistMode::Buffer,
            // The journal is preallocated, so its data (and the block
            // allocation fdatasync also flushes) is all a commit needs.
            Durability::Fsync => PersistMode::SyncData,
        };
        let mut group = Group {
            batch: self.db.batch().durability(Some(persist)),
            metas: HashMap::new(),
            removed: HashSet::new(),
            next_seq: state.next_seq,
            first_seq: state.next_seq,
            fresh: std::mem::take(&mut state.fresh),
            delivery: HashMap::new(),
            incoming: HashMap::new(),
        };
        let answers: Vec<Reply> = ops.iter().map(|op| self.apply(&mut group, op)).collect();

        let Group {
            mut batch,
            metas,
            next_seq,
            fresh,
            delivery,
            incoming,
            ..
        } = group;
        for (session, meta) in &metas {
            if meta.is_empty() {
                batch.remove(&self.queue_meta, session.as_slice());
            } else {
                batch.insert(
                    &self.queue_meta,
                    session.as_slice(),
                    codec::encode_meta(meta),
                );
            }
        }
        if next_seq != state.next_seq {
            batch.insert(&self.meta, NEXT_SEQ_KEY, codec::encode_u64(next_seq));
        }
        {
            // Only what differs from the committed records is written.
            let committed = self.inflight.read();
            for (session, changes) in &delivery {
                let before = committed.get(session);
                for (seq, after) in changes {
                    if before.and_then(|i| i.delivery.get(seq)) == after.as_ref() {
                        continue;
                    }
                    let key = keys::session_seq_key(session, *seq);
                    match after {
                        Some(state) => batch.insert(
                            &self.delivery,
                            key,
                            codec::encode_delivery_state(*state).as_slice(),
                        ),
                        None => batch.remove(&self.delivery, key),
                    }
                }
            }
            for (session, changes) in &incoming {
                let before = committed.get(session);
                for (packet_id, pending) in changes {
                    if before.is_some_and(|i| i.incoming.contains(packet_id)) == *pending {
                        continue;
                    }
                    let key = keys::incoming_key(session, *packet_id);
                    if *pending {
                        batch.insert(&self.incoming, key, codec::INCOMING_QOS2_VALUE.as_slice());
                    } else {
                        batch.remove(&self.incoming, key);
                    }
                }
            }
        }

        match batch.commit() {
            Ok(()) => {
                state.next_seq = next_seq;
                state.fresh = fresh;
                let mut shared_metas = self.metas.write();
                for (session, meta) in metas {
                    if meta.is_empty() {
                        shared_metas.remove(&session);
                    } else {
                        shared_metas.insert(session, meta);
                    }
                }
                drop(shared_metas);
                if !delivery.is_empty() || !incoming.is_empty() {
                    self.apply_inflight(delivery, incoming);
                }
                answers
            }
            Err(e) => {
                // `state.fresh` stays empty: it may not match what is stored.
                let e = self.engine_error("write", e);
                tracing::error!(error = %e, "embedded store: commit failed");
                answers
                    .into_iter()
                    .map(|answer| answer.and_then(|_| Err(e.copy_without_source())))
                    .collect()
            }
        }
    }

    /// Makes a committed group's inflight changes visible.
    fn apply_inflight(&self, delivery: DeliveryChanges, incoming: IncomingChanges) {
        let mut inflight = self.inflight.write();
        for (session, changes) in delivery {
            let entry = inflight.entry(session.clone()).or_default();
            for (seq, after) in changes {
                match after {
                    Some(state) => entry.delivery.insert(seq, state),
                    None => entry.delivery.remove(&seq),
                };
            }
            if entry.is_empty() {
                inflight.remove(&session);
            }
        }
        for (session, changes) in incoming {
            let entry = inflight.entry(session.clone()).or_default();
            for (packet_id, pending) in changes {
                if pending {
                    entry.incoming.insert(packet_id);
                } else {
                    entry.incoming.remove(&packet_id);
                }
            }
            if entry.is_empty() {
                inflight.remove(&session);
            }
        }
    }

    /// Adds one job's writes to the group's batch.
    fn apply(&self, group: &mut Group, op: &Op) -> Reply {
        match op {
            Op::Enqueue { session, value } => Ok(Answer::Seq(self.append(group, session, value))),
            Op::EnqueueBatch { writes } => Ok(Answer::Seqs(
                writes
                    .iter()
                    .flat_map(|(sessions, value)| sessions.iter().map(move |s| (s, value)))
                    .map(|(session, value)| self.append(group, session, value))
                    .collect(),
            )),
            Op::Remove { session, seq } => {
                self.remove_seqs(group, session, std::slice::from_ref(seq))?;
                Ok(Answer::Done)
            }
            Op::RemoveMany { session, seqs } => {
                self.remove_seqs(group, session, seqs)?;
                Ok(Answer::Done)
            }
            Op::SetDelivery {
                session,
                seq,
                state,
            } => {
                let current = self.delivery_state(group, session, *seq);
                if current == *state {
                    return Ok(Answer::Done);
                }
                // A state exists only for a queued message: one with a state
                // is queued; for any other, check.
                if state.is_some() && current.is_none() && !self.is_queued(group, session, *seq)? {
                    return Ok(Answer::Done);
                }
                set_delivery(group, session, *seq, *state);
                Ok(Answer::Done)
            }
            Op::SetIncoming {
                session,
                packet_id,
                pending,
            } => {
                group
                    .incoming
                    .entry(session.clone())
                    .or_default()
                    .insert(*packet_id, *pending);
                Ok(Answer::Done)
            }
            Op::ClearQueue { session } => Ok(self.clear(group, session)),
            Op::SaveSession { session, value } => {
                group
                    .batch
                    .insert(&self.sessions, session.as_slice(), value.as_slice());
                Ok(Answer::Done)
            }
            Op::DeleteSession { session } => {
                group.batch.remove(&self.sessions, session.as_slice());
                let pending: Vec<u16> = {
                    let committed = self.inflight.read();
                    let mut ids: BTreeSet<u16> = committed
                        .get(session)
                        .map(|i| i.incoming.clone())
                        .unwrap_or_default();
                    if let Some(changes) = group.incoming.get(session) {
                        ids.extend(changes.keys());
                    }
                    ids.into_iter().collect()
                };
                if !pending.is_empty() {
                    let changes = group.incoming.entry(session.clone()).or_default();
                    for id in pending {
                        changes.insert(id, false);
                    }
                }
                Ok(self.clear(group, session))
            }
            Op::PutRetained { key, value } => {
                group
                    .batch
                    .insert(&self.retained, key.as_slice(), value.as_slice());
                Ok(Answer::Done)
            }
            Op::DeleteRetained { key } => {
                group.batch.remove(&self.retained, key.as_slice());
                Ok(Answer::Done)
            }
            Op::Purge {
                session,
                floor,
                keys,
                done,
            } => {
                for key in keys {
                    // Weak, as in `remove_one`: each key was written once.
                    group.batch.remove_weak(&self.queues, key.as_slice());
                }
                if *done && self.existing_meta(group, session).is_some() {
                    self.update_meta(group, session, |meta| {
                        // A later clear raised the floor: its purge is scheduled.
                        if meta.floor == *floor {
                            meta.floor = 0;
                        }
                    });
                }
                Ok(Answer::Done)
            }
        }
    }

    /// Appends one message to a session's queue; returns its number. A
    /// queue without an id (a new one) takes the next number as its id.
    fn append(&self, group: &mut Group, session: &[u8], value: &Slice) -> u64 {
        let new_queue = group.next_seq;
        let meta = self.update_meta(group, session, |meta| {
            if meta.queue == 0 {
                meta.queue = new_queue;
            }
            meta.len += 1;
        });
        if meta.queue == new_queue {
            group.next_seq += 1;
        }
        let seq = group.next_seq;
        group.next_seq += 1;
        let key = keys::queue_key(meta.queue, seq);
        group
            .batch
            .insert(&self.queues, key.as_slice(), value.clone());
        group.fresh.remember(FreshSeqs::fingerprint(session), seq);
        seq
    }

    /// Removes messages (and their delivery states) of one session, each
    /// only if it is queued.
    fn remove_seqs(
        &self,
        group: &mut Group,
        session: &[u8],
        seqs: &[u64],
    ) -> Result<(), BackendError> {
        // Only QoS 2 deliveries have states: most sessions have none, and
        // then no removal needs to look.
        let has_states = group.delivery.contains_key(session)
            || self
                .inflight
                .read()
                .get(session)
                .is_some_and(|i| !i.delivery.is_empty());
        let fingerprint = FreshSeqs::fingerprint(session);
        // The queue's id and floor stay as they are for the whole job.
        let meta = self.existing_meta(group, session);
        let mut removed = 0;
        for &seq in seqs {
            if has_states && self.delivery_state(group, session, seq).is_some() {
                set_delivery(group, session, seq, None);
            }
            if let Some(meta) = meta
                && self.remove_one(group, meta, fingerprint, seq)?
            {
                removed += 1;
            }
        }
        if removed > 0 {
            self.update_meta(group, session, |meta| {
                meta.len = meta.len.saturating_sub(removed);
            });
        }
        Ok(())
    }

    /// Removes one message of the queue `meta` describes if it is queued;
    /// true when it was. The caller updates the queue length.
    fn remove_one(
        &self,
        group: &mut Group,
        meta: QueueMeta,
        fingerprint: u64,
        seq: u64,
    ) -> Result<bool, BackendError> {
        // Cleared already (the purge removes it), or removed by this group:
        // sequence numbers are unique across the store, so the number alone
        // names the message.
        if seq <= meta.floor || group.removed.contains(&seq) {
            return Ok(false);
        }
        let key = keys::queue_key(meta.queue, seq);
        // A message queued by this very group is not in the engine yet (and
        // never removed before its enqueue is answered): left alone, as a
        // lookup would.
        let exists = seq < group.first_seq
            && (group.fresh.take(fingerprint, seq)
                || self
                    .queues
                    .contains_key(key)
                    .map_err(|e| self.engine_error("remove", e))?);
        if exists {
            // Weak: queue keys are written once (numbers are never reused),
            // so the tombstone may vanish with the record when they meet in
            // a flush or compaction instead of going to the last level.
            group.batch.remove_weak(&self.queues, key.as_slice());
            group.removed.insert(seq);
        }
        Ok(exists)
    }

    /// Whether message `seq` is in the session's queue as this group sees it.
    fn is_queued(&self, group: &Group, session: &[u8], seq: u64) -> Result<bool, BackendError> {
        let Some(meta) = self.existing_meta(group, session) else {
            return Ok(false);
        };
        if seq <= meta.floor {
            return Ok(false);
        }
        if group.removed.contains(&seq) {
            return Ok(false);
        }
        let key = keys::queue_key(meta.queue, seq);
        self.queues
            .contains_key(key)
            .map_err(|e| self.engine_error("set_delivery_state", e))
    }

    /// The delivery state of message `seq` as this group sees it.
    fn delivery_state(&self, group: &Group, session: &[u8], seq: u64) -> Option<DeliveryState> {
        if let Some(change) = group.delivery.get(session).and_then(|c| c.get(&seq)) {
            return *change;
        }
        self.inflight
            .read()
            .get(session)
            .and_then(|i| i.delivery.get(&seq).copied())
    }

    /// Makes every message of `session` invisible in one write: the floor
    /// rises to the highest number handed out so far. Their delivery states go.
    fn clear(&self, group: &mut Group, session: &[u8]) -> Answer {
        let with_state: Vec<u64> = {
            let committed = self.inflight.read();
            let mut seqs: BTreeSet<u64> = committed
                .get(session)
                .map(|i| i.delivery.keys().copied().collect())
                .unwrap_or_default();
            if let Some(changes) = group.delivery.get(session) {
                seqs.extend(changes.keys());
            }
            seqs.into_iter().collect()
        };
        for seq in with_state {
            set_delivery(group, session, seq, None);
        }
        let Some(meta) = self.existing_meta(group, session) else {
            return Answer::Done;
        };
        group.fresh.forget_session(session);
        if meta.len == 0 && meta.floor == 0 {
            return Answer::Done;
        }
        let floor = group.next_seq - 1;
        self.update_meta(group, session, |meta| {
            meta.len = 0;
            meta.floor = floor;
        });
        Answer::PurgeNeeded
    }

    /// The session's metadata as this group sees it, if it has any.
    fn existing_meta(&self, group: &Group, session: &[u8]) -> Option<QueueMeta> {
        match group.metas.get(session) {
            Some(meta) => Some(*meta),
            None => self.metas.read().get(session).copied(),
        }
        .filter(|meta| !meta.is_empty())
    }

    /// Changes the session's metadata in this group (taken from the
    /// committed one on first use; the key is copied only then); returns
    /// it as changed.
    fn update_meta(
        &self,
        group: &mut Group,
        session: &[u8],
        change: impl FnOnce(&mut QueueMeta),
    ) -> QueueMeta {
        if let Some(meta) = group.metas.get_mut(session) {
            change(meta);
            return *meta;
        }
        let mut meta = self.metas.read().get(session).copied().unwrap_or_default();
        change(&mut meta);
        group.metas.insert(session.to_vec(), meta);
        meta
    }
}

fn set_delivery(group: &mut Group, session: &[u8], seq: u64, state: Option<DeliveryState>) {
    match group.delivery.get_mut(session) {
        Some(changes) => {
            changes.insert(seq, state);
        }
        None => {
            group
                .delivery
                .insert(session.to_vec(), BTreeMap::from([(seq, state)]));
        }
    }
}

/// Delivery state changes of a group, per session: `None` removes.
type DeliveryChanges = HashMap<Vec<u8>, BTreeMap<u64, Option<DeliveryState>>>;
/// Incoming QoS 2 changes of a group, per session: `false` removes.
type IncomingChanges = HashMap<Vec<u8>, BTreeMap<u16, bool>>;

/// The writes of one group commit being assembled.
struct Group {
    batch: fjall::OwnedWriteBatch,
    /// Metadata of every session this group touches, as it will be after it.
    metas: HashMap<Vec<u8>, QueueMeta>,
    /// Sequence numbers of the messages this group removes (a second
    /// remove of one is a no-op).
    removed: HashSet<u64>,
    next_seq: u64,
    /// `next_seq` when the group began: higher numbers are its own.
    first_seq: u64,
    /// The writer's [`FreshSeqs`], lent to the group; lost (emptied) if
    /// the commit fails.
    fresh: FreshSeqs,
    /// Delivery states and incoming ids this group sets or removes, as they
    /// will be after it (each record written once, whatever the jobs did).
    delivery: DeliveryChanges,
    incoming: IncomingChanges,
}

// ---------------------------------------------------------------- the writer thread

impl WriterThread {
    fn start(shared: Arc<Shared>) -> std::io::Result<WriterThread> {
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("fogg-embedded-writer".to_owned())
            .spawn(move || writer_loop(&thread_shared))?;
        Ok(WriterThread {
            shared,
            thread: Some(thread),
        })
    }

    /// Commits what is pending, then stops the thread.
    fn stop(&mut self) {
        {
            // Set under the lock the writer checks it under: otherwise the
            // flag and the notification can both land between its check
            // and its wait, and it waits forever (seen as a hung drop).
            let _pending = self.shared.pending.lock();
            self.shared.stopping.store(true, Ordering::Release);
        }
        self.shared.pending_cv.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Waits for jobs and commits everything pending as one group, again and
/// again: while it writes (or syncs), new jobs queue up for the next group.
fn writer_loop(shared: &Shared) {
    loop {
        {
            let mut pending = shared.pending.lock();
            while pending.is_empty() {
                if shared.stopping.load(Ordering::Acquire) {
                    return;
                }
                shared.pending_cv.wait(&mut pending);
            }
        }
        let mut state = shared.writer.lock();
        // Taken under the writer lock: the purge thread (or a caller on the
        // blocking path) may have committed them meanwhile.
        let jobs = std::mem::take(&mut *shared.pending.lock());
        // A panic in the engine must not kill the thread: every later write
        // would wait forever. The jobs of the failed group are dropped, so
        // their callers get an error ("lost by the group commit").
        let committed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            shared.commit_jobs(&mut state, jobs, None);
        }));
        if committed.is_err() {
            tracing::error!(
                backend = %shared.name,
                "embedded store: a commit panicked; its writes were answered with an error"
            );
        }
    }
}

// ---------------------------------------------------------------- purging

impl Purger {
    fn start(shared: Arc<Shared>) -> Purger {
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("fogg-embedded-purge".to_owned())
            .spawn(move || purge_loop(&shared, &rx, &thread_stop));
        match thread {
            Ok(thread) => Purger {
                tx: Some(tx),
                stop,
                thread: Some(thread),
            },
            Err(e) => {
                // Cleared messages stay invisible and are removed at the next
                // start; the store works without the thread.
                tracing::error!(error = %e, "embedded store: cannot start the purge thread");
                Purger {
                    tx: None,
                    stop,
                    thread: None,
                }
            }
        }
    }

    fn schedule(&self, session: Vec<u8>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(session);
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn purge_loop(shared: &Shared, rx: &Receiver<Vec<u8>>, stop: &AtomicBool) {
    while let Ok(session) = rx.recv() {
        if let Err(e) = purge_session(shared, &session, stop) {
            tracing::warn!(error = %e, "embedded store: removing cleared messages failed; retried at next start");
        }
    }
}

/// Removes the cleared messages of one session, a chunk per batch.
fn purge_session(shared: &Shared, session: &[u8], stop: &AtomicBool) -> Result<(), BackendError> {
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let (queue, floor) = match shared.metas.read().get(session) {
            Some(meta) if meta.floor > 0 => (meta.queue, meta.floor),
            _ => return Ok(()),
        };
        // Messages at or below the floor are never written again, so they
        // can be listed outside the writer lock.
        let mut keys = Vec::with_capacity(PURGE_CHUNK);
        let range = keys::queue_key(queue, 0)..=keys::queue_key(queue, floor);
        for item in shared.queues.range(range).take(PURGE_CHUNK) {
            let key = item.key().map_err(|e| shared.engine_error("purge", e))?;
            keys.push(key.to_vec());
        }
        let done = keys.len() < PURGE_CHUNK;
        shared.submit_blocking(Op::Purge {
            session: session.to_vec(),
            floor,
            keys,
            done,
        })?;
        if done {
            return Ok(());
        }
    }
}

// ---------------------------------------------------------------- async glue

impl EmbeddedStore {
    /// Runs a write through group commit: hands it to the writer thread and
    /// awaits the answer (the reactor thread never touches the engine).
    async fn write(&self, operation: &'static str, op: Op) -> Reply {
        let shared = &self.shared;
        match shared.write_path {
            WritePath::Thread => shared
                .hand_off(op)
                .await
                .unwrap_or_else(|_| Err(shared.lost_write())),
            WritePath::Blocking => {
                let shared = shared.clone();
                tokio::task::spawn_blocking(move || shared.submit_blocking(op))
                    .await
                    .map_err(|e| join_error(&self.shared.name, operation, e))?
            }
        }
    }

    /// Runs a read on a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        operation: &'static str,
        f: impl FnOnce(&Shared) -> Result<T, BackendError> + Send + 'static,
    ) -> Result<T, BackendError> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || f(&shared))
            .await
            .map_err(|e| join_error(&self.shared.name, operation, e))?
    }

    fn after_clear(&self, session: Vec<u8>, answer: Answer) {
        if matches!(answer, Answer::PurgeNeeded) {
            self.purge.schedule(session);
        }
    }

    /// Messages into queues as one job (`enqueue_many`, `enqueue_batch`):
    /// each message encoded once, its numbers answered in order.
    async fn enqueue_writes(
        &self,
        operation: &'static str,
        writes: &[(&[SessionKey], &StoredMessage)],
    ) -> Result<Vec<u64>, BackendError> {
        let mut encoded = Vec::with_capacity(writes.len());
        for (keys, message) in writes {
            if keys.is_empty() {
                continue;
            }
            let value = codec::encode_message(message)
                .map_err(|e| encode_error(&self.shared.name, operation, e))?;
            encoded.push((
                keys.iter().map(session_key_of).collect(),
                Slice::from(value),
            ));
        }
        if encoded.is_empty() {
            return Ok(Vec::new());
        }
        match self
            .write(operation, Op::EnqueueBatch { writes: encoded })
            .await?
        {
            Answer::Seqs(seqs) => Ok(seqs),
            other => Err(self.unexpected(operation, &other)),
        }
    }

    /// A write whose answer is a sequence number.
    async fn write_seq(&self, operation: &'static str, op: Op) -> Result<u64, BackendError> {
        match self.write(operation, op).await? {
            Answer::Seq(seq) => Ok(seq),
            other => Err(self.unexpected(operation, &other)),
        }
    }

    fn unexpected(&self, operation: &'static str, answer: &Answer) -> BackendError {
        self.shared.error(
            ErrorKind::Internal,
            operation,
            format!("the writer gave an unexpected answer {answer:?}"),
        )
    }
}

fn session_key_of(key: &SessionKey) -> Vec<u8> {
    keys::session_key(&key.mountpoint, &key.client_id)
}

/// Names a session in error messages, from its encoded key.
fn describe(session: &[u8]) -> String {
    match keys::decode_session_key(session) {
        Some((mountpoint, client_id)) => {
            format!("session (mountpoint {mountpoint:?}, client id {client_id:?})")
        }
        None => format!("session key {session:?}"),
    }
}

impl SessionStore for EmbeddedStore {
    async fn save_session(&self, session: &StoredSession) -> Result<(), BackendError> {
        let value = codec::encode_session(session)
            .map_err(|e| encode_error(&self.shared.name, "save_session", e))?;
        let session = session_key_of(&session.key);
        self.write("save_session", Op::SaveSession { session, value })
            .await
            .map(drop)
    }

    async fn load_session(&self, key: &SessionKey) -> Result<Option<StoredSession>, BackendError> {
        let key = key.clone();
        self.read("load_session", move |s| {
            let Some(value) = s
                .sessions
                .get(session_key_of(&key))
                .map_err(|e| s.engine_error("load_session", e))?
            else {
                return Ok(None);
            };
            let what = describe(&session_key_of(&key));
            codec::decode_session(key, &value)
                .map(Some)
                .map_err(|e| s.decode_error("load_session", &what, e))
        })
        .await
    }

    async fn delete_session(&self, key: &SessionKey) -> Result<(), BackendError> {
        let session = session_key_of(key);
        let answer = self
            .write(
                "delete_session",
                Op::DeleteSession {
                    session: session.clone(),
                },
            )
            .await?;
        self.after_clear(session, answer);
        Ok(())
    }

    async fn list_sessions(&self) -> Result<Vec<StoredSession>, BackendError> {
        self.read("list_sessions", |s| {
            let mut out = Vec::new();
            for item in s.sessions.iter() {
                let (raw, value) = item
                    .into_inner()
                    .map_err(|e| s.engine_error("list_sessions", e))?;
                let Some((mountpoint, client_id)) = keys::decode_session_key(&raw) else {
                    return Err(s.decode_error(
                        "list_sessions",
                        "session key",
                        DecodeError(format!("{raw:?} is not a session key")),
                    ));
                };
                let key = SessionKey::new(mountpoint, client_id);
                let what = describe(&raw);
                out.push(
                    codec::decode_session(key, &value)
                        .map_err(|e| s.decode_error("list_sessions", &what, e))?,
                );
            }
            Ok(out)
        })
        .await
    }
}

impl MessageStore for EmbeddedStore {
    async fn enqueue(
        &self,
        key: &SessionKey,
        message: &StoredMessage,
    ) -> Result<u64, BackendError> {
        let value = codec::encode_message(message)
            .map_err(|e| encode_error(&self.shared.name, "enqueue", e))?;
        let session = session_key_of(key);
        let value = Slice::from(value);
        self.write_seq("enqueue", Op::Enqueue { session, value })
            .await
    }

    async fn read_queue(
        &self,
        key: &SessionKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, StoredMessage)>, BackendError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let session = session_key_of(key);
        // A session without metadata has no message (one being enqueued is
        // not answered yet, so it need not be seen).
        let Some((queue, floor)) = self
            .shared
            .metas
            .read()
            .get(&session)
            .map(|meta| (meta.queue, meta.floor))
        else {
            return Ok(Vec::new());
        };
        let Some(start) = after.max(floor).checked_add(1) else {
            return Ok(Vec::new());
        };
        self.read("read_queue", move |s| {
            let range = keys::queue_key(queue, start)..=keys::queue_key(queue, u64::MAX);
            let mut out = Vec::new();
            for item in s.queues.range(range).take(limit) {
                let (key, value) = item
                    .into_inner()
                    .map_err(|e| s.engine_error("read_queue", e))?;
                let seq = keys::queue_key_seq(queue, &key).ok_or_else(|| {
                    s.decode_error(
                        "read_queue",
                        "queue key",
                        DecodeError(format!("{key:?} is not in the session's queue")),
                    )
                })?;
                let message = codec::decode_message(&value)
                    .map_err(|e| s.decode_error("read_queue", "queued message", e))?;
                out.push((seq, message));
            }
            Ok(out)
        })
        .await
    }

    async fn remove(&self, key: &SessionKey, seq: u64) -> Result<(), BackendError> {
        // No shortcut on a missing queue record: a reader may see a message
        // committed by a batch whose records are not published yet.
        let session = session_key_of(key);
        self.write("remove", Op::Remove { session, seq })
            .await
            .map(drop)
    }

    async fn queue_len(&self, key: &SessionKey) -> Result<usize, BackendError> {
        let session = session_key_of(key);
        let len = self
            .shared
            .metas
            .read()
            .get(&session)
            .map_or(0, |meta| meta.len);
        Ok(usize::try_from(len).unwrap_or(usize::MAX))
    }

    async fn clear_queue(&self, key: &SessionKey) -> Result<(), BackendError> {
        let session = session_key_of(key);
        let answer = self
            .write(
                "clear_queue",
                Op::ClearQueue {
                    session: session.clone(),
                },
            )
            .await?;
        self.after_clear(session, answer);
        Ok(())
    }

    async fn enqueue_many(
        &self,
        keys: &[SessionKey],
        message: &StoredMessage,
    ) -> Result<Vec<u64>, BackendError> {
        self.enqueue_writes("enqueue_many", &[(keys, message)])
            .await
    }

    async fn enqueue_batch(
        &self,
        writes: &[(&[SessionKey], &StoredMessage)],
    ) -> Result<Vec<u64>, BackendError> {
        self.enqueue_writes("enqueue_batch", writes).await
    }

    async fn remove_many(&self, key: &SessionKey, seqs: &[u64]) -> Result<(), BackendError> {
        let session = session_key_of(key);
        if seqs.is_empty() {
            return Ok(());
        }
        let op = Op::RemoveMany {
            session,
            seqs: seqs.to_vec(),
        };
        self.write("remove_many", op).await.map(drop)
    }

    async fn set_delivery_state(
        &self,
        key: &SessionKey,
        seq: u64,
        state: Option<DeliveryState>,
    ) -> Result<(), BackendError> {
        let session = session_key_of(key);
        let unchanged = match state {
            // Only a queued message can have a state: no queue, no write.
            Some(_) => !self.shared.metas.read().contains_key(&session),
            None => false,
        } || self
            .shared
            .inflight
            .read()
            .get(&session)
            .and_then(|i| i.delivery.get(&seq))
            .copied()
            == state;
        if unchanged {
            return Ok(());
        }
        let op = Op::SetDelivery {
            session,
            seq,
            state,
        };
        self.write("set_delivery_state", op).await.map(drop)
    }

    async fn delivery_states(
        &self,
        key: &SessionKey,
    ) -> Result<Vec<(u64, DeliveryState)>, BackendError> {
        let session = session_key_of(key);
        Ok(self
            .shared
            .inflight
            .read()
            .get(&session)
            .map(|i| i.delivery.iter().map(|(seq, s)| (*seq, *s)).collect())
            .unwrap_or_default())
    }

    async fn set_incoming_qos2(
        &self,
        key: &SessionKey,
        packet_id: u16,
        pending: bool,
    ) -> Result<(), BackendError> {
        let session = session_key_of(key);
        let current = self
            .shared
            .inflight
            .read()
            .get(&session)
            .is_some_and(|i| i.incoming.contains(&packet_id));
        if current == pending {
            return Ok(());
        }
        let op = Op::SetIncoming {
            session,
            packet_id,
            pending,
        };
        self.write("set_incoming_qos2", op).await.map(drop)
    }

    async fn incoming_qos2(&self, key: &SessionKey) -> Result<Vec<u16>, BackendError> {
        let session = session_key_of(key);
        Ok(self
            .shared
            .inflight
            .read()
            .get(&session)
            .map(|i| i.incoming.iter().copied().collect())
            .unwrap_or_default())
    }
}

impl RetainStore for EmbeddedStore {
    async fn put_retained(
        &self,
        mountpoint: &str,
        message: &StoredMessage,
    ) -> Result<(), BackendError> {
        let value = codec::encode_message(message)
            .map_err(|e| encode_error(&self.shared.name, "put_retained", e))?;
        let key = keys::retained_key(mountpoint, &message.topic);
        self.write("put_retained", Op::PutRetained { key, value })
            .await
            .map(drop)
    }

    async fn delete_retained(&self, mountpoint: &str, topic: &str) -> Result<(), BackendError> {
        let key = keys::retained_key(mountpoint, topic);
        self.write("delete_retained", Op::DeleteRetained { key })
            .await
            .map(drop)
    }

    async fn match_retained(
        &self,
        mountpoint: &str,
        filter: &str,
    ) -> Result<Vec<StoredMessage>, BackendError> {
        let mountpoint = mountpoint.to_owned();
        let filter = filter.to_owned();
        self.read("match_retained", move |s| {
            crate::retained::matching(&s.retained, &mountpoint, &filter).map_err(|e| match e {
                crate::retained::Error::Engine(e) => s.engine_error("match_retained", e),
                crate::retained::Error::Decode(e) => {
                    s.decode_error("match_retained", "retained message", e)
                }
            })
        })
        .await
    }

    async fn list_retained(&self) -> Result<Vec<(String, StoredMessage)>, BackendError> {
        self.read("list_retained", |s| {
            let mut out = Vec::new();
            for item in s.retained.iter() {
                let (key, value) = item
                    .into_inner()
                    .map_err(|e| s.engine_error("list_retained", e))?;
                let mountpoint = keys::retained_key_mountpoint(&key).ok_or_else(|| {
                    s.decode_error(
                        "list_retained",
                        "retained key",
                        DecodeError(format!("{key:?} is not a retained key")),
                    )
                })?;
                let message = codec::decode_message(&value)
                    .map_err(|e| s.decode_error("list_retained", "retained message", e))?;
                out.push((mountpoint, message));
            }
            Ok(out)
        })
        .await
    }
}
