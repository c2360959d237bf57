//! Servers run as local processes: a fresh temp dir, a free loopback port, the
//! process (and everything it forks) in its own process group, killed on drop.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rustix::process::Signal;
use std::os::unix::process::CommandExt;
use tempfile::TempDir;

use crate::probe::{ProbeAuth, probe};
use crate::process::{self, Ids};
use crate::{Error, Service};

/// Credentials the local servers are set up with.
pub(crate) const POSTGRES_USER: &str = "postgres";
pub(crate) const POSTGRES_PASSWORD: &str = "postgres";
pub(crate) const POSTGRES_DB: &str = "postgres";
pub(crate) const MYSQL_USER: &str = "root";
pub(crate) const MYSQL_PASSWORD: &str = "fogg";
pub(crate) const MYSQL_DB: &str = "fogg";
pub(crate) const AMQP_USER: &str = "guest";
pub(crate) const AMQP_PASSWORD: &str = "guest";

/// How many times a first start tries a new port when the server finds its port taken.
const PORT_ATTEMPTS: u32 = 5;
/// How long a graceful stop may take before the server is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// Which binaries run a service here.
#[derive(Debug, Clone)]
pub(crate) enum Binaries {
    Redis(PathBuf),
    Postgres {
        postgres: PathBuf,
        initdb: PathBuf,
    },
    Mariadb {
        server: PathBuf,
        install_db: PathBuf,
    },
    Mongod(PathBuf),
    Secantus(PathBuf),
    Memcached(PathBuf),
    Rabbitmq {
        server: PathBuf,
        epmd: PathBuf,
    },
    Mosquitto(PathBuf),
}

impl Binaries {
    /// The binaries for `service`, or why there are none.
    pub(crate) fn find(service: Service) -> Result<Binaries, String> {
        let which = process::which;
        match service {
            Service::Redis => which("redis-server", &["/usr/bin"])
                .map(Binaries::Redis)
                .ok_or_else(|| "redis-server not found in PATH".to_owned()),
            Service::Postgres => find_postgres(),
            Service::Mysql => {
                let server = which("mariadbd", &[]).or_else(|| which("mysqld", &[]));
                let install_db =
                    which("mariadb-install-db", &[]).or_else(|| which("mysql_install_db", &[]));
                match (server, install_db) {
                    (Some(server), Some(install_db)) => {
                        Ok(Binaries::Mariadb { server, install_db })
                    }
                    (None, _) => Err("mariadbd (or mysqld) not found in PATH".to_owned()),
                    (_, None) => {
                        Err("mariadb-install-db (or mysql_install_db) not found in PATH".to_owned())
                    }
                }
            }
            Service::Mongodb => {
                if let Some(mongod) = which("mongod", &[]) {
                    return Ok(Binaries::Mongod(mongod));
                }
                let mut dirs = Vec::new();
                if let Some(home) = std::env::var_os("CARGO_HOME") {
                    dirs.push(PathBuf::from(home).join("bin"));
                }
                if let Some(home) = std::env::var_os("HOME") {
                    dirs.push(PathBuf::from(home).join(".cargo/bin"));
                }
                let dirs: Vec<&str> = dirs.iter().filter_map(|d| d.to_str()).collect();
                which("secantusd-rs", &dirs)
                    .map(Binaries::Secantus)
                    .ok_or_else(|| {
                        "neither mongod nor secantusd-rs found in PATH or ~/.cargo/bin".to_owned()
                    })
            }
            Service::Memcached => which("memcached", &["/usr/bin"])
                .map(Binaries::Memcached)
                .ok_or_else(|| "memcached not found in PATH".to_owned()),
            Service::Rabbitmq => {
                // Debian's /usr/sbin/rabbitmq-server is a wrapper that switches to the
                // rabbitmq user and its fixed directories; the real script is here.
                let debian = PathBuf::from("/usr/lib/rabbitmq/bin/rabbitmq-server");
                let server = if process::is_executable(&debian) {
                    Some(debian)
                } else {
                    which("rabbitmq-server", &[])
                };
                let epmd = which("epmd", &["/usr/lib/erlang/bin"]);
                match (server, epmd) {
                    (Some(server), Some(epmd)) => Ok(Binaries::Rabbitmq { server, epmd }),
                    (None, _) => Err("rabbitmq-server not found".to_owned()),
                    (_, None) => Err("epmd (Erlang) not found in PATH".to_owned()),
                }
            }
            Service::Mosquitto => which("mosquitto", &[])
                .map(Binaries::Mosquitto)
                .ok_or_else(|| "mosquitto not found in PATH".to_owned()),
        }
    }

