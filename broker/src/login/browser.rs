//! Authorization code + PKCE S256 with a loopback redirect (RFC 8252), and
//! the paste fallback.
//!
//! The broker builds the authorization URL (the preset's extra parameters,
//! `prompt=consent` when `offline_access` is asked for, per OIDC Core §11),
//! listens on `127.0.0.1` for the redirect and streams the URL to the client,
//! which prints it (and opens a browser when there is a display). On machines
//! where the browser cannot reach the listener (SSH, containers), or for
//! providers that show the result on their own page (Anthropic's
//! `code#state`), the user pastes the redirect instead: `CompleteLogin` feeds
//! it to the same wait. Either way `state` is checked before the code is used,
//! and the login gives up after the configured timeout.

use super::exchange::{redeem_code, CodeGrant};
use super::failure::LoginFailure;
use super::loopback::Loopback;
use super::pkce::{random_state, Pkce};
use super::redirect::Redirect;
use super::{Ctx, Paste, PasteError};
use crate::oauth::TokenResponse;
use crate::provider::{is_loopback_host, ProviderSpec};
use oauth_broker_proto::{ErrorCode, LoginEvent, SecretString};
use std::time::Duration;
use url::Url;

/// Runs the browser login up to the token response.
pub async fn run(ctx: &mut Ctx<'_>) -> Result<TokenResponse, LoginFailure> {
    let runner = ctx.runner;
    let provider = &runner.provider;
    let authorize = runner
        .discovery
        .authorization_endpoint(&runner.http, provider)
        .await
        .map_err(|e| runner.failure("finding the authorization endpoint", &e))?
        .ok_or_else(|| {
            LoginFailure::configuration(
                &provider.config_source,
                format!("the {} provider has no browser login", provider.preset),
            )
            .with_hint(format!(
                "use `brokerctl relogin --device`, or set authorization_endpoint in {}",
                provider.config_source
            ))
        })?;
    let token_url = runner
        .discovery
        .token_endpoint(&runner.http, provider)
        .await
        .map_err(|e| runner.failure("finding the token endpoint", &e))?;

    let pkce = Pkce::generate();
    let state = random_state();
    let template = &provider.login.redirect_uri;
    let probe = Url::parse(&template.replace("{port}", "1")).map_err(|_| {
        LoginFailure::configuration(&provider.config_source, "redirect_uri is not a URL")
    })?;
    let loopback = if is_loopback_host(&probe) {
        let localhost = probe
            .host_str()
            .is_some_and(|h| h.eq_ignore_ascii_case("localhost"));
        let listener = Loopback::bind(
            provider.login.redirect_port,
            &provider.login.fallback_ports,
            probe.path(),
            localhost,
        )
        .await
        .map_err(|why| LoginFailure::new(ErrorCode::BadRequest, why))?;
        Some(listener)
    } else {
        None
    };
    let redirect_uri = match &loopback {
        Some(listener) => template.replace("{port}", &listener.port().to_string()),
        None => template.clone(),
    };
    let url = authorize_url(&authorize, provider, &redirect_uri, &pkce.challenge, &state);
    tracing::info!(
        loopback = loopback.is_some(),
        "browser login: waiting for the redirect"
    );
    ctx.emit(LoginEvent::AuthorizeUrl {
        url: url.to_string(),
        redirect_uri: loopback.as_ref().map(|_| redirect_uri.clone()),
    });

    let code = wait_for_code(ctx, loopback.as_ref(), &state).await?;
    // The listener is not needed any more; free the port before the exchange.
    drop(loopback);
    let login = &provider.login;
    redeem_code(
        runner,
        token_url,
        CodeGrant {
            code: &code,
            redirect_uri: &redirect_uri,
            verifier: &pkce.verifier,
            echo_challenge: login.echo_challenge.then_some(pkce.challenge.as_str()),
            state: login.state_in_exchange.then_some(state.as_str()),
            encoding: login.code_body,
        },
    )
    .await
}

