//! What a newcomer meets right after `deploy/run.sh`: the settings the demo left in
//! `.local/env` are found, `token` takes its secret where the server does and says where when
//! it is missing, and the default log level prints results, not the clients' connection lines.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use followup_api::Auth;
use followup_testkit::NatsServer;

const SECRET: &str = "a-test-secret-of-at-least-32-bytes-0123";

/// A fresh directory standing for the repository a newcomer works in.
fn directory() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("followupctl-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The demo's settings file in `dir`.
fn local_env(dir: &Path, text: &str) {
    std::fs::create_dir_all(dir.join(".local")).unwrap();
    std::fs::write(dir.join(".local/env"), text).unwrap();
}

/// `followupctl` started in `dir` with none of the service's settings but `env`, and no
/// `RUST_LOG` (the default log level).
fn followupctl_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_followupctl"));
    command.current_dir(dir).args(args).stdin(Stdio::null());
    for name in [
        "DATABASE_URL",
        "FOLLOWUP_MIGRATE_DATABASE_URL",
        "FOLLOWUP_ADMIN_DATABASE_URL",
        "NATS_URL",
        "FOLLOWUP_JWT_SECRET",
        "FOLLOWUP_ENV_FILE",
        "RUST_LOG",
    ] {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The user and institution a printed token stands for, checked with `secret`.
fn holder(output: &Output, secret: &str) -> (String, String) {
    let token = text(&output.stdout);
    let header = format!("Bearer {}", token.trim());
    let viewer = futures::executor::block_on(Auth::new(secret).viewer(Some(&header))).unwrap();
    (
        viewer.user.as_str().to_owned(),
        viewer.institution.as_str().to_owned(),
    )
}

#[test]
fn token_without_a_secret_names_followup_jwt_secret_and_where_the_demo_left_it() {
    let dir = directory();
    let output = followupctl_in(&dir, &["token", "--sub", "u1", "--inst", "KP"], &[]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("FOLLOWUP_JWT_SECRET is not set"),
        "{stderr}"
    );
    assert!(stderr.contains(".local/env"), "{stderr}");
}

#[test]
fn token_takes_its_secret_from_followup_jwt_secret_like_the_server() {
    let dir = directory();
    let output = followupctl_in(
        &dir,
        &[
            "token",
            "--sub",
            "u1",
            "--inst",
            "KP",
            "--team",
            "admissions",
        ],
        &[("FOLLOWUP_JWT_SECRET", SECRET)],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(holder(&output, SECRET), ("u1".into(), "KP".into()));
}

#[test]
fn the_settings_the_demo_left_in_local_env_are_used_when_unset() {
    let dir = directory();
    local_env(
        &dir,
        &format!(
            "# written by deploy/run.sh\nFOLLOWUP_JWT_SECRET={SECRET}\n\
             DATABASE_URL=postgres://postgres@127.0.0.1:9/from-the-file\n"
        ),
    );
    let output = followupctl_in(&dir, &["token", "--sub", "demo", "--inst", "KP"], &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(holder(&output, SECRET), ("demo".into(), "KP".into()));

    // The database the file names is the one tried.
    let output = followupctl_in(&dir, &["--connect-timeout", "1", "inspect", "store"], &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("cannot reach PostgreSQL"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn a_variable_that_is_set_wins_over_the_local_env_file() {
    let dir = directory();
    local_env(&dir, &format!("FOLLOWUP_JWT_SECRET={SECRET}\n"));
    let other = "another-secret-that-is-32-bytes-or-more";
    let output = followupctl_in(
        &dir,
        &["token", "--sub", "demo", "--inst", "KP"],
        &[("FOLLOWUP_JWT_SECRET", other)],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(holder(&output, other), ("demo".into(), "KP".into()));
}

#[test]
fn an_env_file_that_cannot_be_read_is_named() {
    let dir = directory();
    let output = followupctl_in(
        &dir,
        &["token", "--sub", "demo", "--inst", "KP"],
        &[("FOLLOWUP_ENV_FILE", "no-such-file.env")],
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("the environment file no-such-file.env cannot be used"),
        "{stderr}"
    );
}

#[test]
fn simulate_prints_its_results_and_no_client_log_lines_at_the_default_level() {
    let server = NatsServer::start();
    let dir = directory();
    let output = followupctl_in(
        &dir,
        &["simulate", "examples"],
        &[("NATS_URL", &server.url())],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("published applicant_transfer.failed"));
    assert_eq!(
        text(&output.stderr),
        "",
        "nothing but results at the default level"
    );
}
