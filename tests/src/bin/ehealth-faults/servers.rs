//! The suite's own servers: a PostgreSQL cluster made with `initdb` and a RabbitMQ node, on free ports, with
//! their data in the run's work directory. Crashing them never touches the machine's shared services; both
//! are torn down when dropped, even on an error or Ctrl-C.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
use tokio::process::Command;

/// A TCP port on 127.0.0.1 that nothing listens on right now, and that no earlier call of this run handed
/// out: the probe's port is free again once it returns, and nothing binds it until its server starts, so
/// the kernel could give the same port to two probes (the PostgreSQL and RabbitMQ ports are taken at the
/// same time, a scenario's api, object store and workers one after the other).
pub fn free_port() -> Result<u16> {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for _ in 0..100 {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding a probe port")?;
        let port = listener.local_addr()?.port();
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return Ok(port);
        }
    }
    bail!("no free port that this run has not handed out already")
}

/// Runs `command` to completion within `timeout`; its stdout, or an error that carries its output.
pub async fn run(command: &mut Command, what: &str, timeout: Duration) -> Result<String> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(timeout, command.output())
        .await
        .with_context(|| format!("{what}: no answer within {timeout:?}"))?
        .with_context(|| format!("{what}: could not run"))?;
    if !output.status.success() {
        bail!(
            "{what}: {}\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// True when this process runs as root (then PostgreSQL's tools run as the `postgres` user).
fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// The directory of a tool: where `PATH` has it, else the first of `fallbacks` (globs are not expanded, so
/// callers list candidates) that contains it.
fn tool_dir(tool: &str, fallbacks: &[PathBuf]) -> Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    fallbacks
        .iter()
        .chain(on_path.iter())
        .find(|dir| dir.join(tool).is_file())
        .map(|dir| std::fs::canonicalize(dir.join(tool)))
        .transpose()?
        .and_then(|path| path.parent().map(Path::to_path_buf))
        .with_context(|| format!("{tool} not found on PATH nor in {fallbacks:?}"))
}

/// `/usr/lib/postgresql/<version>/bin`, newest first.
fn postgres_bin_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.0));
    dirs.into_iter().map(|(_, dir)| dir).collect()
}

/// A PostgreSQL cluster of the suite's own.
pub struct Postgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres_user: bool,
    running: bool,
}

impl Postgres {
    /// Makes a cluster in `work/pg` (trust authentication, fsync off) and starts it.
    pub async fn create(work: &Path) -> Result<Self> {
        let mut fallbacks = vec![];
        if let Some(dir) = std::env::var_os("PG_BIN_DIR") {
            fallbacks.push(PathBuf::from(dir));
        }
        fallbacks.extend(postgres_bin_dirs());
        let bin = tool_dir("pg_ctl", &fallbacks)?;
        let dir = work.join("pg");
        std::fs::create_dir_all(&dir)?;
        let as_postgres_user = is_root();
        if as_postgres_user {
            run(
                Command::new("chown").arg("postgres:postgres").arg(&dir),
                "chown of the cluster directory",
                Duration::from_secs(10),
            )
            .await?;
        }
        let mut pg = Self {
            bin,
            dir,
            port: free_port()?,
            as_postgres_user,
            running: false,
        };
        let data = pg.dir.join("data");
        run(
            pg.tool("initdb").arg("-D").arg(&data).args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ]),
            "initdb",
            Duration::from_secs(120),
        )
        .await?;
        pg.start().await?;
        Ok(pg)
    }

    /// A PostgreSQL tool, run as the `postgres` user when this process is root (initdb refuses root).
    fn tool(&self, name: &str) -> Command {
        let path = self.bin.join(name);
        let mut command = if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        command.current_dir(&self.dir).process_group(0);
        command
    }

    /// Starts the server and waits until it accepts connections.
    pub async fn start(&mut self) -> Result<()> {
        // fsync off is safe here: a crash of the server (not of the machine) keeps the kernel's page cache.
        // synchronous_commit stays on: with it off, a crash loses commits the clients were told about.
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off",
            self.port,
            self.dir.display()
        );
        run(
            self.tool("pg_ctl")
                .arg("-D")
                .arg(self.dir.join("data"))
                .arg("-l")
                .arg(self.dir.join("server.log"))
                .args(["-o", &options, "-w", "-t", "120", "start"]),
            "pg_ctl start",
            Duration::from_secs(150),
        )
        .await?;
        self.running = true;
        Ok(())
    }

    /// Stops the server the hard way (`-m immediate`: no checkpoint, clients cut off): a crash.
    pub async fn crash(&mut self) -> Result<()> {
        run(
            self.tool("pg_ctl")
                .arg("-D")
                .arg(self.dir.join("data"))
                .args(["-m", "immediate", "-w", "stop"]),
            "pg_ctl stop",
            Duration::from_secs(60),
        )
        .await?;
        self.running = false;
        Ok(())
    }

    /// Whether the server was left running.
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// The URL of database `db` on this cluster for `role` (trust authentication: no password).
    pub fn url(&self, role: &str, db: &str) -> String {
        format!("postgres://{role}@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if !self.running {
            return;
        }
        let pg_ctl = self.bin.join("pg_ctl");
        let mut command = if self.as_postgres_user {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(pg_ctl);
            c
        } else {
            std::process::Command::new(pg_ctl)
        };
        let stopped = command
            .current_dir(&self.dir)
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !stopped.is_ok_and(|s| s.success()) {
            eprintln!(
                "faults: could not stop the suite's PostgreSQL in {}",
                self.dir.display()
            );
        }
    }
}

