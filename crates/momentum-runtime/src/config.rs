//! Settings from a file, the environment and flags, in one `clap` parse.
//!
//! Every service setting has a flag (`--nats-url`) and an environment
//! variable (`MOMENTUM_NATS_URL`). A TOML file named by `--config-file` or
//! `MOMENTUM_CONFIG_FILE` may also hold them, keyed by the flag's name with
//! `_` for `-` (`nats_url = "nats://nats:4222"`). What wins: a flag, then
//! the environment, then the file, then the built-in default. The file's
//! values become the defaults clap falls back to, so `--help` and error
//! messages stay clap's own. Secrets are never values in the file: the
//! settings that carry them name files (`nats_password_file`, `auth_file`).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgMatches, CommandFactory, FromArgMatches};

/// The flag and variable that name the settings file.
const CONFIG_FILE_ARGUMENT: &str = "config_file";

/// Why the settings file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("cannot read the settings file {}: {message}", path.display())]
    Read {
        /// The file's path, as given.
        path: PathBuf,
        /// Why it could not be read.
        message: String,
    },
    /// The file is not valid TOML.
    #[error("the settings file {} is not valid TOML: {message}", path.display())]
    NotToml {
        /// The file's path, as given.
        path: PathBuf,
        /// The TOML parser's reason.
        message: String,
    },
    /// The file sets a key that is not one of the command's settings.
    #[error("the settings file {} sets {key:?}, which is not a setting; the settings are: {known}", path.display())]
    UnknownKey {
        /// The file's path, as given.
        path: PathBuf,
        /// The key that is not a setting.
        key: String,
        /// Every key the file may set, separated by commas.
        known: String,
    },
    /// The file sets a key to a table or an array rather than a single value.
    #[error("the settings file {} sets {key:?} to a table or a list; settings are single values", path.display())]
    NotAValue {
        /// The file's path, as given.
        path: PathBuf,
        /// The key set to a table or an array.
        key: String,
    },
}

/// Parses `C` from the process's arguments, environment and settings file;
/// prints help or the error and exits, as clap does, when asked or wrong.
pub fn parse<C: CommandFactory + FromArgMatches>() -> C {
    match try_parse_from::<C>(std::env::args_os()) {
        Ok(config) => config,
        Err(ParseError::Clap(error)) => error.exit(),
        Err(ParseError::File(error)) => {
            eprintln!("error: {error}");
            std::process::exit(2);
        }
    }
}

/// Why [`try_parse_from`] could not parse the settings.
#[derive(Debug)]
pub enum ParseError {
    /// clap refused the flags, variables or file values, or was asked for help or the version.
    Clap(clap::Error),
    /// The settings file could not be used.
    File(ConfigFileError),
}

/// [`parse`] from given arguments, without exiting.
pub fn try_parse_from<C: CommandFactory + FromArgMatches>(
    arguments: impl IntoIterator<Item = impl Into<OsString> + Clone>,
) -> Result<C, ParseError> {
    let arguments: Vec<OsString> = arguments.into_iter().map(Into::into).collect();
    let command = || {
        C::command().arg(
            Arg::new(CONFIG_FILE_ARGUMENT)
                .long("config-file")
                .env("MOMENTUM_CONFIG_FILE")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help("TOML file of settings (keys as the flags, `_` for `-`); flags and variables override it"),
        )
    };
    // A first, lenient pass finds the settings file; --help and mistakes
    // are left to the real pass, which knows the file's defaults.
    let first = command().ignore_errors(true).disable_help_flag(true).disable_version_flag(true);
    let file = first
        .try_get_matches_from(arguments.clone())
        .ok()
        .and_then(|matches| matches.get_one::<PathBuf>(CONFIG_FILE_ARGUMENT).cloned());
    let mut command = command();
    if let Some(path) = file {
        for (key, value) in read_settings(&path, &command).map_err(ParseError::File)? {
            command = command.mut_arg(key, |argument| argument.default_value(value));
        }
    }
    let matches: ArgMatches = command.try_get_matches_from(arguments).map_err(ParseError::Clap)?;
    C::from_arg_matches(&matches).map_err(ParseError::Clap)
}

