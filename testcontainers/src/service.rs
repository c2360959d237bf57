//! The services this crate can start, and what it knows about each.

use std::fmt;

/// A kind of server a test can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Service {
    /// Redis (`redis-server`).
    Redis,
    /// PostgreSQL (`initdb` + `postgres`).
    Postgres,
    /// MariaDB / MySQL wire protocol (`mariadb-install-db` + `mariadbd`).
    Mysql,
    /// MongoDB wire protocol (`mongod`, else `secantusd-rs`).
    Mongodb,
    /// Memcached (`memcached`).
    Memcached,
    /// RabbitMQ, AMQP 0-9-1 (`rabbitmq-server`).
    Rabbitmq,
    /// The mosquitto MQTT broker (`mosquitto`).
    Mosquitto,
}

impl Service {
    /// Every service, in a fixed order.
    pub const ALL: [Service; 7] = [
        Service::Redis,
        Service::Postgres,
        Service::Mysql,
        Service::Mongodb,
        Service::Memcached,
        Service::Rabbitmq,
        Service::Mosquitto,
    ];

    /// Short lower-case name (`"redis"`, `"postgres"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Service::Redis => "redis",
            Service::Postgres => "postgres",
            Service::Mysql => "mysql",
            Service::Mongodb => "mongodb",
            Service::Memcached => "memcached",
            Service::Rabbitmq => "rabbitmq",
            Service::Mosquitto => "mosquitto",
        }
    }

    /// The environment variable naming an existing server, e.g. `FOGG_TEST_REDIS_URL`.
    pub fn url_var(self) -> &'static str {
        match self {
            Service::Redis => "FOGG_TEST_REDIS_URL",
            Service::Postgres => "FOGG_TEST_POSTGRES_URL",
            Service::Mysql => "FOGG_TEST_MYSQL_URL",
            Service::Mongodb => "FOGG_TEST_MONGODB_URL",
            Service::Memcached => "FOGG_TEST_MEMCACHED_URL",
            Service::Rabbitmq => "FOGG_TEST_RABBITMQ_URL",
            Service::Mosquitto => "FOGG_TEST_MOSQUITTO_URL",
        }
    }

    /// The port the server listens on by default (used for URLs without a port,
    /// and inside Docker containers).
    pub fn default_port(self) -> u16 {
        match self {
            Service::Redis => 6379,
            Service::Postgres => 5432,
            Service::Mysql => 3306,
            Service::Mongodb => 27017,
            Service::Memcached => 11211,
            Service::Rabbitmq => 5672,
            Service::Mosquitto => 1883,
        }
    }

    /// How to get this server on a machine that lacks it.
    pub fn install_hint(self) -> &'static str {
        match self {
            Service::Redis => {
                "install it with scripts/install-test-deps.sh (Debian: apt-get install redis-server), \
                 or set FOGG_TEST_REDIS_URL=redis://HOST:PORT"
            }
            Service::Postgres => {
                "install it with scripts/install-test-deps.sh (Debian: apt-get install postgresql \
                 postgresql-contrib), or set FOGG_TEST_POSTGRES_URL=postgres://USER:PASS@HOST:PORT/DB"
            }
            Service::Mysql => {
                "install it with scripts/install-test-deps.sh (Debian: apt-get install mariadb-server), \
                 or set FOGG_TEST_MYSQL_URL=mysql://USER:PASS@HOST:PORT/DB"
            }
            Service::Mongodb => {
                "install it with scripts/install-test-deps.sh (mongod, or the MongoDB-wire test server: \
                 apt-get install cmake && cargo install secantus-mdb --version 0.5.3-beta.196 --locked \
                 --ignore-rust-version), or set FOGG_TEST_MONGODB_URL=mongodb://HOST:PORT"
            }
            Service::Memcached => {
                "install it with scripts/install-test-deps.sh (Debian: apt-get install memcached), \
                 or set FOGG_TEST_MEMCACHED_URL=memcache://HOST:PORT"
            }
            Service::Rabbitmq => {
                "install it with scripts/install-test-deps.sh (Debian: apt-get install rabbitmq-server), \
                 or set FOGG_TEST_RABBITMQ_URL=amqp://USER:PASS@HOST:PORT/%2f"
            }
            Service::Mosquitto => {
                "install it with scripts/install-test-deps.sh (Debian: apt-get install mosquitto), \
                 or set FOGG_TEST_MOSQUITTO_URL=mqtt://HOST:PORT"
            }
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
