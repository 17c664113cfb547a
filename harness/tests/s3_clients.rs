//! Real S3 clients against `dare serve` (issue 15, item 6): runs tools/s3test/run.sh with the
//! `dare` binary of this build. The script starts the server twice on loopback ports (plain
//! HTTP and HTTPS with a throwaway CA), runs the pytest suite there with boto3 in its default
//! configuration and the AWS CLI, and checks that both servers shut down cleanly on SIGTERM.
//!
//! Needs python3 with boto3, awscli and pytest, and openssl; without them this test fails,
//! saying how to install them (`.ci/run` installs them).

use std::path::Path;
use std::process::Command;

fn python_has(module: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn on_path(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn boto3_and_aws_cli_against_dare_serve() {
    let missing: Vec<&str> = [
        ("boto3", python_has("boto3")),
        ("pytest", python_has("pytest")),
        ("awscli", on_path("aws")),
    ]
    .into_iter()
    .filter_map(|(name, ok)| (!ok).then_some(name))
    .collect();
    assert!(
        missing.is_empty(),
        "missing {}: install them with `python3 -m pip install boto3 awscli pytest`",
        missing.join(", ")
    );
    assert!(
        on_path("openssl"),
        "openssl is missing: install it with `apt-get install openssl`"
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/s3test/run.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(env!("CARGO_BIN_EXE_dare"))
        .output()
        .expect("running tools/s3test/run.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tools/s3test/run.sh failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("s3test: passed"),
        "tools/s3test/run.sh said nothing of passing:\n{stdout}\n{stderr}"
    );
}
