//! How a service connects to NATS: its name, its inbox prefix, how it
//! proves who it is and whether the connection is encrypted. Every secret
//! is read from a file, never from a flag's value, so that secrets do not
//! show up in process listings or shell history.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::BusError;

/// How a service authenticates to NATS and secures the connection. Each
/// service's `Config` flattens this in, so the flags and environment
/// variables are the same for all three.
///
/// At most one way to authenticate may be set: a user and password, a
/// token, an nkey seed or a credentials file. With none, the service
/// connects without credentials, as it does to a local development server.
#[derive(Clone, Debug, Default, PartialEq, Eq, clap::Args)]
pub struct NatsConnection {
    /// User to authenticate to NATS as; the password is read from `--nats-password-file`.
    #[arg(long = "nats-user", env = "MOMENTUM_NATS_USER")]
    pub user: Option<String>,
    /// File holding the NATS user's password (one trailing newline is ignored).
    #[arg(long = "nats-password-file", env = "MOMENTUM_NATS_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
    /// File holding a NATS authentication token.
    #[arg(long = "nats-token-file", env = "MOMENTUM_NATS_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// File holding an nkey seed (`SU…`) to authenticate to NATS with.
    #[arg(long = "nats-nkey-seed-file", env = "MOMENTUM_NATS_NKEY_SEED_FILE")]
    pub nkey_seed_file: Option<PathBuf>,
    /// A NATS credentials file (user JWT and nkey seed), as `nsc` writes them.
    #[arg(long = "nats-creds-file", env = "MOMENTUM_NATS_CREDS_FILE")]
    pub credentials_file: Option<PathBuf>,
    /// PEM file of the certificate authorities that sign the NATS server's certificate.
    #[arg(long = "nats-tls-ca-file", env = "MOMENTUM_NATS_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// PEM file of this service's client certificate, for servers that verify clients.
    #[arg(long = "nats-tls-cert-file", env = "MOMENTUM_NATS_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM file of the private key of `--nats-tls-cert-file`.
    #[arg(long = "nats-tls-key-file", env = "MOMENTUM_NATS_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// Refuse to connect to NATS without TLS.
    #[arg(long = "nats-tls-required", env = "MOMENTUM_NATS_TLS_REQUIRED", default_value_t = false)]
    pub tls_required: bool,
}

/// The servers of a comma-separated list of NATS URLs, as every service's
/// `--nats-url` takes them: the client starts with the first that answers
/// and fails over to the others.
pub fn server_addresses(urls: &str) -> Result<Vec<async_nats::ServerAddr>, BusError> {
    let addresses: Vec<async_nats::ServerAddr> = urls
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(|url| {
            url.parse::<async_nats::ServerAddr>()
                .map_err(|error| BusError::InvalidUrl { url: url.to_owned(), message: error.to_string() })
        })
        .collect::<Result<_, _>>()?;
    if addresses.is_empty() {
        return Err(BusError::InvalidUrl { url: urls.to_owned(), message: "no server named".to_owned() });
    }
    Ok(addresses)
}

/// The prefix of a service's reply subjects: `_INBOX.<service name>`.
/// Each service gets its own, so the server can allow each to subscribe to
/// its own replies only; with one shared `_INBOX.>` any service could read
/// the replies meant for another, such as the events the server delivers to
/// the projector.
pub fn inbox_prefix(service_name: &str) -> String {
    format!("_INBOX.{service_name}")
}

/// The options every momentum service connects with: a name for the
/// server's monitoring, its own inbox prefix, a bounded connection timeout
/// and the credentials and TLS settings of `settings`. The first connection
/// must succeed (a service that starts without NATS fails at once,
/// clearly); after that the client reconnects forever, and the services
/// answer 503 while NATS is away.
///
/// Every file named in `settings` is read (or, for TLS files, opened) here,
/// so a missing or unreadable file is reported by name before any
/// connection is tried.
pub fn connect_options(service_name: &str, settings: &NatsConnection) -> Result<async_nats::ConnectOptions, BusError> {
    let options = async_nats::ConnectOptions::new()
        .name(service_name)
        .custom_inbox_prefix(inbox_prefix(service_name))
        .connection_timeout(Duration::from_secs(5));
    let options = with_credentials(options, settings)?;
    with_tls(options, settings)
}

