//! Who is calling the registry. Docker clients log in through the token flow: a request
//! without credentials gets `401` with `WWW-Authenticate: Bearer realm=…/v2/token`, the
//! client asks the realm for a token with Basic credentials (any username, a berth
//! token as the password) or none (anonymous), and sends that token from then on. berth's
//! registry tokens are short-lived and signed with the server's key; they name the berth
//! token they were issued for, which is looked up on use, so revoking it stops them too.
//! Basic with a berth token as the password, and a berth token as the bearer, work
//! directly.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use berth_model::Time;
use berth_model::access::{Grant, Role, Scope};
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::{Code, Registry, RegistryError, Result};
use crate::services::Caller;

const PREFIX: &str = "brr_";
const ANONYMOUS: &str = "system:anonymous";

/// The credentials a request carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    None,
    Bearer(String),
    /// The password of HTTP Basic (the username is not used).
    Basic(String),
}

/// A token issued by `/v2/token`, in the shape Docker's token spec gives.
#[derive(Clone, Debug, Serialize)]
pub struct RegistryTokenIssued {
    pub token: String,
    pub access_token: String,
    pub expires_in: u64,
    pub issued_at: String,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    /// The berth token's name; empty for anonymous.
    sub: String,
    /// Expiry, seconds since the epoch.
    exp: i64,
}

pub(super) fn is_anonymous(caller: &Caller) -> bool {
    caller.token == ANONYMOUS
}

fn anonymous() -> Caller {
    Caller { token: ANONYMOUS.to_string(), grant: Grant { role: Role::View, scope: Scope::Namespaces(Vec::new()) } }
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

impl Registry {
    /// The caller a request's credentials name. No credentials at all is UNAUTHORIZED (so
    /// that clients learn where to log in); an anonymous registry token is the anonymous
    /// caller.
    pub async fn authenticate(&self, credential: Credential) -> Result<Caller> {
        let secret = match credential {
            Credential::None => {
                return Err(RegistryError::new(
                    Code::Unauthorized,
                    "authentication required: log in with any username and a berth token as the password (`berth token create`)",
                ));
            }
            Credential::Bearer(token) if token.starts_with(PREFIX) => return self.verify(&token).await,
            Credential::Bearer(secret) => secret,
            // `docker login` sends the berth token as a password: say so when it is refused.
            Credential::Basic(password) => {
                return self.catalog().authenticate(Some(&password)).map_err(|err| {
                    RegistryError::new(
                        Code::Unauthorized,
                        format!("log-in refused: the password must be a current berth token (`berth token create`); {}", err.message),
                    )
                });
            }
        };
        Ok(self.catalog().authenticate(Some(&secret))?)
    }

    /// Issues a registry token for the caller that `credential` names (anonymous for
    /// none). Wrong credentials are UNAUTHORIZED, not anonymous.
    pub async fn issue_token(&self, credential: Credential) -> Result<RegistryTokenIssued> {
        let subject = match credential {
            Credential::None => String::new(),
            other => {
                let caller = self.authenticate(other).await?;
                if is_anonymous(&caller) { String::new() } else { caller.token }
            }
        };
        let now = Time::now();
        let lifetime = self.inner.settings.token_lifetime_seconds;
        let claims = Claims { sub: subject, exp: now.0.timestamp() + lifetime as i64 };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("claims serialise"));
        let token = format!("{PREFIX}{payload}.{}", URL_SAFE_NO_PAD.encode(self.sign(payload.as_bytes())));
        Ok(RegistryTokenIssued { token: token.clone(), access_token: token, expires_in: lifetime, issued_at: now.to_string() })
    }

    fn sign(&self, payload: &[u8]) -> Vec<u8> {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.inner.token_key).expect("HMAC takes any key length");
        mac.update(payload);
        mac.finalize().into_bytes().to_vec()
    }

    async fn verify(&self, token: &str) -> Result<Caller> {
        let invalid = |why: &str| RegistryError::new(Code::Unauthorized, format!("the registry token is {why}: log in again"));
        let (payload, signature) = token[PREFIX.len()..].split_once('.').ok_or_else(|| invalid("malformed"))?;
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| invalid("malformed"))?;
        if !bool::from(self.sign(payload.as_bytes()).ct_eq(&signature)) {
            return Err(invalid("not one this server issued"));
        }
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| invalid("malformed"))?;
        if claims.exp <= Time::now().0.timestamp() {
            return Err(invalid("expired"));
        }
        if claims.sub.is_empty() {
            return Ok(anonymous());
        }
        Ok(self.catalog().caller_of_token(&claims.sub)?)
    }
}
