//! The query parameters of a route, read into the route's own type.
//!
//! Each route names its parameters in one struct (`Deserialize` with
//! `deny_unknown_fields`, and `utoipa::IntoParams` for its document), and
//! converts it with `TryFrom` into the domain request it stands for. This
//! extractor reads the query string into that struct. A parameter the route
//! does not take, or one given twice, is a 400 problem naming it: a typo in
//! a filter must not answer unfiltered figures that look right.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::problem::Problem;

/// The query parameters of a request, as the route's type `T`.
#[derive(Debug)]
pub struct Parameters<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for Parameters<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Problem> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(query).map(Parameters).map_err(|error| refusal(&error.to_string()))
    }
}

/// The problem for a query string the route's type refused. A route's
/// parameters are all text until converted, so the only refusals are a
/// name the route does not take and a name given twice; serde words both
/// with the name between backticks.
fn refusal(message: &str) -> Problem {
    let named = message.split('`').nth(1).filter(|name| !name.is_empty());
    match named {
        Some(name) if message.starts_with("unknown field") => {
            // "expected `a`", "expected `a` or `b`", "expected one of `a`, `b`, `c`",
            // or "there are no fields".
            let known = message.split_once("expected ").map(|(_, known)| known.trim_start_matches("one of "));
            let takes =
                known.map_or("it takes none".to_owned(), |known| format!("it takes {}", known.replace('`', "")));
            Problem::bad_parameter(name, format!("is not a parameter of this route; {takes}"))
        }
        Some(name) if message.starts_with("duplicate field") => Problem::bad_parameter(name, "is given more than once"),
        _ => Problem::bad_parameter("query", message.to_owned()),
    }
}

/// The parameters of a route that takes none.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NoParameters {}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Range {
        from: Option<String>,
        to: Option<String>,
    }

    async fn read<T: serde::de::DeserializeOwned>(query: &str) -> Result<T, Problem> {
        let request = axum::http::Request::get(format!("/x?{query}")).body(()).expect("a request");
        let (mut parts, ()) = request.into_parts();
        Parameters::<T>::from_request_parts(&mut parts, &()).await.map(|Parameters(value)| value)
    }

    #[tokio::test]
    async fn parameters_are_read_into_the_routes_type() {
        let range: Range = read("from=2026-03-02&to=2026-03-09").await.unwrap();
        assert_eq!((range.from.as_deref(), range.to.as_deref()), (Some("2026-03-02"), Some("2026-03-09")));
        let none: Range = read("").await.unwrap();
        assert_eq!((none.from, none.to), (None, None));
    }

    #[tokio::test]
    async fn an_unknown_parameter_is_a_400_naming_it_and_what_the_route_takes() {
        let problem = read::<Range>("from=2026-03-02&area=E01000002").await.unwrap_err();
        assert_eq!(problem.status, 400);
        assert_eq!(problem.errors[0].pointer, "area");
        assert!(problem.errors[0].message.ends_with("it takes from or to"), "{:?}", problem.errors);
        let problem = read::<NoParameters>("verbose=1").await.unwrap_err();
        assert_eq!(problem.errors[0].pointer, "verbose");
        assert!(problem.errors[0].message.ends_with("it takes none"), "{:?}", problem.errors);
    }

    #[tokio::test]
    async fn a_parameter_given_twice_is_a_400_naming_it() {
        let problem = read::<Range>("to=2026-03-02&to=2026-03-09").await.unwrap_err();
        assert_eq!((problem.status, problem.errors[0].pointer.as_str()), (400, "to"));
    }
}
