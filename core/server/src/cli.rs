//! Command line: the flags fixed by the contract, nothing else.

use std::path::{Path, PathBuf};

use clap::Parser;

/// The folder `fogg` loads when no `--config-dir` is given, if it exists.
pub const DEFAULT_CONFIG_DIR: &str = "conf.d";

/// Fogg, an MQTT broker.
#[derive(Debug, Parser)]
#[command(name = "fogg", version, about)]
pub struct Cli {
    /// Load every DIR/*.toml in lexical order; later files override earlier
    /// ones key by key. Default: ./conf.d if it exists, else built-in defaults.
    #[arg(long, value_name = "DIR")]
    pub config_dir: Option<PathBuf>,

    /// Validate the configuration and exit (0 when valid) without opening any listener.
    #[arg(long)]
    pub check: bool,
}

/// Where the configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    Dir(PathBuf),
    BuiltIn,
}

impl Cli {
    pub fn config_source(&self) -> ConfigSource {
        match &self.config_dir {
            Some(dir) => ConfigSource::Dir(dir.clone()),
            None => default_source(Path::new(DEFAULT_CONFIG_DIR)),
        }
    }
}

/// `./conf.d` when it exists. Anything there, even a file, counts: a broken
/// conf.d must be reported, not silently replaced by the defaults.
fn default_source(dir: &Path) -> ConfigSource {
    if dir.exists() || dir.is_symlink() {
        ConfigSource::Dir(dir.to_owned())
    } else {
        ConfigSource::BuiltIn
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_parse() {
        let cli = Cli::try_parse_from(["fogg", "--config-dir", "/etc/fogg", "--check"]).unwrap();
        assert_eq!(cli.config_source(), ConfigSource::Dir("/etc/fogg".into()));
        assert!(cli.check);
        assert!(Cli::try_parse_from(["fogg", "--bogus"]).is_err());
    }

    #[test]
    fn conf_d_is_used_only_when_present() {
        let dir = tempfile::tempdir().unwrap();
        let conf_d = dir.path().join("conf.d");
        assert_eq!(default_source(&conf_d), ConfigSource::BuiltIn);
        std::fs::create_dir(&conf_d).unwrap();
        assert_eq!(default_source(&conf_d), ConfigSource::Dir(conf_d));
    }
}
