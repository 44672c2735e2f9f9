//! What the fake server observed, as plain data for assertions.
//!
//! Why snapshots: tests assert on exact numbers ("exactly one refresh",
//! "zero reuse detections"). Every counter is changed under the server's one
//! lock in the same critical section as the outcome it counts, so a snapshot
//! never shows a request half-counted.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use super::fault::Fault;

/// Counters since the server started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// `POST /oauth/token` requests that arrived (counted before any delay).
    pub token_requests_received: u64,
    /// `POST /oauth/token` requests whose outcome is decided (answered,
    /// faulted or dropped). Equal to `token_requests_received` once the
    /// server is idle.
    pub token_requests: u64,
    /// Handled token requests by `grant_type` (`"<missing>"` if absent,
    /// `"<unparsable>"` if the body could not be read).
    pub token_requests_by_grant: BTreeMap<String, u64>,
    /// Handled `grant_type=refresh_token` requests, faulted ones included.
    pub refresh_requests: u64,
    /// Refresh tokens actually exchanged (rotations), including grace replays
    /// and rotations whose answer was dropped by a fault.
    pub successful_refreshes: u64,
    /// Used refresh tokens accepted inside the reuse grace window.
    pub grace_replays: u64,
    /// Replays of used refresh tokens that triggered reuse detection.
    pub reuse_detections: u64,
    /// Families revoked for any reason (reuse, revocation endpoint, test API).
    pub families_revoked: u64,
    /// Refresh attempts with an unknown, revoked or expired refresh token.
    pub invalid_refresh_attempts: u64,
    /// Token requests with an `application/json` body.
    pub json_bodies: u64,
    /// Token requests with an `application/x-www-form-urlencoded` body.
    pub form_bodies: u64,
    /// Token requests with any other or no content type.
    pub other_bodies: u64,
    /// Token requests rejected with `invalid_client`.
    pub invalid_client: u64,
    /// Faults applied (token endpoint and Copilot exchange).
    pub faults_injected: u64,
    /// Connections closed without a response by a fault.
    pub connections_dropped: u64,
    /// TCP connections the server accepted (any endpoint).
    pub connections_accepted: u64,
    /// Accepted connections that are finished: every byte the peer sent was
    /// read and handled, and the server closed its end. Equal to
    /// `connections_accepted` once no connection is open.
    pub connections_finished: u64,
    /// Families created (logins: `issue_grant`, device, authorization code).
    pub grants_issued: u64,
    /// `POST /oauth/device/code` requests.
    pub device_code_requests: u64,
    /// Device-code grant polls at the token endpoint.
    pub device_polls: u64,
    /// `GET /oauth/authorize` requests (including [`FakeAuthServer::authorize`]).
    ///
    /// [`FakeAuthServer::authorize`]: super::FakeAuthServer::authorize
    pub authorize_requests: u64,
    /// Successful authorization-code exchanges.
    pub code_exchanges: u64,
    /// `POST /oauth/revoke` requests.
    pub revocation_requests: u64,
    /// `GET /.well-known/…` requests.
    pub discovery_requests: u64,
    /// Resource requests (`/userinfo`, `/api/me`, `/copilot-api/…`) accepted.
    pub resource_ok: u64,
    /// Resource requests rejected with 401.
    pub resource_rejected: u64,
    /// Copilot exchange requests (all outcomes).
    pub copilot_exchange_requests: u64,
    /// Copilot session tokens issued.
    pub copilot_exchanges: u64,
    /// `POST /api/accounts/deviceauth/usercode` requests (OpenAI's scheme).
    pub openai_device_code_requests: u64,
    /// `POST /api/accounts/deviceauth/token` polls (OpenAI's scheme).
    pub openai_device_polls: u64,
}

/// How a token request's body was encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEncoding {
    Form,
    Json,
    /// Neither (missing or other content type); the request was rejected.
    Other,
}

/// What happened to one token request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenOutcome {
    /// Tokens were issued and sent.
    Issued,
    /// Tokens were issued (a refresh token may have been consumed) but the
    /// connection was closed instead of answering.
    IssuedThenDropped,
    /// An OAuth error answer.
    Rejected { status: u16, error: String },
    /// A fault answered (or dropped) the request without processing it.
    Fault(Fault),
}

/// One handled `POST /oauth/token` request. Holds no token values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequestRecord {
    pub received_at: Instant,
    pub grant_type: Option<String>,
    pub encoding: BodyEncoding,
    pub client_id: Option<String>,
    pub outcome: TokenOutcome,
}

/// Tokens of a fresh login, as [`FakeAuthServer::issue_grant`] returns them.
///
/// [`FakeAuthServer::issue_grant`]: super::FakeAuthServer::issue_grant
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedTokens {
    pub access_token: String,
    /// `None` when the server is configured not to issue refresh tokens.
    pub refresh_token: Option<String>,
    /// Seconds, as in a token response.
    pub expires_in: u64,
    /// Present when `jwt_access_tokens` is on.
    pub id_token: Option<String>,
    pub scope: String,
}

impl IssuedTokens {
    /// The refresh token; panics if the server issues none.
    pub fn refresh(&self) -> &str {
        self.refresh_token
            .as_deref()
            .expect("the fake server was configured not to issue refresh tokens")
    }

    /// A JSON object as `brokerctl import` accepts it.
    pub fn to_import_json(&self) -> String {
        let mut v = serde_json::json!({
            "access_token": self.access_token,
            "expires_in": self.expires_in,
            "scope": self.scope,
            "token_type": "Bearer",
        });
        if let Some(rt) = &self.refresh_token {
            v["refresh_token"] = rt.clone().into();
        }
        if let Some(id) = &self.id_token {
            v["id_token"] = id.clone().into();
        }
        v.to_string()
    }
}

/// A token family (one login) as seen by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyInfo {
    /// 0-based, in creation order.
    pub id: usize,
    /// Rotations in this family.
    pub refreshes: u64,
    pub revoked: bool,
    pub expired: bool,
    /// The only refresh token of the family that may still be used, if any.
    pub current_refresh_token: Option<String>,
}

/// A device authorization as the device endpoint issued it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCodeInfo {
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: String,
    pub interval: u64,
    pub issued_at: Instant,
}

/// A wait timed out; carries the last stats for the failure message.
#[derive(Debug, Clone)]
pub struct WaitTimeout {
    pub waited: Duration,
    pub last: Box<Stats>,
}

impl fmt::Display for WaitTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "condition not met within {:?}; fake server stats: {:#?}",
            self.waited, self.last
        )
    }
}

impl std::error::Error for WaitTimeout {}
