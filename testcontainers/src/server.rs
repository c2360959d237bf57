//! [`TestServer`]: the guard a test holds while it uses a server.

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::local::{self, Binaries, LocalServer};
use crate::probe::{ProbeAuth, probe};
use crate::{Error, Service, url};

/// Where a [`TestServer`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// An existing server named by `FOGG_TEST_<SERVICE>_URL`; not owned, never stopped.
    Url,
    /// A Docker container started for this test.
    Docker,
    /// A local process started for this test, in a temp dir.
    Local,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Url => "an environment URL",
            Origin::Docker => "docker",
            Origin::Local => "a local process",
        })
    }
}

enum Inner {
    Url {
        var: &'static str,
    },
    Local(Box<LocalServer>),
    #[cfg(feature = "docker")]
    Docker(Box<crate::docker::DockerServer>),
}

/// A running server for a test. Dropping it stops the server (a local process is killed
/// and its temp dir removed; a container is removed); a server named by
/// `FOGG_TEST_<SERVICE>_URL` is left alone.
pub struct TestServer {
    service: Service,
    url: String,
    host: String,
    port: u16,
    user: Option<String>,
    password: Option<String>,
    database: Option<String>,
    inner: Inner,
}

impl fmt::Debug for TestServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestServer")
            .field("service", &self.service)
            .field("url", &self.url)
            .field("origin", &self.origin())
            .field("running", &self.is_running())
            .finish_non_exhaustive()
    }
}

impl TestServer {
    /// The service this server provides.
    pub fn service(&self) -> Service {
        self.service
    }