fn with_credentials(
    options: async_nats::ConnectOptions,
    settings: &NatsConnection,
) -> Result<async_nats::ConnectOptions, BusError> {
    let chosen: Vec<&'static str> = [
        (settings.user.is_some() || settings.password_file.is_some(), "a user and password"),
        (settings.token_file.is_some(), "a token"),
        (settings.nkey_seed_file.is_some(), "an nkey seed"),
        (settings.credentials_file.is_some(), "a credentials file"),
    ]
    .into_iter()
    .filter_map(|(set, name)| set.then_some(name))
    .collect();
    if chosen.len() > 1 {
        return Err(BusError::AuthenticationConflict(chosen.join(", ")));
    }
    if let (Some(user), Some(password_file)) = (&settings.user, &settings.password_file) {
        let password = read_secret("password", password_file)?;
        return Ok(options.user_and_password(user.clone(), password));
    }
    if settings.user.is_some() {
        return Err(BusError::PasswordFileMissing);
    }
    if settings.password_file.is_some() {
        return Err(BusError::UserMissing);
    }
    if let Some(token_file) = &settings.token_file {
        return Ok(options.token(read_secret("token", token_file)?));
    }
    if let Some(seed_file) = &settings.nkey_seed_file {
        return Ok(options.nkey(read_secret("nkey seed", seed_file)?));
    }
    if let Some(credentials_file) = &settings.credentials_file {
        let credentials = read_secret("credentials", credentials_file)?;
        return options.credentials(&credentials).map_err(|source| BusError::InvalidCredentials {
            path: credentials_file.clone(),
            message: source.to_string(),
        });
    }
    Ok(options)
}

fn with_tls(
    mut options: async_nats::ConnectOptions,
    settings: &NatsConnection,
) -> Result<async_nats::ConnectOptions, BusError> {
    if let Some(ca_file) = &settings.tls_ca_file {
        check_readable("TLS certificate authority", ca_file)?;
        options = options.add_root_certificates(ca_file.clone());
    }
    match (&settings.tls_cert_file, &settings.tls_key_file) {
        (Some(cert_file), Some(key_file)) => {
            check_readable("TLS client certificate", cert_file)?;
            check_readable("TLS client key", key_file)?;
            options = options.add_client_certificate(cert_file.clone(), key_file.clone());
        }
        (Some(_), None) => return Err(BusError::TlsKeyMissing),
        (None, Some(_)) => return Err(BusError::TlsCertificateMissing),
        (None, None) => {}
    }
    Ok(options.require_tls(settings.tls_required))
}

/// Reads a secret from its file. One trailing line break is dropped,
/// because `echo secret > file` and most editors add one.
fn read_secret(what: &'static str, path: &Path) -> Result<String, BusError> {
    let mut secret =
        std::fs::read_to_string(path).map_err(|source| BusError::ReadFile { what, path: path.to_owned(), source })?;
    if secret.ends_with('\n') {
        secret.pop();
        if secret.ends_with('\r') {
            secret.pop();
        }
    }
    if secret.is_empty() {
        return Err(BusError::EmptyFile { what, path: path.to_owned() });
    }
    Ok(secret)
}

