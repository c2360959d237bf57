//! conf.d loading: every `DIR/*.toml` in lexical order, layered with figment.
//!
//! Later files override earlier ones key by key: tables merge, scalars and
//! arrays replace (so a later `[[listeners]]` replaces the whole list). The
//! layering itself is figment's `merge`; this module only reads the files,
//! turns syntax and I/O problems into errors naming the file, and rewrites
//! figment's extraction errors into [`ConfigError`]s naming file, key and
//! reason (figment's own text prefixes keys with the profile, `default.`, and
//! prints paths relative to the working directory).
//!
//! Each file is read and parsed here rather than by figment's `Toml::file`,
//! because figment treats a missing file (a dangling symlink, a file deleted
//! between listing and reading) as empty, and its syntax errors span lines.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use figment::error::Kind;
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};
use fogg_broker::Config;

use crate::error::{ConfigError, Key, Origin, Seg};

/// A loaded configuration with what is needed to say where each value came from.
pub struct Loaded {
    pub config: Config,
    pub provenance: Provenance,
    /// The files layered, in order; empty for the built-in defaults.
    pub files: Vec<PathBuf>,
}

/// The compiled-in defaults, for `fogg` run where there is no `./conf.d`.
pub fn builtin() -> Loaded {
    Loaded {
        config: Config::default(),
        provenance: Provenance::none(),
        files: Vec::new(),
    }
}

/// Load and layer every `*.toml` file of `dir`.
pub fn load_dir(dir: &Path) -> Result<Loaded, ConfigError> {
    let files = toml_files(dir)?;
    let mut figment = Figment::new();
    for file in &files {
        let table = read_table(file)?;
        figment = figment.merge(TomlFile::new(file.clone(), table)?);
    }
    let provenance = Provenance::of(figment);
    let config = provenance
        .figment
        .extract::<Config>()
        .map_err(|err| provenance.explain(err))?;
    Ok(Loaded {
        config,
        provenance,
        files,
    })
}

/// The `*.toml` entries of `dir`, sorted by name. Hidden files are skipped,
/// as the shell's `*.toml` would, so editor droppings are not loaded.
fn toml_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let dir_error = |err: io::Error| ConfigError::Dir {
        dir: dir.to_owned(),
        reason: describe_io(&err),
    };
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(dir_error)? {
        let entry = entry.map_err(dir_error)?;
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && path.extension().is_some_and(|ext| ext == "toml") {
            files.push(path);
        }
    }
    // Byte order of the file names is the "lexical order" users expect from
    // `10-base.toml`, `20-site.toml`.
    files.sort();
    Ok(files)
}

/// Read and parse one file, with errors naming it.
fn read_table(file: &Path) -> Result<toml::Table, ConfigError> {
    match fs::metadata(file) {
        Ok(meta) if meta.is_dir() => {
            return Err(ConfigError::file(
                file.to_owned(),
                "is a directory, not a file",
            ));
        }
        Ok(meta) if !meta.is_file() => {
            return Err(ConfigError::file(file.to_owned(), "is not a regular file"));
        }
        Ok(_) => {}
        Err(err) => {
            let dangling = err.kind() == io::ErrorKind::NotFound
                && fs::symlink_metadata(file).is_ok_and(|m| m.file_type().is_symlink());
            let reason = if dangling {
                format!(
                    "is a symbolic link to a missing file ({})",
                    describe_io(&err)
                )
            } else {
                describe_io(&err)
            };
            return Err(ConfigError::file(file.to_owned(), reason));
        }
    }
    let text = fs::read_to_string(file)
        .map_err(|err| ConfigError::file(file.to_owned(), describe_io(&err)))?;
    text.parse::<toml::Table>()
        .map_err(|err| syntax_error(file, &text, &err))
}

fn describe_io(err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::InvalidData => "is not valid UTF-8 text".to_owned(),
        _ => err.to_string(),
    }
}

/// A one-line syntax error with the line and column, plus the line itself.
fn syntax_error(file: &Path, text: &str, err: &toml::de::Error) -> ConfigError {
    let start = err.span().map_or(0, |span| span.start).min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line = text[..start].matches('\n').count() + 1;
    let column = text[line_start..start].chars().count() + 1;
    let reason = err.message().trim().replace('\n', "; ");
    ConfigError::syntax(
        file.to_owned(),
        line,
        column,
        text[line_start..line_end].trim_end(),
        &reason,
    )
}