    /// A URL to connect to, with credentials and database where the service has them:
    /// `redis://127.0.0.1:PORT`, `postgres://postgres:postgres@127.0.0.1:PORT/postgres`,
    /// `mysql://root:fogg@127.0.0.1:PORT/fogg`, `mongodb://127.0.0.1:PORT`,
    /// `memcache://127.0.0.1:PORT`, `amqp://guest:guest@127.0.0.1:PORT/%2f`,
    /// `mqtt://127.0.0.1:PORT`. For a server from `FOGG_TEST_<SERVICE>_URL`, that URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Host to connect to (`127.0.0.1` for local servers).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Port to connect to. It stays the same across [`TestServer::stop`] and
    /// [`TestServer::start`].
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port`.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The user in the URL (a superuser for local PostgreSQL and MariaDB servers).
    pub fn username(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The password in the URL.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The database in the URL (`postgres` for PostgreSQL, `fogg` for MariaDB).
    pub fn database(&self) -> Option<&str> {
        self.database.as_deref()
    }

    /// Where the server came from.
    pub fn origin(&self) -> Origin {
        match self.inner {
            Inner::Url { .. } => Origin::Url,
            Inner::Local(_) => Origin::Local,
            #[cfg(feature = "docker")]
            Inner::Docker(_) => Origin::Docker,
        }
    }

    /// Whether the server is running (false between [`TestServer::stop`] and
    /// [`TestServer::start`]). A server from a URL is always taken as running.
    pub fn is_running(&self) -> bool {
        match &self.inner {
            Inner::Url { .. } => true,
            Inner::Local(l) => l.is_running(),
            #[cfg(feature = "docker")]
            Inner::Docker(d) => d.is_running(),
        }
    }

    /// The temp dir holding a local server's data, configuration and log.
    pub fn data_dir(&self) -> Option<&Path> {
        match &self.inner {
            Inner::Local(l) => Some(l.root()),
            _ => None,
        }
    }

    /// A local server's log file (stdout and stderr of every start, with marker lines).
    pub fn log_path(&self) -> Option<&Path> {
        match &self.inner {
            Inner::Local(l) => Some(l.log_path()),
            _ => None,
        }
    }

    /// The last `lines` lines of a local server's log (empty for other origins).
    pub fn log_tail(&self, lines: usize) -> String {
        match &self.inner {
            Inner::Local(l) => l.log_tail(lines),
            _ => String::new(),
        }
    }

    /// The process id of a running local server (the leader of its process group).
    pub fn pid(&self) -> Option<u32> {
        match &self.inner {
            Inner::Local(l) => l.pid(),
            _ => None,
        }
    }

    fn unsupported(&self, operation: &'static str) -> Error {
        let origin = match &self.inner {
            Inner::Url { var } => (*var).to_owned(),
            _ => self.origin().to_string(),
        };
        Error::Unsupported {
            service: self.service,
            operation,
            origin,
        }
    }

    /// Stop the server gracefully (an outage). Its port and data are kept for
    /// [`TestServer::start`]. Stopping a stopped server does nothing.
    ///
    /// Errors with [`Error::Unsupported`] for a server from `FOGG_TEST_<SERVICE>_URL`.
    pub async fn stop(&mut self) -> Result<(), Error> {
        match &mut self.inner {
            Inner::Url { .. } => Err(self.unsupported("stop")),
            Inner::Local(l) => l.stop().await,
            #[cfg(feature = "docker")]
            Inner::Docker(d) => d.stop().await,
        }
    }

    /// Kill the server at once (SIGKILL: a crash); unwritten data may be lost as in a
    /// real crash. [`TestServer::start`] brings it back.
    pub async fn kill(&mut self) -> Result<(), Error> {
        match &mut self.inner {
            Inner::Url { .. } => Err(self.unsupported("kill")),
            Inner::Local(l) => l.kill().await,
            #[cfg(feature = "docker")]
            Inner::Docker(d) => d.kill().await,
        }
    }

    /// Start a stopped server again on the same port with the same data, and wait until
    /// it accepts connections. Starting a running server does nothing.
    pub async fn start(&mut self) -> Result<(), Error> {
        match &mut self.inner {
            Inner::Url { .. } => Err(self.unsupported("start")),
            Inner::Local(l) => l.restart().await,
            #[cfg(feature = "docker")]
            Inner::Docker(d) => d.start().await,
        }
    }

    /// [`TestServer::stop`] then [`TestServer::start`].
    pub async fn restart(&mut self) -> Result<(), Error> {
        self.stop().await?;
        self.start().await
    }
}

/// The URL of a server this crate started on `host:port`, and its credentials.
pub(crate) struct Endpoint {
    pub url: String,
    pub user: Option<String>,
    pub password: Option<String>,
    pub database: Option<String>,
}

pub(crate) fn endpoint(service: Service, host: &str, port: u16) -> Endpoint {
    let hostport = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let plain = |scheme: &str| Endpoint {
        url: format!("{scheme}://{hostport}"),
        user: None,
        password: None,
        database: None,
    };
    let with = |scheme: &str, user: &str, password: &str, db: &str, path: &str| Endpoint {
        url: format!("{scheme}://{user}:{password}@{hostport}/{path}"),
        user: Some(user.to_owned()),
        password: Some(password.to_owned()),
        database: Some(db.to_owned()),
    };
    match service {
        Service::Redis => plain("redis"),
        Service::Mongodb => plain("mongodb"),
        Service::Memcached => plain("memcache"),
        Service::Mosquitto => plain("mqtt"),
        Service::Postgres => with(
            "postgres",
            local::POSTGRES_USER,
            local::POSTGRES_PASSWORD,
            local::POSTGRES_DB,
            local::POSTGRES_DB,
        ),
        Service::Mysql => with(
            "mysql",
            local::MYSQL_USER,
            local::MYSQL_PASSWORD,
            local::MYSQL_DB,
            local::MYSQL_DB,
        ),
        Service::Rabbitmq => {
            let mut e = with("amqp", local::AMQP_USER, local::AMQP_PASSWORD, "/", "%2f");
            e.database = None;
            e
        }
    }
}

impl TestServer {
    fn owned(service: Service, host: String, port: u16, inner: Inner) -> TestServer {
        let Endpoint {
            url,
            user,
            password,
            database,
        } = endpoint(service, &host, port);
        TestServer {
            service,
            url,
            host,
            port,
            user,
            password,
            database,
            inner,
        }
    }
}

/// Get a server for `service`: `FOGG_TEST_<SERVICE>_URL`, else Docker (feature `docker`,
/// when a daemon answers), else a local binary.
pub(crate) async fn start(service: Service) -> Result<TestServer, Error> {
    let var = service.url_var();
    let mut tried = Vec::new();
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => {
            let timeout = std::env::var("FOGG_TEST_START_TIMEOUT")
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .map_or(Duration::from_secs(30), Duration::from_secs);
            return from_url(service, var, url.trim(), timeout).await;
        }
        _ => tried.push(format!("{var} is not set")),
    }

    #[cfg(feature = "docker")]
    match crate::docker::daemon().await {
        Ok(()) => match crate::docker::DockerServer::launch(service).await {
            Ok((docker, host, port)) => {
                return Ok(TestServer::owned(
                    service,
                    host,
                    port,
                    Inner::Docker(Box::new(docker)),
                ));
            }
            Err(e) => {
                tracing::warn!(service = %service, "docker failed, trying a local binary: {e}");
                tried.push(format!("Docker answered but failed: {e}"));
            }
        },
        Err(why) => tried.push(format!("Docker: {why}")),
    }
    #[cfg(not(feature = "docker"))]
    tried.push("Docker: not compiled in (feature `docker` of fogg-testcontainers)".to_owned());

    match Binaries::find(service) {
        Ok(bins) => {
            let server = LocalServer::start(service, bins).await?;
            let port = server.port();
            Ok(TestServer::owned(
                service,
                "127.0.0.1".to_owned(),
                port,
                Inner::Local(Box::new(server)),
            ))
        }
        Err(why) => {
            tried.push(format!("local binary: {why}"));
            Err(Error::Unavailable {
                service,
                tried,
                hint: service.install_hint(),
            })
        }
    }
}

/// An existing server: parse its URL and check that it answers (waiting a while: a CI
/// service container may still be starting).
async fn from_url(
    service: Service,
    var: &'static str,
    url: &str,
    timeout: Duration,
) -> Result<TestServer, Error> {
    let bad = |reason: String| Error::External {
        service,
        var,
        url: url.to_owned(),
        reason,
    };
    let parsed = url::parse(url, service.default_port()).map_err(bad)?;
    let auth = ProbeAuth {
        user: parsed.user.clone(),
        database: parsed.path.clone(),
    };
    let deadline = Instant::now() + timeout;
    loop {
        match probe(service, &parsed.host, parsed.port, &auth).await {
            Ok(()) => break,
            Err(reason) if Instant::now() >= deadline => {
                return Err(bad(format!("no answer within {timeout:?}: {reason}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    tracing::info!(service = %service, var, "using an existing server");
    Ok(TestServer {
        service,
        url: url.to_owned(),
        host: parsed.host,
        port: parsed.port,
        user: parsed.user,
        password: parsed.password,
        database: parsed.path,
        inner: Inner::Url { var },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_url_nobody_answers_is_an_error_not_a_skip() {
        let port = crate::process::pick_port().unwrap();
        let url = format!("redis://127.0.0.1:{port}");
        let err = from_url(
            Service::Redis,
            "FOGG_TEST_REDIS_URL",
            &url,
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
        assert!(!err.is_unavailable());
        let text = err.to_string();
        assert!(
            text.contains("FOGG_TEST_REDIS_URL=redis://127.0.0.1:"),
            "{text}"
        );
        assert!(text.contains("no answer"), "{text}");
        let err = from_url(
            Service::Redis,
            "FOGG_TEST_REDIS_URL",
            "127.0.0.1:6379",
            Duration::ZERO,
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("scheme://"), "{err}");
    }

    #[tokio::test]
    async fn a_server_from_a_url_is_used_but_not_owned() {
        let Some(real) = crate::require(start(Service::Redis).await) else {
            return;
        };
        let url = format!("redis://127.0.0.1:{}/0", real.port());
        let mut external = from_url(
            Service::Redis,
            "FOGG_TEST_REDIS_URL",
            &url,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(external.origin(), Origin::Url);
        assert_eq!(external.url(), url);
        assert_eq!(external.port(), real.port());
        assert!(external.data_dir().is_none());
        let err = external.stop().await.unwrap_err();
        assert!(err.to_string().contains("stop is not supported"), "{err}");
        assert!(external.start().await.is_err());
        drop(external);
        assert!(real.is_running());
    }

    #[test]
    fn urls_of_started_servers() {
        let e = endpoint(Service::Postgres, "127.0.0.1", 5433);
        assert_eq!(
            e.url,
            "postgres://postgres:postgres@127.0.0.1:5433/postgres"
        );
        let e = endpoint(Service::Mysql, "127.0.0.1", 3307);
        assert_eq!(e.url, "mysql://root:fogg@127.0.0.1:3307/fogg");
        assert_eq!(e.database.as_deref(), Some("fogg"));
        let e = endpoint(Service::Rabbitmq, "127.0.0.1", 5673);
        assert_eq!(e.url, "amqp://guest:guest@127.0.0.1:5673/%2f");
        assert_eq!(
            endpoint(Service::Redis, "127.0.0.1", 1).url,
            "redis://127.0.0.1:1"
        );
        assert_eq!(
            endpoint(Service::Mongodb, "::1", 2).url,
            "mongodb://[::1]:2"
        );
        assert_eq!(endpoint(Service::Memcached, "h", 3).url, "memcache://h:3");
        assert_eq!(endpoint(Service::Mosquitto, "h", 4).url, "mqtt://h:4");
    }
}
