//! A transaction left open in another database of the same PostgreSQL server, as a forgotten
//! `psql` session would leave it: it wrote (so it has a transaction id) and stays idle, and
//! holds back every gap-free reader of the event store until it ends.

use sqlx::{Connection, Executor, PgConnection, PgPool};

/// The open transaction; [`HeldTransaction::release`] ends it (dropping it does too, when
/// the connection closes).
#[derive(Debug)]
pub struct HeldTransaction {
    /// The session that holds it.
    connection: PgConnection,
    /// Its server process id, as `pg_stat_activity` shows it.
    pub pid: i32,
}

impl HeldTransaction {
    /// Opens one in the database `postgres` of the server behind `pool`.
    pub async fn open(pool: &PgPool) -> Self {
        let other = pool.connect_options().as_ref().clone().database("postgres");
        let mut connection = PgConnection::connect_with(&other)
            .await
            .expect("connect to the database postgres");
        connection.execute("BEGIN").await.expect("begin");
        let (_, pid): (String, i32) =
            sqlx::query_as("SELECT pg_current_xact_id()::text, pg_backend_pid()")
                .fetch_one(&mut connection)
                .await
                .expect("take a transaction id");
        Self { connection, pid }
    }

    /// Ends it (a rollback): the readers go on.
    pub async fn release(mut self) {
        self.connection.execute("ROLLBACK").await.expect("rollback");
    }
}
