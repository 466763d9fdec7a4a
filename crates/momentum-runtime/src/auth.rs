//! Bearer-token authentication and the roles and scopes behind it.
//!
//! Tokens are configured in a TOML file (`MOMENTUM_AUTH_FILE`) that holds
//! only their SHA-256 digests, so a leaked file does not leak a token. A
//! presented token is hashed and compared with every configured digest in
//! constant time, so response timing says nothing about how close a guess was.
//!
//! ```toml
//! [[token]]
//! name = "leeds-volunteer-centre"          # for logs, never the token
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! role = "partner"                         # partner | evaluator | admin
//! source = "urn:partner:leeds-volunteer-centre"  # partners only
//! movements = ["leeds-walks"]              # or ["*"]
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::Problem;

/// The most tokens one auth file may hold; lookups compare against all of
/// them, so the bound keeps a request's cost bounded too.
pub const TOKENS_MAX: usize = 10_000;

/// What a caller may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenRole {
    /// Posts events of its own `source` for its movements; reads nothing.
    Partner,
    /// Reads the movements in its list; writes nothing.
    Evaluator,
    /// Does everything, including erasure.
    Admin,
}

impl TokenRole {
    /// The role's name, as the auth file writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenRole::Partner => "partner",
            TokenRole::Evaluator => "evaluator",
            TokenRole::Admin => "admin",
        }
    }
}

/// The movements a token covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Movements {
    /// Every movement, now and later: `["*"]` in the auth file.
    All,
    /// Only the movement ids listed.
    Only(BTreeSet<String>),
}

impl Movements {
    /// Whether `movement` is one of them.
    pub fn contains(&self, movement: &str) -> bool {
        match self {
            Movements::All => true,
            Movements::Only(movements) => movements.contains(movement),
        }
    }
}

/// The authenticated caller of a request, put in the request's extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The token's name from the auth file, for logs.
    pub name: String,
    /// What the caller may do.
    pub role: TokenRole,
    /// The CloudEvents `source` a partner's events must carry.
    pub source: Option<String>,
    /// The movements the token covers; an admin may act on every movement, whatever it lists.
    pub movements: Movements,
}

impl Caller {
    /// The caller every request has when authentication is switched off.
    pub fn unauthenticated_admin() -> Caller {
        Caller { name: "anyone (auth off)".to_owned(), role: TokenRole::Admin, source: None, movements: Movements::All }
    }

    /// Whether the caller may read a movement's figures.
    pub fn may_read(&self, movement: &str) -> bool {
        match self.role {
            TokenRole::Admin => true,
            TokenRole::Evaluator => self.movements.contains(movement),
            TokenRole::Partner => false,
        }
    }

    /// Checks that the caller may read at all; a 403 otherwise.
    pub fn require_reader(&self) -> Result<(), Problem> {
        match self.role {
            TokenRole::Admin | TokenRole::Evaluator => Ok(()),
            TokenRole::Partner => Err(forbidden("partner tokens may post events but not read figures")),
        }
    }

    /// Checks that the caller may read `movement`; a 403 otherwise.
    pub fn require_read(&self, movement: &str) -> Result<(), Problem> {
        self.require_reader()?;
        if self.may_read(movement) {
            Ok(())
        } else {
            Err(forbidden(format!("this token may not read movement {movement:?}")))
        }
    }

    /// Checks that the caller may post events at all; a 403 otherwise.
    pub fn require_writer(&self) -> Result<(), Problem> {
        match self.role {
            TokenRole::Admin | TokenRole::Partner => Ok(()),
            TokenRole::Evaluator => Err(forbidden("evaluator tokens may read figures but not post events")),
        }
    }

    /// Checks that the caller may post an event with this `source` for this
    /// movement; a 403 naming the field otherwise.
    pub fn require_write(&self, source: &str, movement: &str) -> Result<(), Problem> {
        match self.role {
            TokenRole::Admin => Ok(()),
            TokenRole::Evaluator => self.require_writer(),
            TokenRole::Partner => {
                if self.source.as_deref() != Some(source) {
                    return Err(forbidden(format!(
                        "this token may only post events whose source is {:?}",
                        self.source
                    ))
                    .field("/source", "is not the source of this token"));
                }
                if !self.movements.contains(movement) {
                    return Err(forbidden(format!("this token may not post events for movement {movement:?}"))
                        .field("/subject", "is not one of this token's movements"));
                }
                Ok(())
            }
        }
    }

