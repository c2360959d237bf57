//! fogg-auth-files: authentication and ACLs from a password file and an ACL
//! file in the formats of mosquitto and VerneMQ (`vmq_passwd`, `vmq_acl`),
//! re-read when they change.
//!
//! ```toml
//! [backends.f]
//! kind = "files"
//! password_file = "/etc/fogg/passwd"   # user:hash lines ($6$, $7$, bcrypt, ...)
//! acl_file = "/etc/fogg/acl"           # topic / user / pattern lines
//! reload_interval = "10s"              # default; 0 = never re-read
//!
//! [auth]
//! chain = ["f"]
//! ```
//!
//! * **Authentication** (with `password_file`): a CONNECT with a username
//!   and a password whose user is in the file is allowed when the password
//!   matches ([`fogg_auth_common::passwords::verify`], off the reactor) and
//!   denied otherwise; an unknown user, or a CONNECT without a username or a
//!   password, is "next". An allowed client gets its rules from the ACL file
//!   in its `Grant`, so its publishes never wait on this backend; without an
//!   ACL file it gets no rules (everything allowed, as in mosquitto, unless
//!   another backend's authorizer or static rules say otherwise).
//! * **Authorization** (with `acl_file`): for clients that got no rules at
//!   CONNECT — anonymous clients (this backend never authenticates them: it
//!   cannot vouch for a client that sent no credentials, and saying "allow"
//!   would bypass `allow_anonymous = false`), and clients authenticated by
//!   another backend without rules. Anonymous clients get the `topic` lines
//!   before the first `user` line plus every `pattern`; a username gets its
//!   section plus every `pattern`. A request no rule allows is "next", so
//!   the broker asks the next authorizer and denies at the end of the chain.
//! * **Reload**: every `reload_interval` the files' modification time, size
//!   and inode are checked; a changed file is read and parsed whole. A file
//!   that fails to parse is logged with its path, line and cause, and the
//!   previous content stays in force. A missing file at start is empty
//!   content (logged) until it appears; one that exists but does not parse
//!   refuses the start. New rules apply to clients connecting after the
//!   reload (connected clients keep the rules of their CONNECT, as with
//!   VerneMQ's database backends).

mod aclfile;
mod passwd;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use fogg_api::{
    AuthDecision, Authenticator, Authorizer, Backend, BackendConfig, BackendError, BackendFactory,
    Capabilities, ClientInfo, Concern, ConnectInfo, ErrorKind, Grant, PublishDecision,
    PublishRequest, SubscribeDecision, SubscribeRequest,
};
use fogg_auth_common::passwords::{self, HashError};
use fogg_auth_common::settings::Settings;

pub use aclfile::AclFile;
pub use passwd::{PasswdEntry, PasswdFile};

use watch::Watched;

/// Why a password or ACL file cannot be used: the file, the line (0 when
/// the whole file is concerned) and the cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {reason}", path.display(), if *line > 0 { format!(":{line}") } else { String::new() })]
pub struct ParseError {
    pub path: PathBuf,
    pub line: usize,
    pub reason: String,
}

impl ParseError {
    pub fn new(path: &Path, line: usize, reason: String) -> ParseError {
        ParseError {
            path: path.to_owned(),
            line,
            reason,
        }
    }

    fn io(path: &Path, error: &std::io::Error) -> ParseError {
        ParseError::new(path, 0, error.to_string())
    }
}

/// Parse a password file (for tools and tests).
pub fn parse_password_file(path: &Path, text: &str) -> Result<PasswdFile, ParseError> {
    passwd::parse(path, text)
}

/// Parse an ACL file (for tools and tests).
pub fn parse_acl_file(path: &Path, text: &str) -> Result<AclFile, ParseError> {
    aclfile::parse(path, text)
}

/// The `files` backend kind.
pub struct FilesFactory;

impl FilesFactory {
    pub const KIND: &'static str = "files";
    pub const CAPABILITIES: Capabilities =
        Capabilities(&[Concern::Authentication, Concern::Authorization]);
    /// How often the files are checked for changes (VerneMQ's default).
    pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(10);
}

/// The settings of one `[backends.NAME] kind = "files"` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesSettings {
    pub password_file: Option<PathBuf>,
    pub acl_file: Option<PathBuf>,
    /// Zero: never re-read.
    pub reload_interval: Duration,
}