    /// Servers that refuse to run as root run as an unprivileged user under root.
    fn needs_unprivileged(&self) -> bool {
        matches!(self, Binaries::Postgres { .. } | Binaries::Mariadb { .. })
    }

    fn program(&self) -> &Path {
        match self {
            Binaries::Redis(p)
            | Binaries::Mongod(p)
            | Binaries::Secantus(p)
            | Binaries::Memcached(p)
            | Binaries::Mosquitto(p) => p,
            Binaries::Postgres { postgres, .. } => postgres,
            Binaries::Mariadb { server, .. } => server,
            Binaries::Rabbitmq { server, .. } => server,
        }
    }

    fn stop_signal(&self) -> Signal {
        match self {
            // SIGTERM is "smart" shutdown: it waits for every client to leave.
            Binaries::Postgres { .. } => Signal::INT,
            _ => Signal::TERM,
        }
    }
}

/// `postgres` and `initdb` from one directory: next to `postgres` in PATH, else the
/// newest /usr/lib/postgresql/*/bin (Debian keeps them off PATH).
fn find_postgres() -> Result<Binaries, String> {
    let mut dirs = Vec::new();
    if let Some(postgres) = process::which("postgres", &[])
        && let Ok(real) = std::fs::canonicalize(postgres)
        && let Some(dir) = real.parent()
    {
        dirs.push(dir.to_path_buf());
    }
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<(u32, PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let v = e.file_name().to_str()?.parse::<u32>().ok()?;
                Some((v, e.path().join("bin")))
            })
            .collect();
        versions.sort_by_key(|v| std::cmp::Reverse(v.0));
        dirs.extend(versions.into_iter().map(|(_, d)| d));
    }
    for dir in dirs {
        let (postgres, initdb) = (dir.join("postgres"), dir.join("initdb"));
        if process::is_executable(&postgres) && process::is_executable(&initdb) {
            return Ok(Binaries::Postgres { postgres, initdb });
        }
    }
    Err("postgres + initdb not found in PATH or /usr/lib/postgresql/*/bin".to_owned())
}

/// A failed launch, and whether it failed because its port was taken (worth a retry on
/// another port).
struct LaunchError {
    port_in_use: bool,
    /// The previous instance on this data dir is not quite gone (PostgreSQL
    /// finds its shared memory still attached just after a SIGKILL): worth
    /// a retry in a moment.
    predecessor_lingers: bool,
    error: Error,
}

pub(crate) struct LocalServer {
    service: Service,
    bins: Binaries,
    dir: Option<TempDir>,
    root: PathBuf,
    log_path: PathBuf,
    port: u16,
    run_as: Option<Ids>,
    child: Option<Child>,
    start_timeout: Duration,
    /// RabbitMQ: our own epmd, its port, the node's distribution port and name.
    epmd: Option<Child>,
    epmd_port: u16,
    dist_port: u16,
    node_name: String,
}

static INSTANCE: AtomicU32 = AtomicU32::new(0);

fn start_timeout(service: Service) -> Duration {
    if let Some(secs) = std::env::var("FOGG_TEST_START_TIMEOUT")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        return Duration::from_secs(secs);
    }
    Duration::from_secs(match service {
        Service::Redis | Service::Memcached | Service::Mosquitto => 30,
        Service::Postgres | Service::Mongodb => 60,
        Service::Mysql => 90,
        Service::Rabbitmq => 180,
    })
}

impl LocalServer {
    /// Set up a fresh instance in a new temp dir and start it on a free port.
    pub(crate) async fn start(service: Service, bins: Binaries) -> Result<LocalServer, Error> {
        Self::start_with_ports(service, bins, Vec::new()).await
    }