    /// Checks that the caller may ask what became of `source`'s events:
    /// an admin, or a partner of that source. Another source's events are
    /// answered 404, as if they did not exist, so that no partner learns
    /// which ids another has posted; an evaluator gets a 403.
    pub fn require_source_reader(&self, source: &str) -> Result<(), Problem> {
        match self.role {
            TokenRole::Admin => Ok(()),
            TokenRole::Evaluator => Err(forbidden("evaluator tokens read figures, not partners' events")),
            TokenRole::Partner if self.source.as_deref() == Some(source) => Ok(()),
            TokenRole::Partner => Err(Problem::new(StatusCode::NOT_FOUND, "unknown-event", "no such event")
                .detail("this token knows no events of that source")),
        }
    }

    /// Checks that the caller is an admin; a 403 otherwise.
    pub fn require_admin(&self) -> Result<(), Problem> {
        if self.role == TokenRole::Admin { Ok(()) } else { Err(forbidden("this needs an admin token")) }
    }
}

fn forbidden(detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::FORBIDDEN, "forbidden", "the token does not allow this").detail(detail)
}

/// Whether requests must carry a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// Every request must carry a configured bearer token.
    On,
    /// Every request is served as an admin's, without a token: only for local trials.
    Off,
}

/// The authentication settings every HTTP service shares.
#[derive(Clone, Debug, clap::Args)]
pub struct AuthSettings {
    /// The TOML file of tokens (their SHA-256 digests, roles and scopes).
    /// Required unless authentication is switched off.
    #[arg(long, env = "MOMENTUM_AUTH_FILE")]
    pub auth_file: Option<PathBuf>,
    /// `off` serves every request without a token. Only for local trials:
    /// the service says so loudly in its log.
    #[arg(long, env = "MOMENTUM_AUTH", value_enum, default_value = "on")]
    pub auth: AuthMode,
}

impl AuthSettings {
    /// Settings that use the given auth file.
    pub fn file(path: impl Into<PathBuf>) -> AuthSettings {
        AuthSettings { auth_file: Some(path.into()), auth: AuthMode::On }
    }

    /// Reads the auth file, or refuses when there is none and authentication
    /// was not switched off explicitly.
    pub fn load(&self, service: &str) -> Result<Authenticator, AuthError> {
        match (self.auth, &self.auth_file) {
            (AuthMode::Off, _) => {
                tracing::warn!(
                    service,
                    "AUTHENTICATION IS OFF (MOMENTUM_AUTH=off): anyone who can reach this service may read and \
                     write every movement's data; never run like this outside a trial on your own machine"
                );
                Ok(Authenticator { tokens: None })
            }
            (AuthMode::On, None) => Err(AuthError::NoFile),
            (AuthMode::On, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| AuthError::Read { path: path.clone(), message: source.to_string() })?;
                let authenticator = Authenticator::from_toml(&text)
                    .map_err(|message| AuthError::Invalid { path: path.clone(), message })?;
                let count = authenticator.tokens.as_ref().map_or(0, Vec::len);
                tracing::info!(service, tokens = count, file = %path.display(), "authentication on");
                Ok(authenticator)
            }
        }
    }
}

/// Why the auth settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Authentication is on but no auth file is set.
    #[error(
        "no auth file: set MOMENTUM_AUTH_FILE to a TOML file of tokens, or MOMENTUM_AUTH=off to serve without \
         authentication (only for local trials)"
    )]
    NoFile,
    /// The auth file could not be read.
    #[error("cannot read the auth file {}: {message}", path.display())]
    Read {
        /// The path of the auth file, as it was given.
        path: PathBuf,
        /// Why it could not be read.
        message: String,
    },
    /// The auth file is not a valid TOML file of tokens, or a token in it breaks a rule.
    #[error("the auth file {} is not valid: {message}", path.display())]
    Invalid {
        /// The path of the auth file, as it was given.
        path: PathBuf,
        /// What is wrong, naming the token when one is at fault.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    #[serde(default)]
    token: Vec<TokenEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    sha256: String,
    role: TokenRole,
    source: Option<String>,
    #[serde(default)]
    movements: Vec<String>,
}

/// Finds the caller a bearer token stands for.
#[derive(Clone, Debug)]
pub struct Authenticator {
    /// `None` when authentication is off.
    tokens: Option<Vec<([u8; 32], Arc<Caller>)>>,
}

