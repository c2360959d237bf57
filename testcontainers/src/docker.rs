//! Servers in Docker containers (feature `docker`), through the `testcontainers` crate.
//!
//! Each container publishes its service port on a host port picked here (free on
//! 127.0.0.1), so a stopped and restarted container comes back on the same port.

use std::time::{Duration, Instant};

use testcontainers::core::{ContainerPort, IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};
use testcontainers_modules::{mongo, mosquitto, postgres, rabbitmq, redis};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::probe::{ProbeAuth, probe};
use crate::{Error, Service, local, process};

/// Whether a Docker daemon answers `GET /_ping`, within a short timeout.
/// `FOGG_TEST_DOCKER=0` turns Docker off.
pub(crate) async fn daemon() -> Result<(), String> {
    if std::env::var("FOGG_TEST_DOCKER").is_ok_and(|v| v == "0" || v == "false") {
        return Err("turned off by FOGG_TEST_DOCKER=0".to_owned());
    }
    let host = std::env::var("DOCKER_HOST").unwrap_or_default();
    let answer = tokio::time::timeout(Duration::from_millis(1500), ping(&host)).await;
    match answer {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!(
            "no answer from the daemon at {} within 1.5 s",
            if host.is_empty() {
                "/var/run/docker.sock"
            } else {
                &host
            }
        )),
    }
}

async fn ping(host: &str) -> Result<(), String> {
    const REQUEST: &[u8] = b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n";
    let mut answer = Vec::new();
    if let Some(addr) = host.strip_prefix("tcp://") {
        let mut s = tokio::net::TcpStream::connect(addr.trim_end_matches('/'))
            .await
            .map_err(|e| format!("no daemon at {host}: {e}"))?;
        s.write_all(REQUEST).await.map_err(|e| e.to_string())?;
        s.read_to_end(&mut answer)
            .await
            .map_err(|e| e.to_string())?;
    } else {
        let path = host.strip_prefix("unix://").unwrap_or(if host.is_empty() {
            "/var/run/docker.sock"
        } else {
            host
        });
        let mut s = tokio::net::UnixStream::connect(path)
            .await
            .map_err(|e| format!("no daemon at {path}: {e}"))?;
        s.write_all(REQUEST).await.map_err(|e| e.to_string())?;
        s.read_to_end(&mut answer)
            .await
            .map_err(|e| e.to_string())?;
    }
    let text = String::from_utf8_lossy(&answer);
    if text.starts_with("HTTP/1.") && text.contains(" 200 ") {
        Ok(())
    } else {
        Err(format!(
            "the daemon answered {:?}",
            text.lines().next().unwrap_or_default()
        ))
    }
}

enum Container {
    Redis(ContainerAsync<redis::Redis>),
    Postgres(ContainerAsync<postgres::Postgres>),
    Mongo(ContainerAsync<mongo::Mongo>),
    Rabbitmq(ContainerAsync<rabbitmq::RabbitMq>),
    Mosquitto(ContainerAsync<mosquitto::Mosquitto>),
    Generic(ContainerAsync<GenericImage>),
}

macro_rules! each {
    ($container:expr, $c:ident => $body:expr) => {
        match $container {
            Container::Redis($c) => $body,
            Container::Postgres($c) => $body,
            Container::Mongo($c) => $body,
            Container::Rabbitmq($c) => $body,
            Container::Mosquitto($c) => $body,
            Container::Generic($c) => $body,
        }
    };
}

pub(crate) struct DockerServer {
    service: Service,
    container: Container,
    host: String,
    host_port: u16,
    running: bool,
}

impl DockerServer {
    /// Run a container for `service`; returns it with the host and port to connect to.
    pub(crate) async fn launch(service: Service) -> Result<(DockerServer, String, u16), Error> {
        let host_port =
            process::pick_port().map_err(|e| Error::io(service, "picking a free port", e))?;
        let result = Self::run(service, host_port).await;
        let container = match result {
            Ok(c) => c,
            Err(e) => {
                process::release_port(host_port);
                return Err(Error::Docker {
                    service,
                    context: "starting a container".to_owned(),
                    source: e,
                });
            }
        };
        let host = match each!(&container, c => c.get_host().await) {
            Ok(h) => h.to_string(),
            Err(e) => {
                process::release_port(host_port);
                return Err(Error::Docker {
                    service,
                    context: "finding the container's host".to_owned(),
                    source: e,
                });
            }
        };
        let server = DockerServer {
            service,
            container,
            host: host.clone(),
            host_port,
            running: true,
        };
        server.wait_ready().await?;
        Ok((server, host, host_port))
    }

