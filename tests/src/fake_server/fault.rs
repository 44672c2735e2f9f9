//! Fault injection: what can go wrong between a client and a token endpoint.
//!
//! Why these faults: each one is a failure that real deployments produce and
//! that a broker must classify correctly — transient (5xx, 429, captive-portal
//! HTML, truncated or incomplete JSON, redirects, slowness, lost connections)
//! versus the dangerous ambiguous case where the server rotated the refresh
//! token but the answer never arrived ([`Fault::RotateThenDrop`]).
//!
//! One-shot faults are consumed in FIFO order, one per request, at the moment
//! the request arrives; a persistent fault applies to every request while no
//! one-shot fault is queued.

use std::collections::VecDeque;
use std::time::Duration;

/// A failure the fake server produces instead of (or around) normal processing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this HTTP status and a JSON body
    /// `{"error":"server_error","error_description":"injected HTTP <n>"}`.
    /// The request is not processed.
    Status(u16),
    /// Answer with this status, content type and body verbatim (e.g. a 502
    /// `text/plain` page from a proxy). The request is not processed.
    Custom {
        status: u16,
        content_type: String,
        body: String,
    },
    /// HTTP 429 with a `Retry-After: <secs>` header. Not processed.
    TooManyRequests { retry_after_secs: u64 },
    /// A captive-portal HTML page with this status (200 or 503 are typical).
    /// Not processed.
    Html { status: u16 },
    /// HTTP 200 `application/json` with a body cut mid-way:
    /// `{"access_token": "abc`. Not processed.
    TruncatedJson,
    /// HTTP 200 `{"token_type":"Bearer"}` — no access token. Not processed.
    NoAccessToken,
    /// HTTP 302 to `<base>/captive` (an HTML page). Not processed.
    Redirect,
    /// Wait this long, then process the request normally. The processing
    /// happens even if the client gives up meanwhile, as on a real server.
    Delay(Duration),
    /// Close the TCP connection without any HTTP response, before
    /// processing: the refresh token is NOT consumed.
    DropConnection,
    /// Process the request (a refresh token IS consumed and rotated), then
    /// close the connection without sending the answer: the client never
    /// learns the new refresh token.
    RotateThenDrop,
    /// Wait, process (rotate), then close the connection without answering.
    DelayThenRotateThenDrop(Duration),
}

/// What the endpoint has to do for one request, derived from its fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FaultPlan {
    /// Answer with a canned response; do not process.
    Respond(Fault),
    /// Close the connection now; do not process.
    DropNow,
    /// Process (after an optional delay); then either answer or drop.
    Process {
        delay: Option<Duration>,
        drop_after: bool,
    },
}

impl Fault {
    pub(crate) fn plan(&self) -> FaultPlan {
        match self {
            Fault::Delay(d) => FaultPlan::Process {
                delay: Some(*d),
                drop_after: false,
            },
            Fault::DropConnection => FaultPlan::DropNow,
            Fault::RotateThenDrop => FaultPlan::Process {
                delay: None,
                drop_after: true,
            },
            Fault::DelayThenRotateThenDrop(d) => FaultPlan::Process {
                delay: Some(*d),
                drop_after: true,
            },
            other => FaultPlan::Respond(other.clone()),
        }
    }
}

/// One-shot faults in FIFO order plus an optional persistent one.
#[derive(Debug, Default)]
pub(crate) struct FaultQueue {
    once: VecDeque<Fault>,
    persistent: Option<Fault>,
}

impl FaultQueue {
    pub(crate) fn push(&mut self, fault: Fault) {
        self.once.push_back(fault);
    }

    pub(crate) fn set_persistent(&mut self, fault: Option<Fault>) {
        self.persistent = fault;
    }

    pub(crate) fn clear(&mut self) {
        self.once.clear();
        self.persistent = None;
    }

    pub(crate) fn pending(&self) -> usize {
        self.once.len()
    }

    /// The fault for the request that just arrived, if any.
    pub(crate) fn next(&mut self) -> Option<Fault> {
        self.once.pop_front().or_else(|| self.persistent.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shot_faults_come_first_in_fifo_order_then_persistent() {
        let mut q = FaultQueue::default();
        q.set_persistent(Some(Fault::Status(503)));
        q.push(Fault::Status(500));
        q.push(Fault::DropConnection);
        assert_eq!(q.next(), Some(Fault::Status(500)));
        assert_eq!(q.next(), Some(Fault::DropConnection));
        assert_eq!(q.next(), Some(Fault::Status(503)));
        assert_eq!(q.next(), Some(Fault::Status(503)));
        q.set_persistent(None);
        assert_eq!(q.next(), None);
    }

    #[test]
    fn plans() {
        assert_eq!(Fault::DropConnection.plan(), FaultPlan::DropNow);
        assert_eq!(
            Fault::RotateThenDrop.plan(),
            FaultPlan::Process {
                delay: None,
                drop_after: true
            }
        );
        assert_eq!(
            Fault::Html { status: 200 }.plan(),
            FaultPlan::Respond(Fault::Html { status: 200 })
        );
    }
}