/// The settings in a file, checked against the command's arguments, by
/// argument id.
fn read_settings(path: &Path, command: &clap::Command) -> Result<BTreeMap<String, String>, ConfigFileError> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| ConfigFileError::Read { path: path.to_owned(), message: error.to_string() })?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|error| ConfigFileError::NotToml { path: path.to_owned(), message: error.to_string() })?;
    // A key is the flag's long name with `_` for `-`; clap knows the
    // argument by its id, which may differ (`nats_user` is the id `user`).
    let known: BTreeMap<String, String> = command
        .get_arguments()
        .filter(|argument| argument.get_id() != CONFIG_FILE_ARGUMENT)
        .filter_map(|argument| Some((argument.get_long()?.replace('-', "_"), argument.get_id().to_string())))
        .collect();
    let mut settings = BTreeMap::new();
    for (key, value) in table {
        let Some(id) = known.get(&key) else {
            let known = known.keys().map(String::as_str).collect::<Vec<_>>().join(", ");
            return Err(ConfigFileError::UnknownKey { path: path.to_owned(), key, known });
        };
        let value = match value {
            toml::Value::String(text) => text,
            toml::Value::Integer(number) => number.to_string(),
            toml::Value::Float(number) => number.to_string(),
            toml::Value::Boolean(flag) => flag.to_string(),
            toml::Value::Datetime(time) => time.to_string(),
            toml::Value::Array(_) | toml::Value::Table(_) => {
                return Err(ConfigFileError::NotAValue { path: path.to_owned(), key });
            }
        };
        settings.insert(id.clone(), value);
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Settings {
        #[arg(long, env = "MOMENTUM_TEST_CONFIG_NATS_URL", default_value = "nats://default:4222")]
        nats_url: String,
        #[arg(long, env = "MOMENTUM_TEST_CONFIG_BATCH_SIZE_MAX", default_value_t = 1000)]
        batch_size_max: usize,
        #[arg(long, env = "MOMENTUM_TEST_CONFIG_LOG_JSON", default_value_t = false)]
        log_json: bool,
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn the_file_fills_in_what_flags_do_not_say_and_flags_win() {
        let settings = file("nats_url = \"nats://from-file:4222\"\nbatch_size_max = 50\nlog_json = true\n");
        let path = settings.path().to_str().unwrap();
        let parsed: Settings = try_parse_from(["service", "--config-file", path]).unwrap();
        assert_eq!(
            (parsed.nats_url.as_str(), parsed.batch_size_max, parsed.log_json),
            ("nats://from-file:4222", 50, true)
        );
        let parsed: Settings = try_parse_from(["service", "--config-file", path, "--batch-size-max", "7"]).unwrap();
        assert_eq!((parsed.nats_url.as_str(), parsed.batch_size_max), ("nats://from-file:4222", 7));
        let parsed: Settings = try_parse_from(["service"]).unwrap();
        assert_eq!(parsed.nats_url, "nats://default:4222", "without a file, the defaults");
    }

    #[test]
    fn a_key_that_is_not_a_setting_or_a_value_of_the_wrong_type_is_an_error_naming_it() {
        let settings = file("nats_ulr = \"nats://typo:4222\"\n");
        let Err(ParseError::File(error)) =
            try_parse_from::<Settings>(["service", "--config-file", settings.path().to_str().unwrap()])
        else {
            panic!("a typo was accepted")
        };
        assert!(error.to_string().contains("\"nats_ulr\"") && error.to_string().contains("nats_url"), "{error}");
        let settings = file("batch_size_max = \"many\"\n");
        let result = try_parse_from::<Settings>(["service", "--config-file", settings.path().to_str().unwrap()]);
        assert!(matches!(result, Err(ParseError::Clap(_))), "clap checks the value's type");
        let missing = try_parse_from::<Settings>(["service", "--config-file", "/no/such/file.toml"]);
        assert!(matches!(missing, Err(ParseError::File(ConfigFileError::Read { .. }))));
    }
}