    async fn run(
        service: Service,
        host_port: u16,
    ) -> Result<Container, testcontainers::TestcontainersError> {
        let inner: ContainerPort = service.default_port().tcp();
        Ok(match service {
            Service::Redis => Container::Redis(
                redis::Redis::default()
                    .with_mapped_port(host_port, inner)
                    .start()
                    .await?,
            ),
            Service::Postgres => Container::Postgres(
                postgres::Postgres::default()
                    .with_user(local::POSTGRES_USER)
                    .with_password(local::POSTGRES_PASSWORD)
                    .with_db_name(local::POSTGRES_DB)
                    .with_mapped_port(host_port, inner)
                    .start()
                    .await?,
            ),
            Service::Mongodb => Container::Mongo(
                mongo::Mongo::default()
                    .with_mapped_port(host_port, inner)
                    .start()
                    .await?,
            ),
            Service::Rabbitmq => Container::Rabbitmq(
                rabbitmq::RabbitMq::default()
                    .with_mapped_port(host_port, inner)
                    .start()
                    .await?,
            ),
            Service::Mosquitto => Container::Mosquitto(
                mosquitto::Mosquitto::default()
                    .with_mapped_port(host_port, inner)
                    .start()
                    .await?,
            ),
            Service::Mysql => Container::Generic(
                GenericImage::new("mariadb", "11")
                    .with_exposed_port(inner)
                    .with_wait_for(WaitFor::message_on_stderr("ready for connections"))
                    .with_env_var("MARIADB_ROOT_PASSWORD", local::MYSQL_PASSWORD)
                    .with_env_var("MARIADB_DATABASE", local::MYSQL_DB)
                    .with_mapped_port(host_port, inner)
                    .start()
                    .await?,
            ),
            Service::Memcached => Container::Generic(
                GenericImage::new("memcached", "1.6-alpine")
                    .with_exposed_port(inner)
                    .with_mapped_port(host_port, inner)
                    .start()
                    .await?,
            ),
        })
    }

    /// The images' own wait conditions only apply to the first start: probe the protocol.
    async fn wait_ready(&self) -> Result<(), Error> {
        let auth = match self.service {
            Service::Postgres => ProbeAuth {
                user: Some(local::POSTGRES_USER.to_owned()),
                database: Some(local::POSTGRES_DB.to_owned()),
            },
            _ => ProbeAuth::default(),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match probe(self.service, &self.host, self.host_port, &auth).await {
                Ok(()) => return Ok(()),
                Err(reason) if Instant::now() >= deadline => {
                    return Err(Error::Start {
                        service: self.service,
                        what: format!("docker container on {}:{}", self.host, self.host_port),
                        reason,
                        log: std::path::PathBuf::from("(docker logs)"),
                        log_tail: String::new(),
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    pub(crate) fn is_running(&self) -> bool {
        self.running
    }

    fn docker_error(&self, context: &str, source: testcontainers::TestcontainersError) -> Error {
        Error::Docker {
            service: self.service,
            context: context.to_owned(),
            source,
        }
    }

    pub(crate) async fn stop(&mut self) -> Result<(), Error> {
        if !self.running {
            return Ok(());
        }
        each!(&self.container, c => c.stop_with_timeout(Some(60)).await)
            .map_err(|e| self.docker_error("stopping the container", e))?;
        self.running = false;
        Ok(())
    }

    pub(crate) async fn kill(&mut self) -> Result<(), Error> {
        if !self.running {
            return Ok(());
        }
        each!(&self.container, c => c.stop_with_timeout(Some(0)).await)
            .map_err(|e| self.docker_error("killing the container", e))?;
        self.running = false;
        Ok(())
    }

    pub(crate) async fn start(&mut self) -> Result<(), Error> {
        if self.running {
            return Ok(());
        }
        each!(&self.container, c => c.start().await)
            .map_err(|e| self.docker_error("starting the container again", e))?;
        self.running = true;
        self.wait_ready().await
    }
}

impl Drop for DockerServer {
    fn drop(&mut self) {
        process::release_port(self.host_port);
    }
}