/// The client reads TLS files itself, only when it connects; opening them
/// here turns a wrong path into an error that names the file.
fn check_readable(what: &'static str, path: &Path) -> Result<(), BusError> {
    std::fs::File::open(path).map(drop).map_err(|source| BusError::ReadFile { what, path: path.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comma_separated_list_of_urls_names_every_server_and_a_bad_one_is_named() {
        let addresses = server_addresses("nats://127.0.0.1:4222, nats://127.0.0.1:4223,nats://10.0.0.3:4222").unwrap();
        assert_eq!(addresses.len(), 3);
        let error = server_addresses("nats://127.0.0.1:4222,nats://host:notaport").unwrap_err();
        assert!(error.to_string().contains("nats://host:notaport"), "{error}");
        assert!(server_addresses(" , ").is_err());
    }

    fn file_with(contents: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), contents).unwrap();
        file
    }

    #[test]
    fn no_settings_connect_without_credentials() {
        assert!(connect_options("momentum-test", &NatsConnection::default()).is_ok());
    }

    #[test]
    fn a_password_file_that_cannot_be_read_is_named_in_the_error() {
        let settings = NatsConnection {
            user: Some("ingest".to_owned()),
            password_file: Some(PathBuf::from("/nonexistent/momentum/password")),
            ..NatsConnection::default()
        };
        let error = connect_options("momentum-test", &settings).unwrap_err().to_string();
        assert!(error.starts_with("could not read the NATS password file /nonexistent/momentum/password: "), "{error}");
    }

    #[test]
    fn secrets_lose_one_trailing_line_break_and_nothing_else() {
        assert_eq!(read_secret("password", file_with("s3cret\n").path()).unwrap(), "s3cret");
        assert_eq!(read_secret("password", file_with("s3cret\r\n").path()).unwrap(), "s3cret");
        assert_eq!(read_secret("password", file_with(" s3cret \n\n").path()).unwrap(), " s3cret \n");
    }

    #[test]
    fn an_empty_secret_file_is_refused() {
        let file = file_with("\n");
        let settings = NatsConnection { token_file: Some(file.path().to_owned()), ..NatsConnection::default() };
        let error = connect_options("momentum-test", &settings).unwrap_err().to_string();
        assert_eq!(error, format!("the NATS token file {} is empty", file.path().display()));
    }

    #[test]
    fn a_user_needs_a_password_file_and_a_password_file_needs_a_user() {
        let password = file_with("secret");
        let user_only = NatsConnection { user: Some("query".to_owned()), ..NatsConnection::default() };
        assert!(matches!(connect_options("momentum-test", &user_only), Err(BusError::PasswordFileMissing)));
        let password_only =
            NatsConnection { password_file: Some(password.path().to_owned()), ..NatsConnection::default() };
        assert!(matches!(connect_options("momentum-test", &password_only), Err(BusError::UserMissing)));
    }

    #[test]
    fn two_ways_to_authenticate_at_once_are_refused() {
        let secret = file_with("secret");
        let settings = NatsConnection {
            user: Some("query".to_owned()),
            password_file: Some(secret.path().to_owned()),
            token_file: Some(secret.path().to_owned()),
            ..NatsConnection::default()
        };
        let error = connect_options("momentum-test", &settings).unwrap_err().to_string();
        assert_eq!(error, "choose one way to authenticate to NATS, not several: a user and password, a token");
    }

    #[test]
    fn a_credentials_file_that_is_not_one_is_refused_by_name() {
        let file = file_with("not a credentials file");
        let settings = NatsConnection { credentials_file: Some(file.path().to_owned()), ..NatsConnection::default() };
        let error = connect_options("momentum-test", &settings).unwrap_err().to_string();
        assert!(error.starts_with(&format!("the NATS credentials file {} is not valid: ", file.path().display())));
    }

    #[test]
    fn tls_files_must_exist_and_a_certificate_needs_its_key() {
        let certificate = file_with("-----BEGIN CERTIFICATE-----");
        let missing_ca =
            NatsConnection { tls_ca_file: Some(PathBuf::from("/nonexistent/ca.pem")), ..NatsConnection::default() };
        let error = connect_options("momentum-test", &missing_ca).unwrap_err().to_string();
        assert!(error.starts_with("could not read the NATS TLS certificate authority file /nonexistent/ca.pem: "));
        let without_key =
            NatsConnection { tls_cert_file: Some(certificate.path().to_owned()), ..NatsConnection::default() };
        assert!(matches!(connect_options("momentum-test", &without_key), Err(BusError::TlsKeyMissing)));
    }

    #[test]
    fn each_service_replies_on_its_own_inbox_prefix() {
        assert_eq!(inbox_prefix("momentum-query"), "_INBOX.momentum-query");
    }
}