impl Authenticator {
    /// Reads an auth file's text; the error says which token is wrong and why.
    pub fn from_toml(text: &str) -> Result<Authenticator, String> {
        let file: AuthFile = toml::from_str(text).map_err(|error| error.to_string())?;
        if file.token.len() > TOKENS_MAX {
            return Err(format!("{} tokens; at most {TOKENS_MAX} are allowed", file.token.len()));
        }
        let mut tokens = Vec::with_capacity(file.token.len());
        let mut names = BTreeSet::new();
        for entry in file.token {
            let name = entry.name.clone();
            let problem = |message: String| format!("token {name:?}: {message}");
            if !names.insert(entry.name.clone()) {
                return Err(problem("the name is used twice".to_owned()));
            }
            let digest = parse_digest(&entry.sha256).map_err(problem)?;
            if tokens.iter().any(|(existing, _): &([u8; 32], Arc<Caller>)| *existing == digest) {
                return Err(problem("the same sha256 is configured twice".to_owned()));
            }
            let movements = if entry.movements.iter().any(|movement| movement == "*") {
                Movements::All
            } else {
                Movements::Only(entry.movements.iter().cloned().collect())
            };
            match (entry.role, &entry.source) {
                (TokenRole::Partner, None) => return Err(problem("a partner token needs a source".to_owned())),
                (TokenRole::Evaluator | TokenRole::Admin, Some(_)) => {
                    return Err(problem("only partner tokens have a source".to_owned()));
                }
                _ => {}
            }
            if entry.role != TokenRole::Admin && movements == Movements::Only(BTreeSet::new()) {
                return Err(problem("movements is empty: list movement ids, or [\"*\"] for all".to_owned()));
            }
            let caller = Caller { name: entry.name, role: entry.role, source: entry.source, movements };
            tokens.push((digest, Arc::new(caller)));
        }
        Ok(Authenticator { tokens: Some(tokens) })
    }

    /// Whether requests must carry a token (false when authentication is off).
    pub fn is_on(&self) -> bool {
        self.tokens.is_some()
    }

    /// The caller a token stands for, if any. Every configured digest is
    /// compared, in constant time, whichever matches.
    pub fn caller(&self, token: &str) -> Option<Arc<Caller>> {
        let Some(tokens) = &self.tokens else { return Some(Arc::new(Caller::unauthenticated_admin())) };
        let digest = sha256(token.as_bytes());
        let mut found = None;
        for (configured, caller) in tokens {
            if bool::from(configured.ct_eq(&digest)) {
                found = Some(caller.clone());
            }
        }
        found
    }

    /// The caller of a request, from its `Authorization: Bearer` header.
    pub fn authenticate(&self, request: &Request) -> Result<Arc<Caller>, Problem> {
        if self.tokens.is_none() {
            return Ok(Arc::new(Caller::unauthenticated_admin()));
        }
        let header = request.headers().get(header::AUTHORIZATION).map(HeaderValue::to_str);
        let token = match header {
            None => return Err(unauthorized("send Authorization: Bearer <token>")),
            Some(Err(_)) => return Err(unauthorized("the Authorization header is not text")),
            Some(Ok(value)) => match value.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
                    token.trim()
                }
                _ => return Err(unauthorized("the Authorization header must be Bearer <token>")),
            },
        };
        self.caller(token).ok_or_else(|| unauthorized("the token is not known"))
    }
}

/// The hex SHA-256 digest of a token: what the auth file holds.
pub fn token_digest_hex(token: &str) -> String {
    sha256(token.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect()
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().try_into().expect("SHA-256 digests are 32 bytes")
}

fn parse_digest(hex: &str) -> Result<[u8; 32], String> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Err("sha256 must be 64 hex digits (the SHA-256 of the token, e.g. from sha256sum)".to_owned());
    }
    let mut digest = [0u8; 32];
    for (index, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * index..2 * index + 2], 16).expect("checked hex digits");
    }
    Ok(digest)
}

fn unauthorized(detail: &str) -> Problem {
    Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "a valid bearer token is needed").detail(detail)
}

/// Middleware that authenticates every request of the routes it wraps and
/// puts the [`Caller`] in the request's extensions; 401 otherwise.
pub async fn require_token(authenticator: Arc<Authenticator>, mut request: Request, next: Next) -> Response {
    match authenticator.authenticate(&request) {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(problem) => {
            let mut response = problem.into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"momentum\""));
            response
        }
    }
}

/// Wraps `router` so that every one of its routes needs a token. Paths that
/// match no route are left to the fallback, so they stay 404, not 401.
pub fn protect<S: Clone + Send + Sync + 'static>(
    router: axum::Router<S>,
    authenticator: Arc<Authenticator>,
) -> axum::Router<S> {
    router.route_layer(axum::middleware::from_fn(move |request: Request, next: Next| {
        require_token(authenticator.clone(), request, next)
    }))
}

