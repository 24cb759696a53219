//! The HTTP client: one base URL and bearer token, JSON in and out. Every error the
//! server sends back becomes an [`ApiError`], so callers can test for a status code and
//! `main` can print it the way kubectl does.

use std::fmt;
use std::io::{BufRead, BufReader};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use reqwest::Url;
use reqwest::blocking::{Client as Http, RequestBuilder, Response};
use serde_json::Value;

/// How long a request other than a watch may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A Kubernetes `Status` failure, as the server sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: u16,
    pub reason: String,
    pub message: String,
    /// `(field, message)` of each cause in `details.causes`.
    pub causes: Vec<(String, String)>,
}

impl ApiError {
    /// Reads a `Status` body; a body that is not one (a proxy's error page, say) is kept
    /// as the message so the user still sees what came back.
    fn from_body(code: u16, body: &str) -> ApiError {
        match serde_json::from_str::<Value>(body) {
            Ok(status) if status.get("kind").and_then(Value::as_str) == Some("Status") => ApiError::from_status(code, &status),
            _ => ApiError { code, reason: reason_for(code).to_string(), message: body.trim().to_string(), causes: Vec::new() },
        }
    }

    pub fn from_status(code: u16, status: &Value) -> ApiError {
        let text = |key: &str| status.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
        let causes = status
            .pointer("/details/causes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|cause| {
                let field = cause.get("field").and_then(Value::as_str).unwrap_or_default();
                let message = cause.get("message").and_then(Value::as_str).unwrap_or_default();
                (field.to_string(), message.to_string())
            })
            .collect();
        let code = status.get("code").and_then(Value::as_u64).and_then(|c| u16::try_from(c).ok()).unwrap_or(code);
        let reason = Some(text("reason")).filter(|r| !r.is_empty()).unwrap_or_else(|| reason_for(code).to_string());
        ApiError { code, reason, message: text("message"), causes }
    }

    pub fn is_not_found(&self) -> bool {
        self.code == 404
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error from server ({}): {}", self.reason, self.message)?;
        for (field, message) in &self.causes {
            write!(f, "\n  * {field}: {message}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// The Kubernetes reason for a status code, for error bodies that do not say.
fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        410 => "Expired",
        413 => "RequestEntityTooLarge",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        _ => "InternalError",
    }
}

/// Cheap to clone: clones share one connection pool, so a command may hand one to a
/// thread (an import's watch runs beside its POST).
#[derive(Clone)]
pub struct Client {
    base: Url,
    token: Option<String>,
    http: Http,
}

impl Client {
    /// `server` may leave out the scheme (`127.0.0.1:7440`, plain HTTP). An https server's
    /// certificate is checked against the system's roots and, when given, the CA in the
    /// PEM file `certificate_authority` (berth's own, for a self-signed setup).
    pub fn new(server: &str, token: Option<String>, certificate_authority: Option<&std::path::Path>) -> anyhow::Result<Client> {
        let with_scheme = if server.contains("://") { server.to_string() } else { format!("http://{server}") };
        let base = Url::parse(with_scheme.trim_end_matches('/'))
            .with_context(|| format!("the server address {server:?} is not a URL: use https://HOST:PORT or http://HOST:PORT"))?;
        if !matches!(base.scheme(), "http" | "https") {
            anyhow::bail!("the server address {server:?} is neither https nor http: use https://HOST:PORT or http://HOST:PORT");
        }
        // Watches run for as long as the server keeps them open, so the client has no
        // overall timeout; other requests set their own.
        let mut http = Http::builder().timeout(None::<Duration>);
        if let Some(path) = certificate_authority {
            let pem = std::fs::read(path).with_context(|| format!("reading the CA file {}", path.display()))?;
            for certificate in reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("{} is not a PEM certificate: pass the CA that signed the server's certificate", path.display()))?
            {
                http = http.add_root_certificate(certificate);
            }
        }
        let http = http.build().context("setting up the HTTP client")?;
        Ok(Client { base, token, http })
    }

    /// The URL of `path` (slash-separated, starting with `/`) with `query`; each path
    /// segment is percent-encoded, so a name typed by the user cannot change the route.
    fn url(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Url> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| anyhow!("the server URL {} cannot take a path", self.base))?
            .pop_if_empty()
            .extend(path.split('/').skip(1));
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    fn authorized(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends a request and turns transport failures and error statuses into errors that
    /// say what to do next.
    fn send(&self, request: RequestBuilder, url: &Url) -> anyhow::Result<Response> {
        let response = self.authorized(request).send().map_err(|err| self.transport_error(&err, url))?;
        let code = response.status().as_u16();
        if response.status().is_success() {
            return Ok(response);
        }
        let body = response.text().unwrap_or_default();
        Err(ApiError::from_body(code, &body).into())
    }

    fn transport_error(&self, err: &reqwest::Error, url: &Url) -> anyhow::Error {
        let server = self.base.as_str().trim_end_matches('/');
        let chain = berth_upstream::error_chain(err);
        let certificate = ["certificate", "UnknownIssuer", "NotValidForName", "handshake"].iter().any(|word| chain.contains(word));
        if certificate {
            anyhow!(
                "the TLS certificate of the berth server at {server} is not trusted ({chain}): pass the CA that signed it with --certificate-authority FILE (berth serve --tls=self-signed keeps it in <data-dir>/tls/ca.crt)"
            )
        } else if err.is_connect() {
            anyhow!("cannot reach the berth server at {server}: is `berth serve` running?")
        } else if err.is_timeout() {
            anyhow!("the berth server at {server} did not answer {url} in time: check that it is healthy (GET /readyz)")
        } else {
            anyhow!("the request to {url} failed: {err}")
        }
    }

    fn call(&self, method: reqwest::Method, path: &str, query: &[(&str, String)], body: Option<&Value>) -> anyhow::Result<Value> {
        self.call_within(method, path, query, body, REQUEST_TIMEOUT)
    }

    fn call_within(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let url = self.url(path, query)?;
        let mut request = self.http.request(method, url.clone()).timeout(timeout);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = self.send(request, &url)?;
        response.json::<Value>().with_context(|| format!("the server's answer to {url} is not JSON"))
    }

    pub fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, query, None)
    }

    /// A GET that answers `None` for 404, for callers to whom "absent" is an answer.
    pub fn get_optional(&self, path: &str) -> anyhow::Result<Option<Value>> {
        match self.get(path, &[]) {
            Ok(value) => Ok(Some(value)),
            Err(err) if err.downcast_ref::<ApiError>().is_some_and(ApiError::is_not_found) => Ok(None),
            Err(err) => Err(err),
        }
    }

    pub fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, &[], Some(body))
    }

    /// A POST that may take longer than other requests: an import waits on other
    /// registries.
    pub fn post_within(&self, path: &str, body: &Value, timeout: Duration) -> anyhow::Result<Value> {
        self.call_within(reqwest::Method::POST, path, &[], Some(body), timeout)
    }

    /// [`Client::post_within`] with query parameters (`dryRun=All`).
    pub fn post_query_within(&self, path: &str, query: &[(&str, String)], body: &Value, timeout: Duration) -> anyhow::Result<Value> {
        self.call_within(reqwest::Method::POST, path, query, Some(body), timeout)
    }

    pub fn put(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::PUT, path, &[], Some(body))
    }

    pub fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::DELETE, path, &[], None)
    }

    /// Watches a list URL, calling `on_event` with the object of each `ADDED`,
    /// `MODIFIED` or `DELETED` event until the server ends the watch. An `ERROR` event
    /// ends it with that error.
    pub fn watch(
        &self,
        path: &str,
        query: &[(&str, String)],
        mut on_event: impl FnMut(&Value) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let mut query = query.to_vec();
        query.push(("watch", "true".to_string()));
        let url = self.url(path, &query)?;
        let response = self.send(self.http.get(url.clone()), &url)?;
        for line in BufReader::new(response).lines() {
            let line = line.with_context(|| format!("the watch of {url} broke off"))?;
            if line.trim().is_empty() {
                continue;
            }
            let mut event: Value =
                serde_json::from_str(&line).with_context(|| format!("the watch of {url} sent a line that is not JSON"))?;
            let object = event.get_mut("object").map(Value::take).unwrap_or_default();
            if event.get("type").and_then(Value::as_str) == Some("ERROR") {
                return Err(ApiError::from_status(500, &object).into());
            }
            on_event(&object)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_bodies_become_api_errors_with_causes() {
        let body = r#"{"kind":"Status","status":"Failure","message":"bad","reason":"Invalid","code":422,
            "details":{"causes":[{"field":"spec.tags[0].name","message":"required"}]}}"#;
        let err = ApiError::from_body(422, body);
        assert_eq!(err.to_string(), "Error from server (Invalid): bad\n  * spec.tags[0].name: required");
    }

    #[test]
    fn other_bodies_are_kept_as_the_message() {
        let err = ApiError::from_body(502, "Bad Gateway\n");
        assert_eq!(err.to_string(), "Error from server (InternalError): Bad Gateway");
    }

    #[test]
    fn path_segments_are_encoded() {
        let client = Client::new("127.0.0.1:7440/", None, None).unwrap();
        let url = client.url("/api/v1/namespaces/a b?", &[("labelSelector", "x=y".to_string())]).unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:7440/api/v1/namespaces/a%20b%3F?labelSelector=x%3Dy");
    }
}
