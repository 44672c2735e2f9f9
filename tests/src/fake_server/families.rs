//! Token families: rotating single-use refresh tokens and reuse detection.
//!
//! Why families: strict servers (OpenAI, Auth0, Okta, …) group every refresh
//! token descended from one login into a family. Each refresh consumes the
//! presented token and issues its successor; presenting an already consumed
//! token is taken as theft and revokes the *whole* family — the newest refresh
//! token and every access token included. That is exactly how two processes
//! sharing one login end up logged out, and what the broker exists to prevent,
//! so the fake must do it faithfully.
//!
//! Pure state, no I/O: the HTTP layer decides answers and counts.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::stats::FamilyInfo;
use super::tokens::{self, JwtClaims};

/// Everything needed to mint tokens, taken from the server configuration.
pub(crate) struct MintSpec<'a> {
    pub jwt: bool,
    pub ttl: Duration,
    /// Added to the JWT `exp` claim only (see `FakeConfig::jwt_exp_slack`).
    pub exp_slack: Duration,
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub account_id: &'a str,
    pub with_refresh: bool,
    /// Put before opaque access tokens (see `FakeConfig::access_token_prefix`).
    pub access_prefix: &'a str,
}

/// Freshly minted tokens (the body of a successful token response).
#[derive(Debug, Clone)]
pub(crate) struct Minted {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
    pub expires_in: u64,
    pub scope: String,
}

/// Why a refresh token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefreshError {
    /// Never issued by this server.
    Unknown,
    /// Its family was revoked (reuse, revocation, test API).
    Revoked,
    /// Its family was expired by the test API.
    Expired,
    /// It was already used: reuse detected, the family is now revoked.
    Reused,
}

/// How a refresh token was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accepted {
    /// The current token of its family.
    Current,
    /// A used token replayed inside the grace window (accepted once).
    GraceReplay,
}

const SUBJECT: &str = "user-test";

#[derive(Debug)]
struct Family {
    revoked: bool,
    expired: bool,
    refreshes: u64,
    current: Option<String>,
    scope: String,
}

#[derive(Debug)]
struct RefreshEntry {
    family: usize,
    used_at: Option<Instant>,
    /// No (further) grace replay is allowed for this token.
    grace_spent: bool,
}

#[derive(Debug)]
struct AccessEntry {
    family: usize,
    /// Position in issuance order (0 for the first access token minted).
    issued: usize,
    expires_at: Instant,
    revoked: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Families {
    families: Vec<Family>,
    refresh: HashMap<String, RefreshEntry>,
    access: HashMap<String, AccessEntry>,
}

impl Families {
    /// Every refresh and access token ever minted, for tests that grep logs and
    /// output for leaked secrets.
    pub(crate) fn all_tokens(&self) -> Vec<String> {
        self.refresh
            .keys()
            .chain(self.access.keys())
            .cloned()
            .collect()
    }

    /// Every access token ever minted, oldest first.
    pub(crate) fn access_tokens_in_issue_order(&self) -> Vec<String> {
        let mut tokens: Vec<(usize, &String)> =
            self.access.iter().map(|(t, e)| (e.issued, t)).collect();
        tokens.sort_unstable();
        tokens.into_iter().map(|(_, t)| t.clone()).collect()
    }

    /// A new family, as after a successful login.
    pub(crate) fn create(&mut self, spec: &MintSpec<'_>, scope: &str, now: Instant) -> Minted {
        let family = self.families.len();
        self.families.push(Family {
            revoked: false,
            expired: false,
            refreshes: 0,
            current: None,
            scope: scope.to_owned(),
        });
        let with_refresh = spec.with_refresh;
        self.mint(family, spec, with_refresh, now)
    }

