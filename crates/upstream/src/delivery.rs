//! Delivering notifications out: a POST to the URL a subscription names, only to hosts the
//! server allows (`notifications.allowedHosts`, under the rule of [`crate::hosts`]: a name
//! that resolves to a private address is refused too), never following a redirect (which
//! could lead anywhere), and reading nothing of the reply but its status.

use std::sync::Arc;
use std::time::Duration;

use crate::client::error_chain;
use crate::hosts::{HostPolicy, PolicyResolver};

/// Why a delivery failed, in words for the subscription's status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DeliveryError(pub String);

/// A receiver's URL, checked against the server's policy.
#[derive(Clone, Debug)]
pub struct Target {
    url: reqwest::Url,
    /// As the subscription wrote it, for messages.
    text: String,
}

/// How long a connection to a subscriber is kept for the next delivery: shorter than the
/// shortest keep-alive common servers give (Node's 5 s), so berth never sends on a
/// connection the receiver is closing, and an idle notifier holds no connections (nor
/// their buffers) for long.
const IDLE_CONNECTION: Duration = Duration::from_secs(4);

/// Sends notifications to subscribers. Cheap to clone.
#[derive(Clone)]
pub struct DeliveryClient {
    http: reqwest::Client,
    policy: Arc<HostPolicy>,
}

impl DeliveryClient {
    /// A client for `allowed_hosts` (the `notifications.allowedHosts` setting), with a
    /// timeout per delivery.
    pub fn new(allowed_hosts: &[String], timeout: Duration) -> Result<DeliveryClient, String> {
        let policy = Arc::new(HostPolicy::new(allowed_hosts, "notifications.allowedHosts"));
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(IDLE_CONNECTION)
            .dns_resolver(Arc::new(PolicyResolver::new(Arc::clone(&policy))))
            .build()
            .map_err(|err| format!("building the delivery client: {err}"))?;
        Ok(DeliveryClient { http, policy })
    }

    /// The policy subscription URLs are checked against.
    pub fn policy(&self) -> &HostPolicy {
        &self.policy
    }

    /// Checks `url` against the policy, once for any number of POSTs to it (a worker
    /// checks its subscription's URL once a batch). Names are still resolved, and their
    /// addresses checked, at each connection.
    pub fn target(&self, url: &str) -> Result<Target, DeliveryError> {
        self.policy.check_url(url).map_err(DeliveryError)?;
        let parsed = reqwest::Url::parse(url).map_err(|err| DeliveryError(format!("{url:?} is not a URL: {err}")))?;
        Ok(Target { url: parsed, text: url.to_string() })
    }

    /// POSTs `body` with `headers` to `target`: `Ok` when the receiver answered 2xx.
    pub async fn post(&self, target: &Target, headers: &[(&str, String)], body: bytes::Bytes) -> Result<(), DeliveryError> {
        let url = &target.text;
        let mut request = self.http.post(target.url.clone());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|err| DeliveryError(format!("POST {url} failed: {}", error_chain(&err.without_url()))))?;
        let status = response.status();
        // The reply's body is never read: the connection is dropped with it.
        drop(response);
        if status.is_success() {
            Ok(())
        } else if status.is_redirection() {
            Err(DeliveryError(format!(
                "POST {url} answered {status}: berth does not follow redirects of subscription receivers; point the subscription at the final URL"
            )))
        } else {
            Err(DeliveryError(format!("POST {url} answered {status}")))
        }
    }
}
