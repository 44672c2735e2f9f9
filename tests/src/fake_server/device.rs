//! Device authorization grant state (RFC 8628).
//!
//! Why separate from families: a device authorization is a login in
//! progress. Tests drive the "user" side (approve, deny, expire, ask the
//! client to slow down) and the poll answers must follow §3.5 exactly, since
//! the broker's polling loop (first poll at once, `interval`, `slow_down` adds
//! 5 s, `expired_token`/`access_denied` are final) is judged against them.

use std::time::{Duration, Instant};

use super::stats::DeviceCodeInfo;
use super::tokens;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Pending,
    Approved,
    Denied,
    /// Tokens were issued; the device code is spent.
    Consumed,
}

#[derive(Debug)]
struct Grant {
    device_code: String,
    user_code: String,
    client_id: String,
    scope: String,
    expires_at: Instant,
    status: Status,
}

/// A new device authorization, as the device endpoint returns it.
#[derive(Debug, Clone)]
pub(crate) struct Started {
    pub device_code: String,
    pub user_code: String,
}

#[derive(Debug, Default)]
pub(crate) struct DeviceGrants {
    grants: Vec<Grant>,
    slow_down_remaining: u32,
    last: Option<DeviceCodeInfo>,
}

fn normalize(user_code: &str) -> String {
    user_code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

impl DeviceGrants {
    pub(crate) fn start(
        &mut self,
        client_id: &str,
        scope: &str,
        ttl: Duration,
        now: Instant,
    ) -> Started {
        let started = Started {
            device_code: tokens::opaque("dc"),
            user_code: tokens::user_code(),
        };
        self.grants.push(Grant {
            device_code: started.device_code.clone(),
            user_code: started.user_code.clone(),
            client_id: client_id.to_owned(),
            scope: scope.to_owned(),
            expires_at: now + ttl,
            status: Status::Pending,
        });
        started
    }

    pub(crate) fn remember(&mut self, info: DeviceCodeInfo) {
        self.last = Some(info);
    }

    pub(crate) fn last(&self) -> Option<DeviceCodeInfo> {
        self.last.clone()
    }

    /// One poll. `Ok(scope)` when approved (the code is then spent),
    /// otherwise the RFC 8628 / RFC 6749 error code.
    pub(crate) fn poll(
        &mut self,
        device_code: &str,
        client_id: &str,
        now: Instant,
    ) -> Result<String, &'static str> {
        let Some(g) = self
            .grants
            .iter_mut()
            .find(|g| g.device_code == device_code && g.client_id == client_id)
        else {
            return Err("invalid_grant");
        };
        if g.status == Status::Consumed {
            return Err("invalid_grant");
        }
        if self.slow_down_remaining > 0 {
            self.slow_down_remaining -= 1;
            return Err("slow_down");
        }
        if now >= g.expires_at {
            return Err("expired_token");
        }
        match g.status {
            Status::Pending => Err("authorization_pending"),
            Status::Denied => Err("access_denied"),
            Status::Approved => {
                g.status = Status::Consumed;
                Ok(g.scope.clone())
            }
            Status::Consumed => unreachable!("handled above"),
        }
    }

    fn pending_mut(&mut self, user_code: &str) -> Option<&mut Grant> {
        let wanted = normalize(user_code);
        self.grants
            .iter_mut()
            .find(|g| g.status == Status::Pending && normalize(&g.user_code) == wanted)
    }

    pub(crate) fn approve(&mut self, user_code: &str) -> bool {
        self.pending_mut(user_code)
            .map(|g| g.status = Status::Approved)
            .is_some()
    }

    pub(crate) fn deny(&mut self, user_code: &str) -> bool {
        self.pending_mut(user_code)
            .map(|g| g.status = Status::Denied)
            .is_some()
    }

    pub(crate) fn expire(&mut self, user_code: &str, now: Instant) -> bool {
        let wanted = normalize(user_code);
        self.grants
            .iter_mut()
            .find(|g| normalize(&g.user_code) == wanted)
            .map(|g| g.expires_at = now)
            .is_some()
    }

    pub(crate) fn set_slow_down(&mut self, n: u32) {
        self.slow_down_remaining = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle() {
        let mut d = DeviceGrants::default();
        let now = Instant::now();
        let s = d.start("c", "openid", Duration::from_secs(60), now);
        assert_eq!(
            d.poll(&s.device_code, "c", now),
            Err("authorization_pending")
        );
        assert_eq!(d.poll(&s.device_code, "other", now), Err("invalid_grant"));
        d.set_slow_down(1);
        assert_eq!(d.poll(&s.device_code, "c", now), Err("slow_down"));
        assert!(d.approve(&s.user_code.to_lowercase()));
        assert_eq!(d.poll(&s.device_code, "c", now), Ok("openid".to_owned()));
        assert_eq!(d.poll(&s.device_code, "c", now), Err("invalid_grant"));
        assert!(!d.approve(&s.user_code));
    }

    #[test]
    fn denied_and_expired_are_final() {
        let mut d = DeviceGrants::default();
        let now = Instant::now();
        let a = d.start("c", "s", Duration::from_secs(60), now);
        let b = d.start("c", "s", Duration::from_secs(60), now);
        assert!(d.deny(&a.user_code));
        assert_eq!(d.poll(&a.device_code, "c", now), Err("access_denied"));
        assert!(d.expire(&b.user_code, now));
        assert_eq!(d.poll(&b.device_code, "c", now), Err("expired_token"));
        assert_eq!(d.poll("unknown", "c", now), Err("invalid_grant"));
    }
}
