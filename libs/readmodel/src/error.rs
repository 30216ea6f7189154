//! Why a read or a projection failed.

use followup_store::StoreError;

/// Why a read model query failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The caller's `cursor` is not one this service handed out (a client error: 400).
    #[error("malformed cursor: {0}")]
    BadCursor(String),
    /// PostgreSQL refused or could not be reached.
    #[error("read model database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored row cannot be read back as a follow-up: a bug, or a schema the code does not
    /// know. Rebuilding the projection repairs it.
    #[error("read model row is corrupt: {0}")]
    Corrupt(String),
}

impl ReadError {
    /// True when the database could not be reached or the connection broke: worth retrying
    /// later (503), rather than a problem with the request or the data.
    pub fn is_transient(&self) -> bool {
        match self {
            ReadError::Database(e) => followup_store::event_store::is_transient_database_error(e),
            ReadError::BadCursor(_) | ReadError::Corrupt(_) => false,
        }
    }
}

/// Why the projector could not project a batch. The batch is not written (rows and checkpoint
/// are one transaction), so the same events are projected again after the failure.
#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    /// Reading the event store failed (including an event that cannot be upcast).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading or writing the read model failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A follow-up's events cannot be folded into a state: an unreadable payload, or a stream
    /// that does not start with `created`.
    #[error("follow-up stream {stream_id} cannot be projected: {reason}")]
    Corrupt {
        /// The stream concerned.
        stream_id: String,
        /// Why.
        reason: String,
    },
}

impl ProjectorError {
    /// True for failures worth retrying later (the database is unreachable).
    pub fn is_transient(&self) -> bool {
        match self {
            ProjectorError::Store(e) => e.is_transient(),
            ProjectorError::Read(e) => e.is_transient(),
            ProjectorError::Corrupt { .. } => false,
        }
    }
}

impl From<sqlx::Error> for ProjectorError {
    fn from(error: sqlx::Error) -> Self {
        ProjectorError::Read(ReadError::Database(error))
    }
}