/// Reads a secret from a file, trimmed of surrounding whitespace.
pub fn read_secret_file(path: &Path) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(path)?.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> String {
        format!(
            r#"
            [[token]]
            name = "partner-a"
            sha256 = "{}"
            role = "partner"
            source = "urn:a"
            movements = ["leeds"]

            [[token]]
            name = "evaluator"
            sha256 = "{}"
            role = "evaluator"
            movements = ["leeds", "york"]

            [[token]]
            name = "admin"
            sha256 = "{}"
            role = "admin"
            "#,
            token_digest_hex("partner-secret"),
            token_digest_hex("evaluator-secret"),
            token_digest_hex("admin-secret"),
        )
    }

    #[test]
    fn a_token_finds_its_caller_and_an_unknown_token_finds_none() {
        let authenticator = Authenticator::from_toml(&file()).unwrap();
        assert_eq!(authenticator.caller("partner-secret").unwrap().name, "partner-a");
        assert_eq!(authenticator.caller("admin-secret").unwrap().role, TokenRole::Admin);
        assert!(authenticator.caller("partner-secre").is_none());
        assert!(authenticator.caller("").is_none());
    }

    #[test]
    fn partners_write_only_their_source_and_movements_and_read_nothing() {
        let authenticator = Authenticator::from_toml(&file()).unwrap();
        let partner = authenticator.caller("partner-secret").unwrap();
        assert!(partner.require_write("urn:a", "leeds").is_ok());
        let other_source = partner.require_write("urn:b", "leeds").unwrap_err();
        assert_eq!(other_source.status, 403);
        assert_eq!(other_source.errors[0].pointer, "/source");
        assert_eq!(partner.require_write("urn:a", "york").unwrap_err().errors[0].pointer, "/subject");
        assert!(partner.require_read("leeds").is_err());
    }

    #[test]
    fn evaluators_read_their_movements_only_and_write_nothing() {
        let authenticator = Authenticator::from_toml(&file()).unwrap();
        let evaluator = authenticator.caller("evaluator-secret").unwrap();
        assert!(evaluator.require_read("york").is_ok());
        assert!(evaluator.require_read("bradford").is_err());
        assert!(evaluator.require_write("urn:a", "leeds").is_err());
        assert!(evaluator.require_admin().is_err());
        let admin = authenticator.caller("admin-secret").unwrap();
        assert!(admin.require_read("bradford").is_ok() && admin.require_write("urn:x", "y").is_ok());
    }

    #[test]
    fn auth_files_with_mistakes_are_refused_with_the_token_named() {
        let digest = token_digest_hex("x");
        let cases = [
            (
                format!("[[token]]\nname = \"p\"\nsha256 = \"{digest}\"\nrole = \"partner\"\nmovements = [\"*\"]"),
                "source",
            ),
            (
                "[[token]]\nname = \"e\"\nsha256 = \"abc\"\nrole = \"evaluator\"\nmovements = [\"*\"]".to_owned(),
                "64 hex",
            ),
            (format!("[[token]]\nname = \"e\"\nsha256 = \"{digest}\"\nrole = \"evaluator\""), "movements is empty"),
            (format!("[[token]]\nname = \"e\"\nsha256 = \"{digest}\"\nrole = \"reader\"\nmovements = [\"*\"]"), "role"),
            (
                format!(
                    "[[token]]\nname = \"a\"\nsha256 = \"{digest}\"\nrole = \"admin\"\n\
                     [[token]]\nname = \"b\"\nsha256 = \"{digest}\"\nrole = \"admin\""
                ),
                "twice",
            ),
        ];
        for (text, expected) in cases {
            let error = Authenticator::from_toml(&text).unwrap_err();
            assert!(error.contains(expected), "{error:?} should mention {expected:?}");
        }
    }

    #[test]
    fn the_service_refuses_to_start_without_an_auth_file_unless_auth_is_off() {
        let missing = AuthSettings { auth_file: None, auth: AuthMode::On };
        assert!(matches!(missing.load("test"), Err(AuthError::NoFile)));
        let off = AuthSettings { auth_file: None, auth: AuthMode::Off };
        let authenticator = off.load("test").unwrap();
        assert!(!authenticator.is_on());
        assert_eq!(authenticator.caller("anything").unwrap().role, TokenRole::Admin);
    }
}