/// Waits for the redirect on the listener or for a paste, whichever comes
/// first, until the timeout or a cancellation.
async fn wait_for_code(
    ctx: &mut Ctx<'_>,
    loopback: Option<&Loopback>,
    state: &str,
) -> Result<SecretString, LoginFailure> {
    let runner = ctx.runner;
    let timeout = bounded_timeout(runner.settings.browser_timeout());
    let now = tokio::time::Instant::now();
    // Cannot fail after the bound; if it did, the login times out at once.
    let deadline = now.checked_add(timeout).unwrap_or(now);
    let listener = async {
        match loopback {
            Some(listener) => listener.wait(state, &runner.account).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(listener);
    loop {
        tokio::select! {
            result = &mut listener => return result,
            paste = next_paste(&mut ctx.paste) => {
                match Redirect::from_paste(&paste.text) {
                    Err(why) => {
                        let _ = paste.reply.send(Err(PasteError::Unreadable(why)));
                    }
                    Ok(redirect) => {
                        let _ = paste.reply.send(Ok(()));
                        return redirect.into_code(state, &runner.account);
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                return Err(LoginFailure::retry_login(
                    &runner.account,
                    format!(
                        "the browser login timed out: no redirect arrived within {} s",
                        timeout.as_secs()
                    ),
                ));
            }
            _ = ctx.cancel.cancelled() => return Err(LoginFailure::cancelled()),
        }
    }
}

/// Longest a browser login waits for its redirect, whatever the config says:
/// `Instant + Duration` panics on overflow, and a login nobody finished within
/// a day is abandoned anyway.
const MAX_BROWSER_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// The configured timeout, at most [`MAX_BROWSER_TIMEOUT`].
fn bounded_timeout(configured: Duration) -> Duration {
    configured.min(MAX_BROWSER_TIMEOUT)
}

/// The next pasted redirect; never resolves when pasting is not possible.
async fn next_paste(paste: &mut Option<tokio::sync::mpsc::Receiver<Paste>>) -> Paste {
    if let Some(rx) = paste {
        if let Some(p) = rx.recv().await {
            return p;
        }
    }
    *paste = None;
    std::future::pending().await
}

/// The authorization URL: RFC 6749 §4.1.1 parameters, PKCE S256, `state`,
/// `prompt=consent` with `offline_access` (OIDC Core §11) unless the preset
/// opts out or the config sets `prompt` itself, then the preset's and the
/// config's extra parameters (an empty value removes one).
pub fn authorize_url(
    endpoint: &Url,
    provider: &ProviderSpec,
    redirect_uri: &str,
    challenge: &str,
    state: &str,
) -> Url {
    let mut url = endpoint.clone();
    let extra = &provider.login.authorize_params;
    let scope = provider.scopes.join(" ");
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &provider.client_id)
            .append_pair("redirect_uri", redirect_uri);
        if !scope.is_empty() {
            query.append_pair("scope", &scope);
        }
        query
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", Pkce::METHOD)
            .append_pair("state", state);
        let offline = provider.scopes.iter().any(|s| s == "offline_access");
        if offline
            && provider.login.prompt_consent_for_offline_access
            && !extra.iter().any(|(k, _)| k == "prompt")
        {
            query.append_pair("prompt", "consent");
        }
        for (key, value) in extra.iter().filter(|(_, v)| !v.is_empty()) {
            query.append_pair(key, value);
        }
    }
    url
}

/// Opens `url` in the user's browser when there is a graphical session to show
/// it in (`open` on macOS, `xdg-open` with `DISPLAY`/`WAYLAND_DISPLAY`
/// elsewhere). Best effort and silent: the URL is always printed as well.
/// Returns whether an opener was started.
pub fn open_in_browser(url: &str) -> bool {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some()
    {
        "xdg-open"
    } else {
        return false;
    };
    std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse, Config};

    fn provider(toml: &str) -> ProviderSpec {
        ProviderSpec::from_config(&Config {
            file: parse(toml, "t.toml").unwrap(),
            source: Some("t.toml".into()),
        })
        .unwrap()
    }

    fn params(url: &Url) -> Vec<(String, String)> {
        url.query_pairs().into_owned().collect()
    }

    #[test]
    fn a_huge_configured_timeout_is_bounded_to_a_day() {
        let settings = crate::config::LoginSettings {
            browser_timeout_secs: u64::MAX,
            ..Default::default()
        };
        let timeout = bounded_timeout(settings.browser_timeout());
        assert_eq!(timeout, MAX_BROWSER_TIMEOUT);
        assert!(tokio::time::Instant::now().checked_add(timeout).is_some());
        assert_eq!(bounded_timeout(Duration::from_secs(600)).as_secs(), 600);
    }

    #[test]
    fn generic_asks_for_consent_with_offline_access() {
        let p = provider("preset='generic'\nclient_id='c'\nauthorization_endpoint='https://a.example/authorize'\ntoken_endpoint='https://a.example/token'\n");
        let url = authorize_url(
            p.authorization_endpoint.as_ref().unwrap(),
            &p,
            "http://127.0.0.1:5/callback",
            "CH",
            "ST",
        );
        let q = params(&url);
        for pair in [
            ("response_type", "code"),
            ("client_id", "c"),
            ("redirect_uri", "http://127.0.0.1:5/callback"),
            ("scope", "openid offline_access"),
            ("code_challenge", "CH"),
            ("code_challenge_method", "S256"),
            ("state", "ST"),
            ("prompt", "consent"),
        ] {
            assert!(
                q.contains(&(pair.0.to_string(), pair.1.to_string())),
                "{pair:?} missing in {q:?}"
            );
        }
    }

    #[test]
    fn preset_extras_and_overrides() {
        let p = provider("preset='openai-codex'\n");
        let url = authorize_url(
            p.authorization_endpoint.as_ref().unwrap(),
            &p,
            "http://localhost:1455/auth/callback",
            "CH",
            "ST",
        );
        let q = params(&url);
        assert!(q.contains(&("originator".into(), "codex_cli_rs".into())));
        assert!(q.contains(&("codex_cli_simplified_flow".into(), "true".into())));
        assert!(!q.iter().any(|(k, _)| k == "prompt"));

        let p = provider("preset='xai'\nauthorization_endpoint='https://auth.x.ai/oauth2/auth'\n[authorize_params]\nprompt = ''\nextra = 'x'\n");
        let url = authorize_url(
            p.authorization_endpoint.as_ref().unwrap(),
            &p,
            "http://127.0.0.1:56121/callback",
            "CH",
            "ST",
        );
        let q = params(&url);
        assert!(q.contains(&("plan".into(), "generic".into())));
        assert!(q.contains(&("extra".into(), "x".into())));
        assert!(!q.iter().any(|(k, _)| k == "prompt"), "{q:?}");

        let p = provider("preset='anthropic'\n");
        let url = authorize_url(
            p.authorization_endpoint.as_ref().unwrap(),
            &p,
            "https://console.anthropic.com/oauth/code/callback",
            "CH",
            "ST",
        );
        assert!(url
            .as_str()
            .starts_with("https://claude.ai/oauth/authorize?"));
        assert!(params(&url).contains(&("code".into(), "true".into())));
    }
}
