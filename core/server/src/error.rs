//! The one error type of configuration loading and checking.
//!
//! Every variant names where the problem is (the directory, the file, or the
//! built-in defaults), the key when there is one, and the reason, so a user
//! can fix the configuration from the message alone. Reasons are masked with
//! [`mask_passwords`] when the error is made, because they may quote values.

use std::fmt;
use std::path::PathBuf;

use crate::mask::mask_passwords;

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    /// The key is not set, so its value is the built-in default, but the
    /// table (or array element) holding it comes from this file.
    DefaultIn(PathBuf),
    /// No file sets the key: its value is the compiled-in default.
    BuiltIn,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::DefaultIn(path) => {
                write!(
                    f,
                    "{} (key not set there: built-in default)",
                    path.display()
                )
            }
            Origin::BuiltIn => f.write_str("built-in defaults"),
        }
    }
}

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Field(String),
    Index(usize),
}

/// A dotted key path such as `listeners[0].bind` or `backends.pg.kind`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Key(pub Vec<Seg>);

impl Key {
    /// A key from dotted field names: `Key::of(&["storage", "backend"])`.
    pub fn of(fields: &[&str]) -> Key {
        Key(fields.iter().map(|f| Seg::Field((*f).to_owned())).collect())
    }

    pub fn field(mut self, name: &str) -> Key {
        self.0.push(Seg::Field(name.to_owned()));
        self
    }

    pub fn index(mut self, index: usize) -> Key {
        self.0.push(Seg::Index(index));
        self
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(top level)");
        }
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Index(n) => write!(f, "[{n}]")?,
                Seg::Field(name) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    // Quote names that TOML would need quoted, so the key can
                    // be searched for in the file as written.
                    let bare = !name.is_empty()
                        && name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if bare {
                        f.write_str(name)?;
                    } else {
                        write!(f, "{name:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration directory is missing or cannot be listed.
    #[error("{}: cannot read the configuration directory: {reason}", dir.display())]
    Dir { dir: PathBuf, reason: String },

    /// A `*.toml` entry that cannot be read as a text file.
    #[error("{}: cannot read the configuration file: {reason}", file.display())]
    File { file: PathBuf, reason: String },

    /// The file is not valid TOML.
    #[error(
        "{}: line {line}, column {column}: TOML syntax error: {reason}\n    {line} | {text}",
        file.display()
    )]
    Syntax {
        file: PathBuf,
        line: usize,
        column: usize,
        /// The offending line, so the key being written is visible.
        text: String,
        reason: String,
    },

    /// A key whose value is wrong, missing, unknown or not supported.
    #[error("{origin}: {key}: {reason}")]
    Key {
        origin: Origin,
        key: Key,
        reason: String,
    },
}

impl ConfigError {
    pub fn key(origin: Origin, key: Key, reason: impl AsRef<str>) -> ConfigError {
        ConfigError::Key {
            origin,
            key,
            reason: mask_passwords(reason.as_ref()),
        }
    }

    pub fn file(file: PathBuf, reason: impl AsRef<str>) -> ConfigError {
        ConfigError::File {
            file,
            reason: mask_passwords(reason.as_ref()),
        }
    }

    pub fn syntax(
        file: PathBuf,
        line: usize,
        column: usize,
        text: &str,
        reason: &str,
    ) -> ConfigError {
        ConfigError::Syntax {
            file,
            line,
            column,
            text: mask_passwords(text),
            reason: mask_passwords(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_like_toml_paths() {
        let key = Key::of(&["listeners"]).index(2).field("bind");
        assert_eq!(key.to_string(), "listeners[2].bind");
        let key = Key::of(&["backends", "my.db", "kind"]);
        assert_eq!(key.to_string(), r#"backends."my.db".kind"#);
        assert_eq!(Key::default().to_string(), "(top level)");
    }

    #[test]
    fn reasons_are_masked() {
        let err = ConfigError::key(
            Origin::BuiltIn,
            Key::of(&["backends", "pg", "url"]),
            "cannot use postgres://u:hunter2@db/x",
        );
        let text = err.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("postgres://u:***@db/x"), "{text}");
    }
}
