//! The driver's client, made on first use, and its errors as
//! [`BackendError`]s.

use fogg_api::{BackendError, ErrorKind};
use mongodb::options::{ClientOptions, ReadPreference, SelectionCriteria};
use mongodb::{Client, Database};
use tokio::sync::OnceCell;

use crate::settings::MongoSettings;

/// One client (a pool per server, monitored by the driver) for a backend
/// instance. Made on the first request, not at build: building must not
/// wait on the network (`fogg --check` builds every backend) and
/// `mongodb+srv` names are resolved then. A failed attempt is not kept:
/// the next request tries again.
pub(crate) struct Connection {
    backend: String,
    settings: MongoSettings,
    /// The URL's password, to be masked in error messages.
    secret: Option<String>,
    client: OnceCell<Client>,
}

impl Connection {
    pub(crate) fn new(backend: &str, settings: MongoSettings) -> Connection {
        let secret = settings
            .url
            .credential
            .as_ref()
            .and_then(|c| c.password.clone())
            .filter(|p| !p.is_empty());
        Connection {
            backend: backend.to_owned(),
            settings,
            secret,
            client: OnceCell::new(),
        }
    }

    pub(crate) fn settings(&self) -> &MongoSettings {
        &self.settings
    }

    pub(crate) async fn database(&self) -> Result<Database, BackendError> {
        let client = self
            .client
            .get_or_try_init(|| async {
                let options = self.options().await?;
                Client::with_options(options).map_err(|e| self.error("connect", e))
            })
            .await?;
        Ok(client.database(&self.settings.database))
    }

    async fn options(&self) -> Result<ClientOptions, BackendError> {
        let s = &self.settings;
        let mut options = ClientOptions::parse(s.url.clone())
            .await
            .map_err(|e| self.error("connect", e))?;
        // Settings win over the URL; the URL wins over the defaults.
        options.connect_timeout = s
            .connect_timeout
            .or(options.connect_timeout)
            .or(Some(MongoSettings::DEFAULT_CONNECT_TIMEOUT));
        options.server_selection_timeout = s
            .server_selection_timeout
            .or(options.server_selection_timeout)
            .or(Some(MongoSettings::DEFAULT_SERVER_SELECTION_TIMEOUT));
        options.max_pool_size = s
            .pool_size
            .or(options.max_pool_size)
            .or(Some(MongoSettings::DEFAULT_POOL_SIZE));
        if options.app_name.is_none() {
            options.app_name = Some("fogg".to_owned());
        }
        // Logins keep working on a secondary while a replica set elects a
        // new primary; `readPreference` in the URL still decides.
        if options.selection_criteria.is_none() {
            options.selection_criteria = Some(SelectionCriteria::ReadPreference(
                ReadPreference::PrimaryPreferred {
                    options: Default::default(),
                },
            ));
        }
        Ok(options)
    }

    /// A driver error as a [`BackendError`]: not reaching the server (no
    /// server selectable, I/O, DNS, a cleared pool, the server refusing our
    /// credentials or command) is `Unavailable` and retryable, a timed-out
    /// socket `Timeout`; the message never carries the URL's password.
    pub(crate) fn error(&self, operation: &'static str, e: mongodb::error::Error) -> BackendError {
        use mongodb::error::ErrorKind as K;
        let kind = match &*e.kind {
            K::InvalidArgument { .. } | K::InvalidTlsConfig { .. } => ErrorKind::InvalidConfig,
            K::BsonDeserialization(_) | K::BsonSerialization(_) | K::InvalidResponse { .. } => {
                ErrorKind::InvalidData
            }
            K::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => ErrorKind::Timeout,
            _ => ErrorKind::Unavailable,
        };
        // The kind's text without the driver's label dump.
        let mut message = format!("MongoDB {operation}: {}", e.kind);
        if let Some(secret) = &self.secret {
            message = scrub(&message, secret);
        }
        BackendError::new(kind, self.backend.clone(), "authenticate", message)
    }
}

/// `text` with every occurrence of `secret` masked.
pub(crate) fn scrub(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        text.to_owned()
    } else {
        text.replace(secret, "****")
    }
}

/// `text` with the user information of `url` (`user:password@`) masked,
/// for messages about a URL that may not even parse.
pub(crate) fn scrub_url(text: &str, url: &str) -> String {
    let Some((_, rest)) = url.split_once("://") else {
        return text.to_owned();
    };
    // The authority ends at the first '/' or '?' after the last '@' that
    // precedes it; a password may itself contain '/' when not URL-encoded.
    let Some(at) = rest.rfind('@') else {
        return text.to_owned();
    };
    let userinfo = &rest[..at];
    let mut out = scrub(text, userinfo);
    if let Some((_, password)) = userinfo.split_once(':') {
        out = scrub(&out, password);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_information_is_masked() {
        let url = "mongodb://fogg:s3cr%2Fet@db:27017/x";
        assert_eq!(
            scrub_url("bad url mongodb://fogg:s3cr%2Fet@db:27017/x", url),
            "bad url mongodb://****@db:27017/x"
        );
        assert_eq!(scrub_url("password s3cr%2Fet", url), "password ****");
        assert_eq!(
            scrub_url("no secret here", "mongodb://db"),
            "no secret here"
        );
        assert_eq!(scrub("a pw b pw", "pw"), "a **** b ****");
        assert_eq!(scrub("text", ""), "text");
    }
}
