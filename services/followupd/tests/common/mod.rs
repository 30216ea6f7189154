//! What the tests that run the real `followupd` binary share: the process, and job outcomes
//! made from the contract's examples.

#![allow(dead_code)] // Each test binary uses its part.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};

/// A `followupd` process running `roles`.
pub struct Followupd {
    /// The process.
    child: Child,
    /// What it runs, to start it again the same way.
    roles: Vec<&'static str>,
    /// Its environment, the same.
    env: Vec<(String, String)>,
    /// Where its log goes (`None`: nowhere).
    log: Option<PathBuf>,
}

impl Followupd {
    /// Starts the binary with `roles` and `env`, and gives it half a second to come up.
    pub fn start(roles: &[&'static str], env: &[(String, String)]) -> Self {
        Self::start_logging(roles, env, None)
    }

    /// The same, with its log (warnings and errors) written to `log`.
    pub fn start_logging(
        roles: &[&'static str],
        env: &[(String, String)],
        log: Option<PathBuf>,
    ) -> Self {
        let mut process = Self {
            child: spawn(roles, env, log.as_deref()),
            roles: roles.to_vec(),
            env: env.to_vec(),
            log,
        };
        process.wait_started();
        process
    }

    /// What it has logged so far (empty without a log file).
    pub fn log(&self) -> String {
        self.log
            .as_ref()
            .and_then(|path| std::fs::read_to_string(path).ok())
            .unwrap_or_default()
    }

    /// SIGKILL, as a crash or the OOM killer would: nothing is drained or saved.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills it (when running) and starts it again.
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn(&self.roles, &self.env, self.log.as_deref());
    }

    fn wait_started(&mut self) {
        // Started once its consumers exist; a short grace is enough for the tests' timing,
        // which only needs the workers up before the faults.
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "followupd exited at start"
        );
    }
}

impl Drop for Followupd {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(roles: &[&str], env: &[(String, String)], log: Option<&Path>) -> Child {
    let stderr = match log {
        Some(path) => Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("open the log file"),
        ),
        None => Stdio::null(),
    };
    Command::new(env!("CARGO_BIN_EXE_followupd"))
        .args(roles)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        // The local system's roles name another database than the test's.
        .env_remove("FOLLOWUP_MIGRATE_DATABASE_URL")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start followupd")
}

/// The contract's example `name` (`applicant_transfer.succeeded`, say) about application
/// `application`, published with CloudEvent id `id` at `time`.
pub fn job_outcome(name: &str, application: &str, id: &str, time: &str) -> Bytes {
    let path = format!(
        "{}/../../docs/contracts/examples/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut event: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("a contract example"))
            .expect("the example is JSON");
    event["id"] = json!(id);
    event["time"] = json!(time);
    event["subject"] = json!(format!("application/{application}"));
    event["data"]["application_id"] = json!(application);
    Bytes::from(event.to_string())
}

/// The URL of the test database behind `pool`, reached on `port` of 127.0.0.1 (the
/// database's own port, or a [`followup_testkit::TcpProxy`] in front of it).
pub fn database_url(pool: &sqlx::PgPool, port: u16) -> String {
    let options = pool.connect_options();
    format!(
        "postgres://{}@127.0.0.1:{port}/{}",
        options.get_username(),
        options.get_database().expect("a test database")
    )
}

/// The same, on the database's own port.
pub fn direct_database_url(pool: &sqlx::PgPool) -> String {
    database_url(pool, pool.connect_options().get_port())
}

/// A proxy in front of the test database behind `pool`, which a test can cut.
pub async fn database_proxy(pool: &sqlx::PgPool) -> followup_testkit::TcpProxy {
    let options = pool.connect_options();
    followup_testkit::TcpProxy::start(
        format!("{}:{}", options.get_host(), options.get_port())
            .parse()
            .expect("the test database's address"),
    )
    .await
}

/// A process environment from `(name, value)` pairs.
pub fn environment(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}