/// A RabbitMQ node of the suite's own (`faults-<pid>@localhost`), no plugins, listening on 127.0.0.1 only.
pub struct Rabbit {
    bin: PathBuf,
    dir: PathBuf,
    node: String,
    port: u16,
    dist_port: u16,
    running: bool,
}

impl Rabbit {
    /// Writes the node's configuration into `work/rabbit` and starts it.
    pub async fn create(work: &Path) -> Result<Self> {
        // The scripts in /usr/lib/rabbitmq/bin run as the caller; Debian's /usr/sbin wrappers would switch to
        // the rabbitmq user and its cookie.
        let bin = tool_dir("rabbitmq-server", &[PathBuf::from("/usr/lib/rabbitmq/bin")])?;
        let dir = work.join("rabbit");
        for sub in ["home", "mnesia", "log"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let (port, dist_port) = (free_port()?, free_port()?);
        std::fs::write(dir.join("enabled_plugins"), "[].\n")?;
        std::fs::write(
            dir.join("rabbitmq.conf"),
            format!(
                "listeners.tcp.local = 127.0.0.1:{port}\nloopback_users.guest = true\n\
                 vm_memory_high_watermark.relative = 0.4\ndisk_free_limit.absolute = 50MB\n"
            ),
        )?;
        std::fs::write(dir.join("advanced.config"), "[].\n")?;
        std::fs::write(dir.join("rabbitmq-env.conf"), "")?;
        let mut rabbit = Self {
            bin,
            dir,
            node: format!("faults-{}@localhost", std::process::id()),
            port,
            dist_port,
            running: false,
        };
        rabbit.start().await?;
        Ok(rabbit)
    }

    fn env(&self, command: &mut Command) {
        let d = &self.dir;
        command
            .env("HOME", d.join("home"))
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_PID_FILE", d.join("pid"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", d.join("advanced.config"))
            .env("RABBITMQ_CONF_ENV_FILE", d.join("rabbitmq-env.conf"))
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}",
            )
            .current_dir(d)
            .process_group(0);
    }

    fn ctl(&self) -> Command {
        let mut command = Command::new(self.bin.join("rabbitmqctl"));
        self.env(&mut command);
        command.args(["-n", &self.node]);
        command
    }

    /// Whether the node was left running.
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// `amqp://guest:guest@127.0.0.1:<port>/%2f`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Starts the node and waits until RabbitMQ runs on it.
    pub async fn start(&mut self) -> Result<()> {
        let _ = std::fs::remove_file(self.dir.join("pid"));
        let mut server = Command::new(self.bin.join("rabbitmq-server"));
        self.env(&mut server);
        run(
            server.arg("-detached"),
            "rabbitmq-server -detached",
            Duration::from_secs(30),
        )
        .await?;
        self.running = true;
        run(
            self.ctl()
                .args(["wait", "--timeout", "120"])
                .arg(self.dir.join("pid")),
            "rabbitmqctl wait",
            Duration::from_secs(150),
        )
        .await?;
        Ok(())
    }

    fn pid(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("pid"))
            .ok()
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    }

    /// Kills the node's VM with SIGKILL (a crash: no connection is closed cleanly) and waits until it is gone.
    pub async fn crash(&mut self) -> Result<()> {
        let pid = self.pid().context("the RabbitMQ node has no pid file")?;
        run(
            Command::new("kill").args(["-9", &pid]),
            "kill -9 of the RabbitMQ node",
            Duration::from_secs(10),
        )
        .await?;
        self.running = false;
        let proc_dir = PathBuf::from("/proc").join(&pid);
        for _ in 0..100 {
            if !proc_dir.exists() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the RabbitMQ node {pid} did not exit after SIGKILL")
    }

    /// Raises (`true`) or clears the memory alarm, which blocks every publishing connection.
    pub async fn memory_alarm(&self, on: bool) -> Result<()> {
        let watermark = if on { "0.0000001" } else { "0.4" };
        run(
            self.ctl().args(["set_vm_memory_high_watermark", watermark]),
            "rabbitmqctl set_vm_memory_high_watermark",
            Duration::from_secs(30),
        )
        .await
        .map(drop)
    }
}

impl Drop for Rabbit {
    fn drop(&mut self) {
        if !self.running {
            return;
        }
        match self.pid() {
            Some(pid) => {
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid])
                    .status();
            }
            None => eprintln!(
                "faults: the suite's RabbitMQ node {} has no pid file; it may still run",
                self.node
            ),
        }
    }
}