impl FilesSettings {
    pub fn from_config(config: &BackendConfig) -> Result<FilesSettings, BackendError> {
        let mut s = Settings::new(config);
        let password_file = s.path("password_file")?;
        let acl_file = s.path("acl_file")?;
        let reload_interval = s
            .duration("reload_interval")?
            .unwrap_or(FilesFactory::DEFAULT_RELOAD_INTERVAL);
        s.finish()?;
        if password_file.is_none() && acl_file.is_none() {
            return Err(BackendError::new(
                ErrorKind::InvalidConfig,
                config.name.clone(),
                "build",
                "needs `password_file`, `acl_file` or both",
            ));
        }
        Ok(FilesSettings {
            password_file,
            acl_file,
            reload_interval,
        })
    }
}

impl BackendFactory for FilesFactory {
    fn kind(&self) -> &'static str {
        FilesFactory::KIND
    }

    fn capabilities(&self) -> Capabilities {
        FilesFactory::CAPABILITIES
    }

    /// Reads the files (blocking: the broker builds backends at start) and,
    /// inside a tokio runtime, starts the task that re-reads them.
    fn build(&self, config: &BackendConfig) -> Result<Backend, BackendError> {
        let settings = FilesSettings::from_config(config)?;
        let files = Arc::new(Files::open(&config.name, &settings)?);
        if !settings.reload_interval.is_zero() {
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => {
                    handle.spawn(reload(Arc::downgrade(&files), settings.reload_interval));
                }
                Err(_) => tracing::warn!(
                    backend = %config.name,
                    "built outside a tokio runtime: the files will not be re-read"
                ),
            }
        }
        let mut backend = Backend::new(config.name.clone(), FilesFactory::KIND);
        if files.passwd.is_some() {
            backend.authenticator = Some(files.clone());
        }
        if files.acl.is_some() {
            backend.authorizer = Some(files);
        }
        Ok(backend)
    }
}

/// Re-read the files every `every` until the backend is dropped.
async fn reload(files: Weak<Files>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // The first tick is immediate; the files were just read.
    loop {
        ticker.tick().await;
        let Some(files) = files.upgrade() else {
            return;
        };
        if tokio::task::spawn_blocking(move || files.refresh())
            .await
            .is_err()
        {
            tracing::warn!("re-reading auth files failed to complete");
        }
    }
}

/// One `files` backend instance: both files, each re-read on change.
pub struct Files {
    name: String,
    passwd: Option<Watched<PasswdFile>>,
    acl: Option<Watched<AclFile>>,
}

impl Files {
    /// Read the files named by `settings` (no re-reading: see
    /// [`Files::refresh`]).
    pub fn open(name: &str, settings: &FilesSettings) -> Result<Files, BackendError> {
        let invalid = |key: &str, e: ParseError| {
            BackendError::new(
                ErrorKind::InvalidConfig,
                name,
                "build",
                format!("`{key}`: {e}"),
            )
        };
        let passwd = settings
            .password_file
            .clone()
            .map(|path| Watched::open(name, "password file", path, passwd::parse))
            .transpose()
            .map_err(|e| invalid("password_file", e))?;
        let acl = settings
            .acl_file
            .clone()
            .map(|path| Watched::open(name, "ACL file", path, aclfile::parse))
            .transpose()
            .map_err(|e| invalid("acl_file", e))?;
        Ok(Files {
            name: name.to_owned(),
            passwd,
            acl,
        })
    }

    /// Re-read whichever file changed (blocking I/O). Returns whether
    /// anything new was installed.
    pub fn refresh(&self) -> bool {
        let a = self.passwd.as_ref().is_some_and(Watched::refresh);
        let b = self.acl.as_ref().is_some_and(Watched::refresh);
        a || b
    }

    fn grant(&self, username: &str) -> AuthDecision {
        match &self.acl {
            Some(acl) => AuthDecision::Allow(Grant {
                acl: Some(acl.current().rules_for(Some(username))),
            }),
            None => AuthDecision::allow(),
        }
    }
}

impl Authenticator for Files {
    async fn authenticate(&self, info: &ConnectInfo) -> Result<AuthDecision, BackendError> {
        let Some(passwd) = &self.passwd else {
            return Ok(AuthDecision::Next);
        };
        let (Some(username), Some(password)) = (info.username.as_deref(), info.password.as_deref())
        else {
            return Ok(AuthDecision::Next);
        };
        let file = passwd.current();
        let Some(entry) = file.users.get(username) else {
            return Ok(AuthDecision::Next);
        };
        match passwords::verify(password, &entry.hash).await {
            Ok(true) => Ok(self.grant(username)),
            Ok(false) => {
                tracing::debug!(backend = %self.name, user = username, "wrong password");
                Ok(AuthDecision::Deny)
            }
            Err(HashError::Task(e)) => Err(BackendError::new(
                ErrorKind::Internal,
                self.name.clone(),
                "authenticate",
                format!("password check: {e}"),
            )),
            Err(e) => {
                tracing::warn!(
                    backend = %self.name,
                    file = %passwd.path().display(),
                    line = entry.line,
                    user = username,
                    error = %e,
                    "cannot check this user's password; CONNECT denied"
                );
                Ok(AuthDecision::Deny)
            }
        }
    }
}