    /// [`Self::start`], trying the `first` ports before free ones (tests of the retry).
    async fn start_with_ports(
        service: Service,
        bins: Binaries,
        mut first: Vec<u16>,
    ) -> Result<LocalServer, Error> {
        let run_as = if bins.needs_unprivileged() {
            match process::unprivileged() {
                None => None,
                Some(Ok(ids)) => Some(ids),
                Some(Err(reason)) => {
                    return Err(Error::io(
                        service,
                        "choosing a user to run the server as",
                        std::io::Error::other(reason),
                    ));
                }
            }
        } else {
            None
        };
        let base = match std::env::var_os("FOGG_TEST_TMPDIR") {
            Some(dir) => PathBuf::from(dir),
            // An unprivileged server must reach its dir: root's TMPDIR may be private.
            None if run_as.is_some() => PathBuf::from("/tmp"),
            None => std::env::temp_dir(),
        };
        let dir = tempfile::Builder::new()
            .prefix(&format!("fogg-test-{service}-"))
            .tempdir_in(&base)
            .map_err(|e| {
                Error::io(
                    service,
                    format!("creating a temp dir in {}", base.display()),
                    e,
                )
            })?;
        let root = dir.path().to_path_buf();
        let log_path = root.join("server.log");
        File::create(&log_path)
            .map_err(|e| Error::io(service, format!("creating {}", log_path.display()), e))?;
        if let Some(ids) = run_as {
            process::chown_tree(&root, ids)
                .map_err(|e| Error::io(service, format!("chown {}", root.display()), e))?;
        }
        let n = INSTANCE.fetch_add(1, Ordering::Relaxed);
        let mut server = LocalServer {
            service,
            bins,
            dir: Some(dir),
            root,
            log_path,
            port: 0,
            run_as,
            child: None,
            start_timeout: start_timeout(service),
            epmd: None,
            epmd_port: 0,
            dist_port: 0,
            node_name: format!("fogg-{}-{n}@localhost", std::process::id()),
        };
        server.init().await?;
        let mut attempt = 1;
        first.reverse();
        loop {
            let (port, picked) = match first.pop() {
                Some(port) => (port, false),
                None => (server.pick_port()?, true),
            };
            server.port = port;
            match server.launch().await {
                Ok(()) => return Ok(server),
                Err(e) if e.port_in_use && attempt < PORT_ATTEMPTS => {
                    tracing::warn!(
                        service = %service,
                        port = server.port,
                        attempt,
                        "port taken while starting, retrying on another port"
                    );
                    if picked {
                        process::release_port(server.port);
                    }
                    server.port = 0;
                    attempt += 1;
                }
                Err(e) => return Err(e.error),
            }
        }
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub(crate) fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub(crate) fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_path, 0, lines)
    }

    fn pick_port(&self) -> Result<u16, Error> {
        process::pick_port().map_err(|e| Error::io(self.service, "picking a free port", e))
    }

    fn start_error(&self, what: impl Into<String>, reason: impl Into<String>, from: u64) -> Error {
        Error::Start {
            service: self.service,
            what: what.into(),
            reason: reason.into(),
            log: self.log_path.clone(),
            log_tail: tail(&self.log_path, from, 30),
        }
    }

    fn io_error<C: Into<String>>(
        &self,
        context: C,
    ) -> impl FnOnce(std::io::Error) -> Error + use<C> {
        let service = self.service;
        let context = context.into();
        move |e| Error::io(service, context, e)
    }

    /// Append a marker line to the log; returns the offset where the new output starts.
    fn log_marker(&self, line: &str) -> Result<(File, u64), Error> {
        let mut log = OpenOptions::new()
            .append(true)
            .open(&self.log_path)
            .map_err(self.io_error(format!("opening {}", self.log_path.display())))?;
        let offset = log.seek(SeekFrom::End(0)).unwrap_or(0);
        let _ = writeln!(log, "=== fogg-testcontainers: {line} ===");
        Ok((log, offset))
    }

    /// A command for `program`, as the unprivileged user when there is one, in the temp
    /// dir, output to the log, in a process group of its own.
    fn command(&self, program: &Path, log: &File) -> Result<Command, Error> {
        let mut cmd = match self.run_as {
            Some(ids) => {
                let setpriv =
                    process::which("setpriv", &["/usr/bin", "/bin"]).ok_or_else(|| {
                        Error::io(
                            self.service,
                            "running the server as an unprivileged user",
                            std::io::Error::other("setpriv (util-linux) not found"),
                        )
                    })?;
                let mut cmd = Command::new(setpriv);
                cmd.arg(format!("--reuid={}", ids.uid))
                    .arg(format!("--regid={}", ids.gid))
                    .arg("--clear-groups")
                    .arg("--")
                    .arg(program);
                cmd
            }
            None => Command::new(program),
        };
        let out = log
            .try_clone()
            .map_err(self.io_error("duplicating the log handle"))?;
        let err = log
            .try_clone()
            .map_err(self.io_error("duplicating the log handle"))?;
        cmd.current_dir(&self.root)
            .env("HOME", &self.root)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        Ok(cmd)
    }

    /// Run a set-up command to completion (initdb, mariadb-install-db).
    async fn run_setup(&self, what: &str, program: &Path, args: &[String]) -> Result<(), Error> {
        let (log, offset) =
            self.log_marker(&format!("{what}: {} {}", program.display(), args.join(" ")))?;
        let mut cmd = self.command(program, &log)?;
        cmd.args(args);
        tracing::debug!(service = %self.service, ?cmd, "set-up step");
        let started = Instant::now();
        let status = tokio::task::spawn_blocking(move || cmd.status())
            .await
            .map_err(|e| self.start_error(what, format!("set-up task failed: {e}"), offset))?
            .map_err(|e| {
                self.start_error(
                    what,
                    format!("could not run {}: {e}", program.display()),
                    offset,
                )
            })?;
        if !status.success() {
            return Err(self.start_error(what, format!("exited with {status}"), offset));
        }
        tracing::debug!(service = %self.service, step = what, elapsed = ?started.elapsed(), "set-up done");
        Ok(())
    }

    /// Write a file the server reads (owned by the server's user).
    fn write_file(&self, name: &str, contents: &str) -> Result<PathBuf, Error> {
        let path = self.root.join(name);
        std::fs::write(&path, contents)
            .map_err(self.io_error(format!("writing {}", path.display())))?;
        if let Some(ids) = self.run_as {
            process::chown_tree(&path, ids)
                .map_err(self.io_error(format!("chown {}", path.display())))?;
        }
        Ok(path)
    }

    fn mkdir(&self, name: &str) -> Result<PathBuf, Error> {
        let path = self.root.join(name);
        std::fs::create_dir_all(&path)
            .map_err(self.io_error(format!("creating {}", path.display())))?;
        if let Some(ids) = self.run_as {
            process::chown_tree(&path, ids)
                .map_err(self.io_error(format!("chown {}", path.display())))?;
        }
        Ok(path)
    }

    fn path_arg(&self, name: &str) -> String {
        self.root.join(name).display().to_string()
    }

    /// One-time, port-independent set-up of the data dir.
    async fn init(&mut self) -> Result<(), Error> {
        match self.bins.clone() {
            Binaries::Redis(_)
            | Binaries::Mongod(_)
            | Binaries::Secantus(_)
            | Binaries::Mosquitto(_) => {
                self.mkdir("data")?;
                if matches!(self.bins, Binaries::Secantus(_)) {
                    // An explicit (empty) config file turns off its config auto-discovery.
                    self.write_file("secantusd.toml", "")?;
                }
                Ok(())
            }
            Binaries::Memcached(_) => Ok(()),
            Binaries::Postgres { initdb, .. } => {
                let pwfile = self.write_file("pwfile", &format!("{POSTGRES_PASSWORD}\n"))?;
                let args = [
                    "-D".to_owned(),
                    self.path_arg("pgdata"),
                    "-U".to_owned(),
                    POSTGRES_USER.to_owned(),
                    format!("--pwfile={}", pwfile.display()),
                    "--auth-host=scram-sha-256".to_owned(),
                    "--auth-local=trust".to_owned(),
                    "--encoding=UTF8".to_owned(),
                    "--locale=C".to_owned(),
                    "--no-sync".to_owned(),
                ];
                self.run_setup("initdb", &initdb, &args).await
            }
            Binaries::Mariadb { install_db, .. } => {
                // Its own temporary directory: a shared /tmp may be cleaned
                // under a running server (seen: "Error on delete of
                // '/tmp/#sql-temptable-...'" failing a query).
                self.mkdir("mysql-tmp")?;
                self.write_file(
                    "init.sql",
                    &format!(
                        "CREATE USER IF NOT EXISTS '{MYSQL_USER}'@'%' IDENTIFIED BY '{MYSQL_PASSWORD}';\n\
                         ALTER USER '{MYSQL_USER}'@'%' IDENTIFIED BY '{MYSQL_PASSWORD}';\n\
                         GRANT ALL PRIVILEGES ON *.* TO '{MYSQL_USER}'@'%' WITH GRANT OPTION;\n\
                         CREATE DATABASE IF NOT EXISTS `{MYSQL_DB}`;\n"
                    ),
                )?;
                let args = [
                    "--no-defaults".to_owned(),
                    format!("--datadir={}", self.path_arg("mysql")),
                    "--skip-test-db".to_owned(),
                    "--innodb-log-file-size=16M".to_owned(),
                ];
                // mariadb-install-db fails now and then under load with
                // nothing in its log (seen about 1 run in 11 here); a fresh
                // data directory and a second try get past it.
                let mut attempt = 1;
                loop {
                    match self
                        .run_setup("mariadb-install-db", &install_db, &args)
                        .await
                    {
                        Ok(()) => break Ok(()),
                        Err(e) if attempt < 3 => {
                            tracing::warn!(service = %self.service, attempt, error = %e, "mariadb-install-db failed; retrying");
                            let _ = std::fs::remove_dir_all(self.root.join("mysql"));
                            attempt += 1;
                        }
                        Err(e) => break Err(e),
                    }
                }
            }
            Binaries::Rabbitmq { epmd, .. } => {
                self.mkdir("mnesia")?;
                self.mkdir("log")?;
                self.write_file("enabled_plugins", "[].\n")?;
                self.write_file(
                    "rabbitmq.conf",
                    "disk_free_limit.absolute = 1MB\nlog.console = true\nlog.file = false\n",
                )?;
                self.start_epmd(&epmd).await
            }
        }
    }

    /// RabbitMQ: an epmd of our own on a free port, so instances and the machine's own
    /// epmd (port 4369) never meet; killed with the instance.
    async fn start_epmd(&mut self, epmd: &Path) -> Result<(), Error> {
        for attempt in 1..=PORT_ATTEMPTS {
            let port = self.pick_port()?;
            let (log, offset) = self.log_marker(&format!("epmd on 127.0.0.1:{port}"))?;
            let mut cmd = self.command(epmd, &log)?;
            cmd.arg("-port")
                .arg(port.to_string())
                .env("ERL_EPMD_ADDRESS", "127.0.0.1");
            let mut child = cmd
                .spawn()
                .map_err(self.io_error(format!("running {}", epmd.display())))?;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    process::release_port(port);
                    if attempt == PORT_ATTEMPTS {
                        return Err(self.start_error(
                            "epmd",
                            format!("exited with {status}"),
                            offset,
                        ));
                    }
                    break;
                }
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                    && process::port_owned_by_group(child.id(), port) != Some(false)
                {
                    self.epmd_port = port;
                    self.epmd = Some(child);
                    return Ok(());
                }
                if Instant::now() > deadline {
                    let _ = process::signal_group(child.id(), Signal::KILL);
                    let _ = child.wait();
                    return Err(self.start_error("epmd", "did not listen within 10 s", offset));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Err(self.start_error("epmd", "no free port", 0))
    }

    /// The command that runs the server on `self.port`.
    fn server_command(&mut self, log: &File) -> Result<Command, Error> {
        let port = self.port.to_string();
        let root_is_us = rustix::process::geteuid().is_root();
        let bins = self.bins.clone();
        let mut cmd = self.command(bins.program(), log)?;
        match bins {
            Binaries::Redis(_) => {
                cmd.args(["--port", &port, "--bind", "127.0.0.1", "--dir"])
                    .arg(self.root.join("data"))
                    .args([
                        "--appendonly",
                        "yes",
                        "--protected-mode",
                        "no",
                        "--save",
                        "3600 1",
                    ]);
            }
            Binaries::Postgres { .. } => {
                cmd.arg("-D")
                    .arg(self.root.join("pgdata"))
                    .args(["-p", &port, "-c", "listen_addresses=127.0.0.1", "-c"])
                    .arg(format!("unix_socket_directories={}", self.root.display()))
                    .args(["-c", "fsync=off", "-c", "shared_buffers=32MB"]);
            }
            Binaries::Mariadb { .. } => {
                // --no-defaults must come first: ignore /etc/mysql and ~/.my.cnf.
                cmd.arg("--no-defaults")
                    .arg(format!("--datadir={}", self.path_arg("mysql")))
                    .arg(format!("--port={port}"))
                    .arg("--bind-address=127.0.0.1")
                    .arg(format!("--socket={}", self.path_arg("mysqld.sock")))
                    .arg(format!("--pid-file={}", self.path_arg("mysqld.pid")))
                    .arg(format!("--tmpdir={}", self.path_arg("mysql-tmp")))
                    .arg(format!("--init-file={}", self.path_arg("init.sql")))
                    .args([
                        "--skip-name-resolve",
                        "--skip-log-bin",
                        "--innodb-log-file-size=16M",
                        "--innodb-buffer-pool-size=32M",
                        "--innodb-flush-log-at-trx-commit=2",
                        "--character-set-server=utf8mb4",
                    ]);
            }
            Binaries::Mongod(_) => {
                cmd.arg("--dbpath")
                    .arg(self.root.join("data"))
                    .args([
                        "--port",
                        &port,
                        "--bind_ip",
                        "127.0.0.1",
                        "--unixSocketPrefix",
                    ])
                    .arg(&self.root)
                    .args(["--wiredTigerCacheSizeGB", "0.25"]);
            }
            Binaries::Secantus(_) => {
                cmd.arg("--config")
                    .arg(self.root.join("secantusd.toml"))
                    .args(["--host", "127.0.0.1", "--port", &port, "--storage-path"])
                    .arg(self.root.join("data"))
                    .args(["--cache-size", "64M", "--log-file-max", "16MB"]);
            }
            Binaries::Memcached(_) => {
                cmd.args(["-l", "127.0.0.1", "-p", &port, "-U", "0", "-m", "64"]);
                if root_is_us {
                    cmd.args(["-u", "root"]);
                }
            }
            Binaries::Rabbitmq { .. } => {
                if self.dist_port != 0 {
                    process::release_port(self.dist_port);
                }
                self.dist_port = self.pick_port()?;
                cmd.env("ERL_EPMD_PORT", self.epmd_port.to_string())
                    .env(
                        "RABBITMQ_CONF_ENV_FILE",
                        self.root.join("rabbitmq-env.conf"),
                    )
                    .env("RABBITMQ_NODENAME", &self.node_name)
                    .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
                    .env("RABBITMQ_NODE_PORT", &port)
                    .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
                    .env("RABBITMQ_MNESIA_BASE", self.root.join("mnesia"))
                    .env("RABBITMQ_LOG_BASE", self.root.join("log"))
                    .env("RABBITMQ_LOGS", "-")
                    .env(
                        "RABBITMQ_ENABLED_PLUGINS_FILE",
                        self.root.join("enabled_plugins"),
                    )
                    .env("RABBITMQ_CONFIG_FILE", self.root.join("rabbitmq.conf"))
                    .env(
                        "RABBITMQ_ADVANCED_CONFIG_FILE",
                        self.root.join("advanced.config"),
                    )
                    .env("RABBITMQ_PID_FILE", self.root.join("rabbitmq.pid"))
                    .env(
                        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                        "-kernel inet_dist_use_interface {127,0,0,1}",
                    );
            }
            Binaries::Mosquitto(_) => {
                let mut conf = format!(
                    "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
                     persistence_location {}/\nlog_dest stderr\n",
                    self.path_arg("data")
                );
                if root_is_us {
                    // Else it switches to the `mosquitto` user, who cannot write here.
                    conf.push_str("user root\n");
                }
                let conf = self.write_file("mosquitto.conf", &conf)?;
                cmd.arg("-c").arg(conf);
            }
        }
        Ok(cmd)
    }

    fn probe_auth(&self) -> ProbeAuth {
        match self.service {
            Service::Postgres => ProbeAuth {
                user: Some(POSTGRES_USER.to_owned()),
                database: Some(POSTGRES_DB.to_owned()),
            },
            _ => ProbeAuth::default(),
        }
    }

    /// Spawn the server on `self.port` and wait until it answers its protocol.
    async fn launch(&mut self) -> Result<(), LaunchError> {
        let fail = |error| LaunchError {
            port_in_use: false,
            predecessor_lingers: false,
            error,
        };
        let (log, offset) = self
            .log_marker(&format!("starting on 127.0.0.1:{}", self.port))
            .map_err(fail)?;
        let mut cmd = self.server_command(&log).map_err(fail)?;
        tracing::debug!(service = %self.service, port = self.port, ?cmd, "starting");
        let started = Instant::now();
        let child = cmd.spawn().map_err(|e| {
            fail(self.start_error(
                "start",
                format!("could not run {:?}: {e}", cmd.get_program()),
                offset,
            ))
        })?;
        let pgid = child.id();
        self.child = Some(child);
        let what = format!("start on 127.0.0.1:{}", self.port);
        let deadline = started + self.start_timeout;
        let auth = self.probe_auth();
        let mut last: String;
        let mut foreign_since: Option<Instant> = None;
        let mut delay = Duration::from_millis(25);
        loop {
            let exited = match self.child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => Some(status.to_string()),
                Some(Err(e)) => Some(format!("could not be waited for: {e}")),
                _ => None,
            };
            if let Some(status) = exited {
                self.child = None;
                let _ = process::signal_group(pgid, Signal::KILL);
                let output = read_from(&self.log_path, offset);
                return Err(LaunchError {
                    port_in_use: looks_like_port_in_use(&output),
                    predecessor_lingers: output.contains("pre-existing shared memory block"),
                    error: self.start_error(
                        what,
                        format!("exited ({status}) before accepting connections"),
                        offset,
                    ),
                });
            }
            match probe(self.service, "127.0.0.1", self.port, &auth).await {
                Ok(()) => match process::port_owned_by_group(pgid, self.port) {
                    Some(false) => {
                        last = "the port answers, but another process holds it".to_owned();
                        let since = *foreign_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > Duration::from_secs(5) {
                            self.kill_child(false).await;
                            return Err(LaunchError {
                                port_in_use: true,
                                predecessor_lingers: false,
                                error: self.start_error(what, last, offset),
                            });
                        }
                    }
                    _ => {
                        tracing::info!(
                            service = %self.service,
                            port = self.port,
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            dir = %self.root.display(),
                            "local server ready"
                        );
                        return Ok(());
                    }
                },
                Err(reason) => last = reason,
            }
            if Instant::now() >= deadline {
                self.kill_child(false).await;
                return Err(fail(self.start_error(
                    what,
                    format!(
                        "not accepting connections after {:?} (last probe: {last})",
                        self.start_timeout
                    ),
                    offset,
                )));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(250));
        }
    }

    /// Stop gracefully (the server's own shutdown signal), killing it if it takes too long.
    pub(crate) async fn stop(&mut self) -> Result<(), Error> {
        let Some(pgid) = self.pid() else {
            return Ok(());
        };
        tracing::debug!(service = %self.service, port = self.port, "stopping");
        process::signal_group(pgid, self.bins.stop_signal())
            .map_err(self.io_error("signalling the server"))?;
        if !self.wait_exit(STOP_TIMEOUT).await {
            tracing::warn!(service = %self.service, "no exit within {STOP_TIMEOUT:?}; killing");
            self.kill_child(true).await;
        }
        self.child = None;
        self.wait_group_gone(pgid, true).await;
        let _ = self.log_marker("stopped");
        Ok(())
    }

    /// Kill at once (SIGKILL to the whole process group): a crash.
    pub(crate) async fn kill(&mut self) -> Result<(), Error> {
        self.kill_child(true).await;
        let _ = self.log_marker("killed");
        Ok(())
    }

    /// Start again after [`Self::stop`] / [`Self::kill`]: same port, same data.
    pub(crate) async fn restart(&mut self) -> Result<(), Error> {
        if self.child.is_some() {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while !process::port_is_free(self.port) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut attempt = 1;
        loop {
            match self.launch().await {
                Ok(()) => return Ok(()),
                // The port is ours to keep; only RabbitMQ's distribution port is re-picked.
                Err(e)
                    if e.port_in_use
                        && attempt < 3
                        && matches!(self.bins, Binaries::Rabbitmq { .. }) =>
                {
                    attempt += 1;
                }
                Err(e) if e.predecessor_lingers && attempt < 5 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e.error),
            }
        }
    }

    async fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.as_mut().map(Child::try_wait) {
                None | Some(Ok(Some(_))) | Some(Err(_)) => return true,
                Some(Ok(None)) => {}
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Wait until no process of the group is left and the port is closed (so a stopped
    /// server refuses connections, and a restart can bind the port again).
    async fn wait_group_gone(&self, pgid: u32, port_was_ours: bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while process::group_alive(pgid) {
            if Instant::now() >= deadline {
                tracing::warn!(service = %self.service, pgid, "processes left after 10 s; killing");
                let _ = process::signal_group(pgid, Signal::KILL);
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while port_was_ours && !process::port_is_free(self.port) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// SIGKILL the group and wait for it; `port_was_ours`: also wait for the port to close
    /// (not when the launch failed, where the port may be someone else's).
    async fn kill_child(&mut self, port_was_ours: bool) {
        let Some(pgid) = self.pid() else {
            return;
        };
        let _ = process::signal_group(pgid, Signal::KILL);
        self.wait_exit(Duration::from_secs(10)).await;
        self.child = None;
        self.wait_group_gone(pgid, port_was_ours).await;
    }
}

fn kill_and_reap(child: &mut Child) {
    let pgid = child.id();
    let _ = process::signal_group(pgid, Signal::KILL);
    let _ = child.wait();
    let deadline = Instant::now() + Duration::from_secs(5);
    while process::group_alive(pgid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
        if let Some(mut epmd) = self.epmd.take() {
            kill_and_reap(&mut epmd);
        }
        for port in [self.port, self.epmd_port, self.dist_port] {
            if port != 0 {
                process::release_port(port);
            }
        }
        let Some(dir) = self.dir.take() else {
            return;
        };
        if std::env::var("FOGG_TEST_KEEP_DIRS").is_ok_and(|v| !v.is_empty() && v != "0") {
            let path = dir.keep();
            eprintln!(
                "fogg-testcontainers: kept {} ({})",
                path.display(),
                self.service
            );
        } else if let Err(e) = dir.close() {
            tracing::warn!(service = %self.service, dir = %self.root.display(), "could not remove: {e}");
        }
    }
}

fn looks_like_port_in_use(output: &str) -> bool {
    let lower = output.to_ascii_lowercase();
    [
        "address already in use",
        "eaddrinuse",
        "address in use",
        "bind on tcp/ip port",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

fn read_from(path: &Path, offset: u64) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    if file.seek(SeekFrom::Start(offset)).is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The last `lines` lines of the log written since `offset`.
fn tail(path: &Path, offset: u64, lines: usize) -> String {
    let text = read_from(path, offset);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn talks_redis(port: u16) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
            return false;
        };
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").await.is_ok()
            && s.read_exact(&mut buf).await.is_ok()
            && &buf == b"+PONG\r\n"
    }

    #[tokio::test]
    async fn a_taken_port_is_retried_on_another_one() {
        let Ok(bins) = Binaries::find(Service::Redis) else {
            eprintln!("SKIPPED: no redis-server");
            return;
        };
        // Taken by a plain listener that never answers.
        let squatter = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let taken = squatter.local_addr().unwrap().port();
        let server = LocalServer::start_with_ports(Service::Redis, bins.clone(), vec![taken])
            .await
            .unwrap();
        assert_ne!(server.port(), taken);
        assert!(talks_redis(server.port()).await);
        assert!(
            server
                .log_tail(100)
                .contains(&format!("starting on 127.0.0.1:{taken}"))
        );

        // Taken by another Redis that answers the probe: must not be mistaken for ours.
        let other = LocalServer::start_with_ports(Service::Redis, bins, vec![server.port()])
            .await
            .unwrap();
        assert_ne!(other.port(), server.port());
        assert!(talks_redis(other.port()).await);
        drop(squatter);
    }

    #[test]
    fn recognises_port_in_use_messages() {
        for line in [
            "Warning: Could not create server TCP listening socket 127.0.0.1:6379: bind: Address already in use",
            "LOG:  could not bind IPv4 address \"127.0.0.1\": Address already in use",
            "[ERROR] Can't start server: Bind on TCP/IP port. Got error: 98: Address already in use",
            "failed to start listener: eaddrinuse",
            "Error: Address in use",
        ] {
            assert!(looks_like_port_in_use(line), "{line}");
        }
        assert!(!looks_like_port_in_use(
            "FATAL: data directory has wrong ownership"
        ));
    }
}
