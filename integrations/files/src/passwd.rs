//! The password file: `user:hash` lines (mosquitto / VerneMQ `vmq_passwd`).

use std::collections::HashMap;
use std::path::Path;

use fogg_auth_common::passwords;

use crate::ParseError;

/// One user of the password file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    /// The stored hash; empty for `user:` (a user without a password, who
    /// is always denied).
    pub hash: String,
    /// 1-based line number, for log messages.
    pub line: usize,
}

/// A parsed password file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PasswdFile {
    pub users: HashMap<String, PasswdEntry>,
}

/// Parse a password file.
///
/// * blank lines and lines starting with `#` are skipped; a trailing `\r`
///   (a file edited on Windows) is dropped;
/// * every other line is `username:hash`, split at the first `:`;
///   whitespace around the hash is dropped, the username is taken as it is;
/// * a line without `:`, an empty username or a username seen before is an
///   error naming the line, and the whole file is refused;
/// * a hash in no format Fogg knows is logged here (file, line, user) and
///   kept: that user is denied, everybody else works.
pub fn parse(path: &Path, text: &str) -> Result<PasswdFile, ParseError> {
    let mut users: HashMap<String, PasswdEntry> = HashMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let err = |reason: String| ParseError::new(path, line, reason);
        let Some((username, hash)) = raw.split_once(':') else {
            return Err(err("expected `username:hash`".to_owned()));
        };
        if username.is_empty() {
            return Err(err("empty username".to_owned()));
        }
        if let Some(first) = users.get(username) {
            return Err(err(format!(
                "user {username:?} is already defined on line {}",
                first.line
            )));
        }
        let hash = hash.trim();
        if hash.is_empty() {
            tracing::warn!(file = %path.display(), line, user = username, "user without a password hash: always denied");
        } else if let Err(e) = passwords::detect(hash) {
            tracing::warn!(file = %path.display(), line, user = username, error = %e, "unusable password hash: this user is always denied");
        }
        users.insert(
            username.to_owned(),
            PasswdEntry {
                hash: hash.to_owned(),
                line,
            },
        );
    }
    Ok(PasswdFile { users })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<PasswdFile, ParseError> {
        parse(Path::new("/etc/fogg/passwd"), text)
    }

    #[test]
    fn users_comments_and_blank_lines() {
        let file =
            p("# users\n\nalice:$7$101$a$b\r\n  \nbob:  $2b$04$x  \ncarol:\nd:e:f\n").unwrap();
        assert_eq!(file.users.len(), 4);
        assert_eq!(file.users["alice"].hash, "$7$101$a$b");
        assert_eq!(file.users["alice"].line, 3);
        assert_eq!(file.users["bob"].hash, "$2b$04$x");
        assert_eq!(file.users["carol"].hash, "");
        assert_eq!(file.users["d"].hash, "e:f", "split at the first colon");
    }

    #[test]
    fn broken_lines_name_file_and_line() {
        for (text, expected) in [
            (
                "alice:x\nno colon here\n",
                "/etc/fogg/passwd:2: expected `username:hash`",
            ),
            ("\n\n:hash\n", "/etc/fogg/passwd:3: empty username"),
            (
                "alice:x\nbob:y\nalice:z\n",
                "/etc/fogg/passwd:3: user \"alice\" is already defined on line 1",
            ),
        ] {
            assert_eq!(p(text).unwrap_err().to_string(), expected);
        }
    }
}
