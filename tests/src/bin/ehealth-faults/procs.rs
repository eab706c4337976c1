//! The service's real binaries as child processes: started with the scenario's environment, their output
//! appended to a log file each, killed with SIGKILL and started again by the faults, stopped with SIGTERM at
//! the end. A child still running when its [`Proc`] is dropped is killed.

use std::{
    fs::OpenOptions,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
use tokio::process::{Child, Command};

/// The environment every process of one scenario shares.
#[derive(Debug, Clone)]
pub struct ServiceEnv {
    /// Where the binaries are (`target/debug`).
    pub bin_dir: PathBuf,
    /// Variable, value.
    pub vars: Vec<(String, String)>,
    /// Where the logs go.
    pub log_dir: PathBuf,
}

impl ServiceEnv {
    /// A command for binary `name` with exactly this environment (plus `PATH` and `HOME`).
    pub fn command(&self, name: &str) -> Command {
        let mut command = Command::new(self.bin_dir.join(name));
        command.env_clear();
        for inherited in ["PATH", "HOME", "LANG"] {
            if let Some(value) = std::env::var_os(inherited) {
                command.env(inherited, value);
            }
        }
        command.envs(self.vars.iter().map(|(k, v)| (k, v)));
        command
            .stdin(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        command
    }
}

/// One long-running service process (`ehealth-api` or `ehealth-worker`) that faults kill and restart.
pub struct Proc {
    /// `api`, `worker-1`, …: names the log file.
    pub name: String,
    binary: &'static str,
    env: ServiceEnv,
    extra: Vec<(String, String)>,
    child: Option<Child>,
    starts: u32,
}

impl Proc {
    /// A process of `binary`, not started yet; `extra` variables are added to the scenario's.
    pub fn new(
        name: &str,
        binary: &'static str,
        env: &ServiceEnv,
        extra: &[(String, String)],
    ) -> Self {
        Self {
            name: name.to_owned(),
            binary,
            env: env.clone(),
            extra: extra.to_vec(),
            child: None,
            starts: 0,
        }
    }

    /// The log file of this process (every start appends to it).
    pub fn log_path(&self) -> PathBuf {
        self.env.log_dir.join(format!("{}.log", self.name))
    }

    /// Starts the process; its stdout and stderr go to its log, after a line marking the start.
    pub fn start(&mut self) -> Result<()> {
        use std::io::Write as _;
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .with_context(|| format!("opening {}", self.log_path().display()))?;
        writeln!(
            log,
            "===== faults: start #{} of {} at {} =====",
            self.starts,
            self.name,
            chrono::Utc::now().to_rfc3339()
        )?;
        let mut command = self.env.command(self.binary);
        command
            .envs(self.extra.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone()?)
            .stderr(log);
        self.child = Some(
            command
                .spawn()
                .with_context(|| format!("starting {}", self.binary))?,
        );
        Ok(())
    }

    /// SIGKILL, and waits until the process is gone.
    pub async fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.start_kill().ok();
            child.wait().await?;
        }
        Ok(())
    }

    /// SIGTERM (a graceful drain), SIGKILL after `grace`.
    pub async fn stop(&mut self, grace: Duration) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Some(pid) = child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            child.start_kill().ok();
            child.wait().await?;
        }
        Ok(())
    }

    /// Fails if the process exited on its own (it should run until a fault or the end kills it).
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(child) = self.child.as_mut() {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                bail!("{} exited on its own: {status}", self.name);
            }
        }
        Ok(())
    }
}

/// Waits until `GET {base}/health` answers 200.
pub async fn wait_healthy(client: &reqwest::Client, base: &str, timeout: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(response) = client.get(format!("{base}/health")).send().await {
            if response.status().is_success() {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the api did not answer /health within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The last `lines` lines of a log file, each indented.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    all[start..]
        .iter()
        .map(|line| format!("    {line}\n"))
        .collect()
}

/// How many lines of a log file contain `needle`.
pub fn count_lines(path: &Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains(needle))
        .count()
}