    /// Exchanges a refresh token. With `rotate`, the presented token is
    /// consumed and a successor issued; without, it stays current and the
    /// answer carries no refresh token.
    pub(crate) fn refresh(
        &mut self,
        token: &str,
        spec: &MintSpec<'_>,
        rotate: bool,
        grace: Duration,
        now: Instant,
    ) -> Result<(Minted, Accepted), RefreshError> {
        let Some(entry) = self.refresh.get(token) else {
            return Err(RefreshError::Unknown);
        };
        let (family, used_at, grace_spent) = (entry.family, entry.used_at, entry.grace_spent);
        let fam = &self.families[family];
        if fam.revoked {
            return Err(RefreshError::Revoked);
        }
        if fam.expired {
            return Err(RefreshError::Expired);
        }
        let accepted = match used_at {
            None => Accepted::Current,
            Some(used_at)
                if !grace.is_zero()
                    && !grace_spent
                    && now.saturating_duration_since(used_at) <= grace =>
            {
                Accepted::GraceReplay
            }
            Some(_) => {
                self.revoke_family(family);
                return Err(RefreshError::Reused);
            }
        };
        if accepted == Accepted::GraceReplay {
            // The replayed token becomes the parent of a new current token;
            // the successor issued by its first use is superseded and any use
            // of it is reuse.
            if let Some(e) = self.refresh.get_mut(token) {
                e.grace_spent = true;
            }
            if let Some(successor) = self.families[family].current.take() {
                if let Some(e) = self.refresh.get_mut(&successor) {
                    e.used_at.get_or_insert(now);
                    e.grace_spent = true;
                }
            }
        }
        let issue_refresh = rotate || accepted == Accepted::GraceReplay;
        if issue_refresh {
            if let Some(e) = self.refresh.get_mut(token) {
                e.used_at.get_or_insert(now);
            }
        }
        self.families[family].refreshes += 1;
        let minted = self.mint(family, spec, issue_refresh, now);
        Ok((minted, accepted))
    }

    fn mint(
        &mut self,
        family: usize,
        spec: &MintSpec<'_>,
        with_refresh: bool,
        now: Instant,
    ) -> Minted {
        let scope = self.families[family].scope.clone();
        let claims = JwtClaims {
            issuer: spec.issuer,
            audience: spec.client_id,
            subject: SUBJECT,
            account_id: spec.account_id,
            ttl: spec.ttl,
            exp_slack: spec.exp_slack,
            scope: &scope,
        };
        let (access_token, id_token) = if spec.jwt {
            (
                tokens::jwt_access_token(&claims),
                Some(tokens::jwt_id_token(&claims)),
            )
        } else {
            (
                format!("{}{}", spec.access_prefix, tokens::opaque("at")),
                None,
            )
        };
        self.access.insert(
            access_token.clone(),
            AccessEntry {
                family,
                issued: self.access.len(),
                expires_at: now + spec.ttl,
                revoked: false,
            },
        );
        let refresh_token = with_refresh.then(|| {
            let rt = tokens::opaque("rt");
            self.refresh.insert(
                rt.clone(),
                RefreshEntry {
                    family,
                    used_at: None,
                    grace_spent: false,
                },
            );
            self.families[family].current = Some(rt.clone());
            rt
        });
        Minted {
            access_token,
            refresh_token,
            id_token,
            expires_in: spec.ttl.as_secs(),
            scope,
        }
    }

    /// Revokes a family; true if it was not revoked before.
    pub(crate) fn revoke_family(&mut self, family: usize) -> bool {
        let fam = &mut self.families[family];
        let newly = !fam.revoked;
        fam.revoked = true;
        fam.current = None;
        newly
    }

    /// Revokes every family; returns how many were newly revoked.
    pub(crate) fn revoke_all(&mut self) -> u64 {
        (0..self.families.len())
            .map(|f| u64::from(self.revoke_family(f)))
            .sum()
    }

    pub(crate) fn family_of_refresh(&self, token: &str) -> Option<usize> {
        self.refresh.get(token).map(|e| e.family)
    }

    /// Marks a family expired (its refresh tokens answer "expired").
    pub(crate) fn expire_family(&mut self, family: usize) {
        self.families[family].expired = true;
    }

    /// Revokes one access token; true if it is known.
    pub(crate) fn revoke_access(&mut self, token: &str) -> bool {
        match self.access.get_mut(token) {
            Some(e) => {
                e.revoked = true;
                true
            }
            None => false,
        }
    }

    /// Current, unexpired and not revoked.
    pub(crate) fn access_expires_at(&self, token: &str) -> Option<Instant> {
        self.access.get(token).map(|e| e.expires_at)
    }

    pub(crate) fn is_access_valid(&self, token: &str, now: Instant) -> bool {
        self.is_access_live(token) && self.access.get(token).is_some_and(|e| now < e.expires_at)
    }

    /// Not revoked (expiry ignored): GitHub tokens never expire, so the
    /// Copilot exchange accepts any live access token.
    pub(crate) fn is_access_live(&self, token: &str) -> bool {
        self.access
            .get(token)
            .is_some_and(|e| !e.revoked && !self.families[e.family].revoked)
    }