/// A parsed file as a figment provider whose metadata names the file, so
/// figment tags every value with it.
struct TomlFile {
    path: PathBuf,
    dict: Dict,
}

impl TomlFile {
    fn new(path: PathBuf, table: toml::Table) -> Result<TomlFile, ConfigError> {
        let dict = Value::serialize(table)
            .ok()
            .and_then(Value::into_dict)
            .ok_or_else(|| ConfigError::file(path.clone(), "cannot be represented as settings"))?;
        Ok(TomlFile { path, dict })
    }
}

impl Provider for TomlFile {
    fn metadata(&self) -> Metadata {
        Metadata::from("TOML file", Source::File(self.path.clone()))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

/// Which file set which key.
pub struct Provenance {
    figment: Figment,
    /// The layered values, each tagged with the provider (file) it came from.
    merged: Option<Value>,
}

impl Provenance {
    fn none() -> Provenance {
        Provenance {
            figment: Figment::new(),
            merged: None,
        }
    }

    fn of(figment: Figment) -> Provenance {
        // `find_value("")` is figment's way to get the whole merged tree.
        let merged = figment.find_value("").ok();
        Provenance { figment, merged }
    }

    /// The file that set `key`. When no file sets it, its value is the
    /// built-in default: [`Origin::DefaultIn`] names the file of the nearest
    /// table around it, if any, and [`Origin::BuiltIn`] is the answer otherwise.
    pub fn origin(&self, key: &Key) -> Origin {
        let Some(mut value) = self.merged.as_ref() else {
            return Origin::BuiltIn;
        };
        let mut nearest = None;
        let mut exact = true;
        for seg in &key.0 {
            let next = match (seg, value) {
                (Seg::Field(name), Value::Dict(_, dict)) => dict.get(name),
                (Seg::Index(i), Value::Array(_, items)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(next) => {
                    nearest = Some(next.tag());
                    value = next;
                }
                None => {
                    exact = false;
                    break;
                }
            }
        }
        // figment tags a table merged from several files with the last one.
        let file = nearest
            .and_then(|tag| self.figment.get_metadata(tag))
            .and_then(|meta| meta.source.as_ref())
            .and_then(Source::file_path)
            .map(Path::to_path_buf);
        match (file, exact) {
            (Some(file), true) => Origin::File(file),
            (Some(file), false) => Origin::DefaultIn(file),
            (None, _) => Origin::BuiltIn,
        }
    }

    /// figment reports array indices as strings; the merged tree tells which
    /// path segments step into an array.
    fn key_of(&self, path: &[String]) -> Key {
        let mut value = self.merged.as_ref();
        let mut key = Key::default();
        for name in path {
            let index = match value {
                Some(Value::Array(..)) => name.parse::<usize>().ok(),
                _ => None,
            };
            match index {
                Some(i) => {
                    value = match value {
                        Some(Value::Array(_, items)) => items.get(i),
                        _ => None,
                    };
                    key.0.push(Seg::Index(i));
                }
                None => {
                    value = match value {
                        Some(Value::Dict(_, dict)) => dict.get(name),
                        _ => None,
                    };
                    key.0.push(Seg::Field(name.clone()));
                }
            }
        }
        key
    }

    /// A figment extraction error as file + key + reason.
    fn explain(&self, err: figment::Error) -> ConfigError {
        // serde stops at the first error, so there is one; figment can chain
        // more, which would only repeat the cause.
        let Some(err) = err.into_iter().next() else {
            return ConfigError::key(Origin::BuiltIn, Key::default(), "invalid configuration");
        };
        let mut key = self.key_of(&err.path);
        let reason = match &err.kind {
            Kind::UnknownField(field, expected) => {
                format!(
                    "unknown key `{field}`; expected one of: {}",
                    expected.join(", ")
                )
            }
            Kind::MissingField(field) => {
                key = key.field(field);
                "missing required key".to_owned()
            }
            Kind::InvalidType(actual, expected) => {
                format!("wrong type: found {actual}, expected {expected}")
            }
            Kind::InvalidValue(actual, expected) => {
                format!("invalid value: found {actual}, expected {expected}")
            }
            Kind::UnknownVariant(found, expected) => {
                format!(
                    "unknown value `{found}`; expected one of: {}",
                    expected.join(", ")
                )
            }
            Kind::Message(message) if matches!(key.0.last(), Some(Seg::Field(f)) if f == "bind") => {
                format!(
                    "{message}: expected an IP address and port such as \"127.0.0.1:1883\" or \
                     \"[::1]:1883\" (host names are not resolved)"
                )
            }
            other => other.to_string(),
        };
        let origin = err
            .metadata
            .as_ref()
            .and_then(|meta| meta.source.as_ref())
            .and_then(Source::file_path)
            .map_or_else(|| self.origin(&key), |path| Origin::File(path.to_owned()));
        ConfigError::key(origin, key, reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    fn load(files: &[(&str, &str)]) -> (tempfile::TempDir, Result<Loaded, ConfigError>) {
        let dir = dir_with(files);
        let loaded = load_dir(dir.path());
        (dir, loaded)
    }

    fn error(files: &[(&str, &str)]) -> (tempfile::TempDir, String) {
        let (dir, loaded) = load(files);
        let err = loaded.err().expect("an error");
        (dir, err.to_string())
    }

    #[test]
    fn later_files_override_single_keys_and_tables_merge() {
        let (_dir, loaded) = load(&[
            (
                "10-base.toml",
                "[broker]\nmax_packet_size = 1000\nreceive_maximum = 10\n[auth]\ncache_ttl = \"5s\"\n",
            ),
            ("20-site.toml", "[broker]\nreceive_maximum = 20\n"),
        ]);
        let loaded = loaded.unwrap();
        assert_eq!(
            loaded.config.broker.max_packet_size, 1000,
            "kept from 10-base"
        );
        assert_eq!(
            loaded.config.broker.receive_maximum, 20,
            "overridden by 20-site"
        );
        assert_eq!(loaded.config.auth.cache_ttl, Duration::from_secs(5));
        // Keys no file sets keep their built-in default.
        assert_eq!(loaded.config.broker.max_topic_levels, 128);
        assert_eq!(loaded.files.len(), 2);
        // Provenance follows the layering.
        let receive = Key::of(&["broker", "receive_maximum"]);
        let packet = Key::of(&["broker", "max_packet_size"]);
        assert!(
            matches!(loaded.provenance.origin(&receive), Origin::File(p) if p.ends_with("20-site.toml"))
        );
        assert!(
            matches!(loaded.provenance.origin(&packet), Origin::File(p) if p.ends_with("10-base.toml"))
        );
        // An unset key: default, in the (merged) [broker] table.
        assert!(matches!(
            loaded
                .provenance
                .origin(&Key::of(&["broker", "max_topic_levels"])),
            Origin::DefaultIn(_)
        ));
        // A table no file has.
        assert_eq!(
            loaded.provenance.origin(&Key::of(&["storage", "backend"])),
            Origin::BuiltIn
        );
    }

    #[test]
    fn files_load_in_lexical_order_and_arrays_replace() {
        let (_dir, loaded) = load(&[
            // Written in the "wrong" order on purpose: names decide.
            (
                "b.toml",
                "[[listeners]]\nname = \"late\"\nbind = \"127.0.0.1:2\"\n",
            ),
            (
                "a.toml",
                "[[listeners]]\nname = \"one\"\nbind = \"127.0.0.1:1\"\n\
                 [[listeners]]\nname = \"two\"\nbind = \"127.0.0.1:3\"\n",
            ),
            ("c.txt", "this is not loaded"),
            (".hidden.toml", "not = \"loaded\""),
        ]);
        let loaded = loaded.unwrap();
        let names: Vec<_> = loaded
            .config
            .listeners
            .iter()
            .map(|l| l.name.as_str())
            .collect();
        assert_eq!(names, ["late"], "b.toml's array replaced a.toml's");
        let files: Vec<_> = loaded
            .files
            .iter()
            .map(|f| f.file_name().unwrap())
            .collect();
        assert_eq!(files, ["a.toml", "b.toml"]);
    }

    #[test]
    fn an_empty_dir_gives_the_defaults() {
        let (_dir, loaded) = load(&[]);
        let loaded = loaded.unwrap();
        assert_eq!(
            format!("{:?}", loaded.config),
            format!("{:?}", Config::default())
        );
    }

    #[test]
    fn the_shipped_conf_d_is_exactly_the_defaults() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conf.d");
        let loaded = load_dir(&dir).unwrap();
        assert_eq!(
            format!("{:?}", loaded.config),
            format!("{:?}", Config::default()),
            "conf.d/ must hold exactly the built-in defaults"
        );
    }

    #[test]
    fn unknown_key_names_file_key_and_the_valid_keys() {
        let (_dir, text) = error(&[
            ("a.toml", "[broker]\nmax_packet_size = 5\n"),
            ("b.toml", "[broker]\nmax_pakcet_size = 5\n"),
        ]);
        assert!(
            text.contains("b.toml: broker.max_pakcet_size: unknown key"),
            "{text}"
        );
        assert!(text.contains("max_packet_size"), "{text}");
    }

    #[test]
    fn wrong_type_names_the_file_that_set_it() {
        let (_dir, text) = error(&[
            ("a.toml", "[broker]\nmax_packet_size = \"big\"\n"),
            ("b.toml", "[broker]\nreceive_maximum = 5\n"),
        ]);
        assert!(
            text.contains(
                "a.toml: broker.max_packet_size: wrong type: found string \"big\", expected u32"
            ),
            "{text}"
        );
    }

    #[test]
    fn bad_bind_in_an_array_names_the_index() {
        let (_dir, text) = error(&[(
            "l.toml",
            "[[listeners]]\nname = \"a\"\n[[listeners]]\nname = \"b\"\nbind = \"nonsense\"\n",
        )]);
        assert!(
            text.contains("l.toml: listeners[1].bind: invalid socket address syntax"),
            "{text}"
        );
    }

    #[test]
    fn missing_field_names_the_field() {
        let (_dir, text) = error(&[(
            "acl.toml",
            "[[acl.rules]]\npermission = \"allow\"\ntopic = \"a\"\n",
        )]);
        assert!(
            text.contains("acl.toml: acl.rules[0].action: missing required key"),
            "{text}"
        );
    }

    #[test]
    fn unknown_enum_value_lists_the_choices() {
        let (_dir, text) = error(&[("l.toml", "[[listeners]]\nkind = \"udp\"\n")]);
        assert!(
            text.contains(
                "listeners[0].kind: unknown value `udp`; expected one of: tcp, tls, ws, wss"
            ),
            "{text}"
        );
    }

    #[test]
    fn out_of_range_numbers_and_bad_durations_are_invalid_values() {
        let (_dir, text) = error(&[("a.toml", "[broker]\nmax_keepalive = 70000\n")]);
        assert!(
            text.contains("broker.max_keepalive: invalid value"),
            "{text}"
        );
        let (_dir, text) = error(&[("a.toml", "[auth]\ncache_ttl = \"forever\"\n")]);
        assert!(
            text.contains(
                "auth.cache_ttl: invalid value: found string \"forever\", expected a duration"
            ),
            "{text}"
        );
    }

    #[test]
    fn syntax_errors_give_line_column_and_the_line() {
        let (_dir, text) = error(&[("s.toml", "[broker]\nmax_packet_size = = 3\n")]);
        assert!(
            text.contains("s.toml: line 2, column 19: TOML syntax error"),
            "{text}"
        );
        assert!(text.contains("max_packet_size = = 3"), "{text}");
    }

    #[test]
    fn syntax_errors_do_not_leak_passwords() {
        let (_dir, text) = error(&[(
            "s.toml",
            "[backends.pg]\nurl = \"postgres://u:hunter2@h/db\" x\n",
        )]);
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn wrong_type_errors_do_not_leak_passwords() {
        let (_dir, text) = error(&[("s.toml", "[storage]\nbackend = [\"redis://u:hunter2@h\"]\n")]);
        assert!(text.contains("storage.backend"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn directories_named_toml_are_refused() {
        let dir = dir_with(&[]);
        fs::create_dir(dir.path().join("x.toml")).unwrap();
        let text = load_dir(dir.path()).err().unwrap().to_string();
        assert!(
            text.contains("x.toml: cannot read the configuration file: is a directory"),
            "{text}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn dangling_symlinks_are_named() {
        let dir = dir_with(&[]);
        std::os::unix::fs::symlink(dir.path().join("gone"), dir.path().join("y.toml")).unwrap();
        let text = load_dir(dir.path()).err().unwrap().to_string();
        assert!(
            text.contains(
                "y.toml: cannot read the configuration file: is a symbolic link to a missing file"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_missing_dir_is_named() {
        let dir = dir_with(&[]);
        let missing = dir.path().join("nope");
        let text = load_dir(&missing).err().unwrap().to_string();
        assert!(
            text.contains("nope: cannot read the configuration directory"),
            "{text}"
        );
    }
}