impl Authorizer for Files {
    async fn authorize_publish(
        &self,
        client: &ClientInfo,
        request: &PublishRequest<'_>,
    ) -> Result<PublishDecision, BackendError> {
        let Some(acl) = &self.acl else {
            return Ok(PublishDecision::Next);
        };
        let rules = acl.current().rules_for(client.username.as_deref());
        Ok(match rules.check_publish(client, request) {
            PublishDecision::Deny => PublishDecision::Next,
            allowed => allowed,
        })
    }

    async fn authorize_subscribe(
        &self,
        client: &ClientInfo,
        request: &SubscribeRequest<'_>,
    ) -> Result<SubscribeDecision, BackendError> {
        let Some(acl) = &self.acl else {
            return Ok(SubscribeDecision::Next);
        };
        let rules = acl.current().rules_for(client.username.as_deref());
        Ok(match rules.check_subscribe(client, request) {
            SubscribeDecision::Deny => SubscribeDecision::Next,
            allowed => allowed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(settings: &str) -> BackendConfig {
        BackendConfig {
            name: "f".to_owned(),
            kind: "files".to_owned(),
            settings: settings.parse().unwrap(),
        }
    }

    #[test]
    fn settings_defaults_and_errors() {
        let s = FilesSettings::from_config(&config("acl_file = \"a\"")).unwrap();
        assert_eq!(s.password_file, None);
        assert_eq!(s.acl_file, Some(PathBuf::from("a")));
        assert_eq!(s.reload_interval, Duration::from_secs(10));
        let s = FilesSettings::from_config(&config(
            "password_file = \"p\"\nreload_interval = \"250ms\"",
        ))
        .unwrap();
        assert_eq!(s.reload_interval, Duration::from_millis(250));

        for (text, expected) in [
            ("", "needs `password_file`, `acl_file` or both"),
            ("password_file = 3", "`password_file` must be a string"),
            ("acl_file = \"\"", "`acl_file` must not be empty"),
            (
                "acl_file = \"a\"\nreload_interval = \"often\"",
                "`reload_interval` expected a duration",
            ),
            (
                "acl_file = \"a\"\npasswd = \"p\"",
                "unknown key `passwd`: the files backend takes `acl_file`, `password_file`, `reload_interval`",
            ),
        ] {
            let e = FilesFactory.build(&config(text)).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidConfig, "{text}");
            assert!(e.message.contains(expected), "{text}: {e}");
        }
    }

    #[test]
    fn only_the_configured_concerns_get_a_handle() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).display().to_string();
        let only_acl = FilesFactory
            .build(&config(&format!("acl_file = {:?}", path("acl"))))
            .unwrap();
        assert!(!only_acl.serves(Concern::Authentication));
        assert!(only_acl.serves(Concern::Authorization));
        let only_passwd = FilesFactory
            .build(&config(&format!("password_file = {:?}", path("pw"))))
            .unwrap();
        assert!(only_passwd.serves(Concern::Authentication));
        assert!(!only_passwd.serves(Concern::Authorization));
        assert!(FilesFactory.capabilities().serves(Concern::Authentication));
        assert!(FilesFactory.capabilities().serves(Concern::Authorization));
    }

    #[test]
    fn a_broken_file_at_start_refuses_the_build_naming_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let acl = dir.path().join("acl");
        std::fs::write(&acl, "user a\ntopic read ok\nbogus line\n").unwrap();
        let e = FilesFactory
            .build(&config(&format!(
                "acl_file = {:?}",
                acl.display().to_string()
            )))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidConfig);
        assert!(
            e.message.contains(&format!(
                "`acl_file`: {}:3: unknown keyword `bogus`",
                acl.display()
            )),
            "{e}"
        );
        let pw = dir.path().join("pw");
        std::fs::write(&pw, [b'a', b':', 0xff, b'\n']).unwrap();
        let e = FilesFactory
            .build(&config(&format!(
                "password_file = {:?}",
                pw.display().to_string()
            )))
            .unwrap_err();
        assert!(e.message.contains(":1: not valid UTF-8"), "{e}");
    }
}