    pub(crate) fn current_refresh_count(&self) -> usize {
        self.families
            .iter()
            .filter(|f| !f.revoked && !f.expired && f.current.is_some())
            .count()
    }

    pub(crate) fn info(&self, family: usize) -> FamilyInfo {
        let f = &self.families[family];
        FamilyInfo {
            id: family,
            refreshes: f.refreshes,
            revoked: f.revoked,
            expired: f.expired,
            current_refresh_token: f.current.clone(),
        }
    }

    pub(crate) fn all_info(&self) -> Vec<FamilyInfo> {
        (0..self.families.len()).map(|f| self.info(f)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> MintSpec<'static> {
        MintSpec {
            jwt: false,
            ttl: Duration::from_secs(4),
            exp_slack: Duration::ZERO,
            issuer: "http://127.0.0.1:1",
            client_id: "c",
            account_id: "a",
            with_refresh: true,
            access_prefix: "",
        }
    }

    #[test]
    fn rotation_consumes_and_reuse_revokes_the_family() {
        let mut f = Families::default();
        let now = Instant::now();
        let t0 = f.create(&spec(), "openid", now);
        let rt0 = t0.refresh_token.clone().unwrap();
        let (t1, how) = f.refresh(&rt0, &spec(), true, Duration::ZERO, now).unwrap();
        assert_eq!(how, Accepted::Current);
        let rt1 = t1.refresh_token.clone().unwrap();
        assert_ne!(rt0, rt1);
        assert!(f.is_access_valid(&t0.access_token, now));
        assert_eq!(
            f.refresh(&rt0, &spec(), true, Duration::ZERO, now)
                .unwrap_err(),
            RefreshError::Reused
        );
        assert_eq!(
            f.refresh(&rt1, &spec(), true, Duration::ZERO, now)
                .unwrap_err(),
            RefreshError::Revoked
        );
        assert!(!f.is_access_valid(&t1.access_token, now));
        assert_eq!(f.current_refresh_count(), 0);
        assert_eq!(f.info(0).refreshes, 1);
    }

    #[test]
    fn grace_replay_is_accepted_once_and_supersedes_the_successor() {
        let mut f = Families::default();
        let now = Instant::now();
        let grace = Duration::from_secs(10);
        let rt0 = f.create(&spec(), "s", now).refresh_token.unwrap();
        let (t1, _) = f.refresh(&rt0, &spec(), true, grace, now).unwrap();
        let (t2, how) = f.refresh(&rt0, &spec(), true, grace, now).unwrap();
        assert_eq!(how, Accepted::GraceReplay);
        assert_eq!(f.current_refresh_count(), 1);
        assert_eq!(f.info(0).current_refresh_token, t2.refresh_token);
        // A second replay is reuse.
        assert_eq!(
            f.refresh(&rt0, &spec(), true, grace, now).unwrap_err(),
            RefreshError::Reused
        );
        let _ = t1;
    }

    #[test]
    fn grace_window_is_enforced() {
        let mut f = Families::default();
        let now = Instant::now();
        let grace = Duration::from_secs(1);
        let rt0 = f.create(&spec(), "s", now).refresh_token.unwrap();
        f.refresh(&rt0, &spec(), true, grace, now).unwrap();
        let later = now + Duration::from_secs(2);
        assert_eq!(
            f.refresh(&rt0, &spec(), true, grace, later).unwrap_err(),
            RefreshError::Reused
        );
    }

    #[test]
    fn without_rotation_the_token_stays_current() {
        let mut f = Families::default();
        let now = Instant::now();
        let rt0 = f.create(&spec(), "s", now).refresh_token.unwrap();
        let (t1, _) = f
            .refresh(&rt0, &spec(), false, Duration::ZERO, now)
            .unwrap();
        assert!(t1.refresh_token.is_none());
        f.refresh(&rt0, &spec(), false, Duration::ZERO, now)
            .unwrap();
        assert_eq!(f.info(0).refreshes, 2);
        assert_eq!(f.current_refresh_count(), 1);
    }

    #[test]
    fn access_tokens_expire() {
        let mut f = Families::default();
        let now = Instant::now();
        let t = f.create(&spec(), "s", now);
        assert!(f.is_access_valid(&t.access_token, now));
        assert!(!f.is_access_valid(&t.access_token, now + Duration::from_secs(4)));
        assert!(f.is_access_live(&t.access_token));
        assert!(!f.is_access_valid("nope", now));
    }
}
