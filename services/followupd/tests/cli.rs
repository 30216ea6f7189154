//! The command line of `followupd`: what it refuses before it connects to anything.

use std::process::Command;

#[test]
fn a_role_named_twice_is_refused_with_a_message_that_names_it() {
    let output = Command::new(env!("CARGO_BIN_EXE_followupd"))
        .args(["relay", "api", "relay"])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("role relay is named twice"), "{stderr}");
}

#[test]
fn all_together_with_another_role_is_refused() {
    let output = Command::new(env!("CARGO_BIN_EXE_followupd"))
        .args(["all", "api"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`all` cannot be combined"), "{stderr}");
}
