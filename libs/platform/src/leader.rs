//! One active instance of a role among several processes, the others on standby (the
//! projector and the relay, whose work is one ordered sequence).
//!
//! The active instance holds a PostgreSQL session-level advisory lock named after the role,
//! on a connection of its own. When its process dies, PostgreSQL ends the session and frees
//! the lock, and a standby, which tries every second, takes over. When the active instance
//! loses its connection, it stops the role at once (the lock may already be someone else's).

use crate::retry::pause;
use std::future::Future;
use std::time::Duration;

use sqlx::{Connection, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

/// How often a standby tries to take over, and how often the active instance checks that
/// its lock connection is alive.
const INTERVAL: Duration = Duration::from_secs(1);

/// Runs `role` while this process holds the lock `name`, until `shutdown`. `role` gets a
/// token that is cancelled when the lock is lost or on shutdown, and must return then; it
/// is started again whenever this process takes the lock (again).
pub async fn run_as_leader<F, Fut>(pool: PgPool, name: &str, shutdown: CancellationToken, role: F)
where
    F: Fn(CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let key = lock_key(name);
    let mut announced_standby = false;
    while !shutdown.is_cancelled() {
        let mut lock = match try_lock(&pool, key).await {
            Ok(Some(connection)) => connection,
            Ok(None) => {
                if !announced_standby {
                    tracing::info!(role = name, "another instance is active; standing by");
                    announced_standby = true;
                }
                pause(&shutdown, INTERVAL).await;
                continue;
            }
            Err(error) => {
                tracing::warn!(role = name, error.message = %error, "cannot reach the database to take the role; retrying");
                pause(&shutdown, INTERVAL).await;
                continue;
            }
        };
        announced_standby = false;
        tracing::info!(role = name, "this instance is now active");
        let active = shutdown.child_token();
        let running = tokio::spawn(role(active.clone()));
        loop {
            pause(&shutdown, INTERVAL).await;
            if shutdown.is_cancelled() {
                break;
            }
            if let Err(error) = sqlx::query("SELECT 1").execute(&mut lock).await {
                tracing::warn!(role = name, error.message = %error, "lost the connection that holds the role; stopping it");
                break;
            }
        }
        active.cancel();
        let _ = running.await;
        // Ending the session frees the lock (if the connection is still there).
        let _ = lock.close().await;
    }
}

/// A connection holding the lock, or `None` when another session holds it.
async fn try_lock(pool: &PgPool, key: i64) -> Result<Option<PgConnection>, sqlx::Error> {
    let mut connection = PgConnection::connect_with(&pool.connect_options()).await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(key)
        .fetch_one(&mut connection)
        .await?;
    if locked {
        Ok(Some(connection))
    } else {
        let _ = connection.close().await;
        Ok(None)
    }
}

/// The advisory lock key of role `name`: a stable 64-bit FNV-1a hash of it.
fn lock_key(name: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in format!("followupd:{name}").bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_has_its_own_stable_lock() {
        assert_eq!(lock_key("relay"), lock_key("relay"));
        assert_ne!(lock_key("relay"), lock_key("projector"));
    }
}
