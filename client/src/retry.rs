//! When a failed request may be sent again on a new connection.
//!
//! A client keeps its connection open between requests, so the broker may have
//! restarted (or dropped the idle connection) in the meantime. The first request
//! afterwards then fails with a lost connection. Resending is safe when the
//! request cannot have had an effect yet:
//!
//! - it never reached the broker (the write itself failed), whatever the request;
//! - or it is idempotent (`token`, `unauthorized`, `status`): asking twice is
//!   harmless. `import`, `logout` and `relogin` are not resent once delivered,
//!   because the broker may already have acted on them.
//!
//! Only one retry, and only when the failed connection was an old one: a fresh
//! connection that breaks means the broker itself is in trouble.

use crate::Error;

/// A failed exchange and whether the request may have reached the broker.
pub(crate) struct Failed {
    pub(crate) error: Error,
    pub(crate) delivered: bool,
}

impl Failed {
    pub(crate) fn undelivered(error: Error) -> Failed {
        Failed {
            error,
            delivered: false,
        }
    }

    pub(crate) fn delivered(error: Error) -> Failed {
        Failed {
            error,
            delivered: true,
        }
    }

    /// Whether to resend once on a new connection (see the module docs).
    pub(crate) fn should_retry(&self, reused_connection: bool, idempotent: bool) -> bool {
        reused_connection && self.error.is_connection_lost() && (idempotent || !self.delivered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::time::Duration;

    fn lost() -> Error {
        Error::Io {
            source: io::ErrorKind::BrokenPipe.into(),
        }
    }

    #[test]
    fn policy() {
        assert!(Failed::undelivered(lost()).should_retry(true, false));
        assert!(Failed::delivered(lost()).should_retry(true, true));
        assert!(!Failed::delivered(lost()).should_retry(true, false));
        assert!(!Failed::undelivered(lost()).should_retry(false, true));
        let timeout = Error::Timeout {
            operation: "request",
            after: Duration::from_secs(1),
        };
        assert!(!Failed::delivered(timeout).should_retry(true, true));
    }
}
