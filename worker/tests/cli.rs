//! `ehealth-worker` on the command line: it takes no arguments, but `--help` describes it and `--version`
//! prints its version instead of starting it.

#![allow(clippy::unwrap_used)]

use std::process::Command;

fn worker(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ehealth-worker"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn help_describes_the_worker_and_its_environment_instead_of_starting_it() {
    for flag in ["--help", "-h"] {
        let output = worker(&[flag]);
        let text = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{text}");
        assert!(
            text.starts_with("ehealth-worker: the worker of eHealth Jobs"),
            "{text}"
        );
        for variable in [
            "README.md",
            "DATABASE_URL",
            "AMQP_URL",
            "QUEUE_PREFIX",
            "WORKER_MAX_ATTEMPTS",
        ] {
            assert!(text.contains(variable), "{variable} missing from {text}");
        }
    }
}

#[test]
fn version_prints_the_version_and_any_other_argument_is_a_usage_error() {
    let output = worker(&["--version"]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("ehealth-worker {}\n", env!("CARGO_PKG_VERSION"))
    );
    let output = worker(&["serve"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unexpected argument 'serve'"));
}
