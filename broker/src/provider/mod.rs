//! Provider presets and the resolved provider description the rest of the broker
//! uses. One file per preset; each holds the public facts of one provider (see
//! shared/PROVIDERS.md) and every value can be overridden in the config file.

mod anthropic;
mod endpoint;
mod generic;
mod github;
pub mod github_copilot;
mod login_spec;
pub mod openai_codex;
mod xai;

pub use endpoint::{check_endpoint, is_loopback_host};
pub use login_spec::{DeviceScheme, LoginConfig, LoginSpec, RefreshKind};

use crate::config::{BodyEncoding, ClientAuth, Config};
use oauth_broker_proto::{EndpointInfo, LoginMethod, SecretString};
use url::Url;

/// The static facts of a preset.
#[derive(Debug, Clone)]
pub struct Preset {
    /// Preset name as written in the config.
    pub name: &'static str,
    /// OIDC issuer.
    pub issuer: Option<&'static str>,
    /// Token endpoint.
    pub token_endpoint: Option<&'static str>,
    /// Browser authorization endpoint.
    pub authorization_endpoint: Option<&'static str>,
    /// Device authorization endpoint.
    pub device_authorization_endpoint: Option<&'static str>,
    /// Revocation endpoint.
    pub revocation_endpoint: Option<&'static str>,
    /// Session-token exchange endpoint.
    pub exchange_endpoint: Option<&'static str>,
    /// Public client id (second-hand: used by the provider's own public clients).
    pub client_id: Option<&'static str>,
    /// Scopes requested at login.
    pub scopes: &'static [&'static str],
    /// Refresh body encoding.
    pub refresh_body: BodyEncoding,
    /// Hosts endpoints may live on (`x.ai` also allows `*.x.ai`); empty = any.
    pub allowed_hosts: &'static [&'static str],
    /// Login method used when `brokerctl relogin` names none.
    pub default_login: LoginMethod,
    /// Fixed loopback port for browser login, if the provider pins one.
    pub redirect_port: Option<u16>,
    /// How the provider logs in.
    pub login: LoginSpec,
    /// What "refresh" means for this provider.
    pub refresh_kind: RefreshKind,
    /// A 403 from the token endpoint means "this account has no API access"
    /// (xAI subscription tiers), not a dead login.
    pub no_api_access_on_403: bool,
}

/// All presets, by name.
pub fn preset(name: &str) -> Option<Preset> {
    match name {
        "generic" => Some(generic::PRESET),
        "openai-codex" => Some(openai_codex::PRESET),
        "github" => Some(github::PRESET),
        "github-copilot" => Some(github_copilot::PRESET),
        "xai" => Some(xai::PRESET),
        "anthropic" => Some(anthropic::PRESET),
        _ => None,
    }
}

/// Names of all presets, for error messages.
pub const PRESET_NAMES: &[&str] = &[
    "generic",
    "openai-codex",
    "github",
    "github-copilot",
    "xai",
    "anthropic",
];

/// The provider after merging the preset with the config file.
#[derive(Debug, Clone)]
pub struct ProviderSpec {
    /// Preset name.
    pub preset: String,
    /// OIDC issuer.
    pub issuer: Option<Url>,
    /// Token endpoint (may also come from discovery).
    pub token_endpoint: Option<Url>,
    /// Browser authorization endpoint.
    pub authorization_endpoint: Option<Url>,
    /// Device authorization endpoint.
    pub device_authorization_endpoint: Option<Url>,
    /// Revocation endpoint.
    pub revocation_endpoint: Option<Url>,
    /// Session-token exchange endpoint.
    pub exchange_endpoint: Option<Url>,
    /// OAuth client id.
    pub client_id: String,
    /// Client secret of a confidential client.
    pub client_secret: Option<SecretString>,
    /// How the secret is sent.
    pub client_auth: ClientAuth,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Refresh body encoding.
    pub refresh_body: BodyEncoding,
    /// Hosts endpoints may live on; empty = any https or loopback host.
    pub allowed_hosts: Vec<String>,
    /// Default login method.
    pub default_login: LoginMethod,
    /// Fixed loopback port for browser login.
    pub redirect_port: Option<u16>,
    /// Where the configuration came from (for error messages).
    pub config_source: String,
    /// How logins run.
    pub login: LoginConfig,
    /// What "refresh" means for this provider.
    pub refresh_kind: RefreshKind,
    /// See [`Preset::no_api_access_on_403`].
    pub no_api_access_on_403: bool,
}

impl ProviderSpec {
    /// Resolves the preset named in the config and applies the overrides,
    /// validating every endpoint (https, or http on a loopback host).
    pub fn from_config(config: &Config) -> anyhow::Result<ProviderSpec> {
        let file = &config.file;
        let source = config.source_name();
        let name = file.preset.as_deref().unwrap_or("generic");
        let preset = preset(name).ok_or_else(|| {
            anyhow::anyhow!(
                "unknown preset {name:?} in {source}; use one of: {}",
                PRESET_NAMES.join(", ")
            )
        })?;

        let mut allowed_hosts: Vec<String> =
            preset.allowed_hosts.iter().map(|h| h.to_string()).collect();
        if let Some(extra) = &file.allowed_hosts {
            allowed_hosts.extend(extra.iter().cloned());
        }
        // Endpoints the user wrote explicitly are trusted by definition; their hosts
        // join the allow-list so that discovery from that issuer keeps working.
        // Even the generic preset gets a list this way: endpoints learned from a
        // discovery document must stay on the hosts the user named (or listed in
        // `allowed_hosts`), so a tampered document cannot receive the refresh
        // token.
        let explicit = [
            &file.issuer,
            &file.token_endpoint,
            &file.authorization_endpoint,
            &file.device_authorization_endpoint,
            &file.revocation_endpoint,
            &file.exchange_endpoint,
        ];
        for value in explicit.iter().filter_map(|v| v.as_deref()) {
            if let Ok(url) = Url::parse(value) {
                if let Some(host) = url.host_str() {
                    allowed_hosts.push(host.trim_matches(['[', ']']).to_string());
                }
            }
        }

        let endpoint = |key: &str, over: &Option<String>, default: Option<&'static str>| {
            let value = over.as_deref().or(default);
            value
                .map(|v| parse_endpoint(key, v, &allowed_hosts, &source))
                .transpose()
        };
        let issuer = endpoint("issuer", &file.issuer, preset.issuer)?;
        let token_endpoint = endpoint(
            "token_endpoint",
            &file.token_endpoint,
            preset.token_endpoint,
        )?;
        let authorization_endpoint = endpoint(
            "authorization_endpoint",
            &file.authorization_endpoint,
            preset.authorization_endpoint,
        )?;
        let device_authorization_endpoint = endpoint(
            "device_authorization_endpoint",
            &file.device_authorization_endpoint,
            preset.device_authorization_endpoint,
        )?;
        let revocation_endpoint = endpoint(
            "revocation_endpoint",
            &file.revocation_endpoint,
            preset.revocation_endpoint,
        )?;
        let exchange_endpoint = endpoint(
            "exchange_endpoint",
            &file.exchange_endpoint,
            preset.exchange_endpoint,
        )?;
        if token_endpoint.is_none() && issuer.is_none() {
            anyhow::bail!(
                "{source} sets neither token_endpoint nor issuer; add `token_endpoint = \"https://…/oauth/token\"` or `issuer = \"https://…\"` for discovery"
            );
        }
        let client_id = file
            .client_id
            .clone()
            .or(preset.client_id.map(str::to_string))
            .ok_or_else(|| match preset.name {
                "github" => anyhow::anyhow!(
                    "{source} has no client_id, and the github preset has none of its own; add `client_id = \"…\"` naming your GitHub App (device flow enabled, expiring user tokens on)"
                ),
                _ => anyhow::anyhow!("{source} has no client_id; add `client_id = \"…\"`"),
            })?;
        let client_secret = match &file.client_secret_file {
            Some(path) => Some(read_secret_file(path, &source)?),
            None => None,
        };
        let login = login_config(file, &preset, &source)?;
        Ok(ProviderSpec {
            preset: preset.name.to_string(),
            issuer,
            token_endpoint,
            authorization_endpoint,
            device_authorization_endpoint,
            revocation_endpoint,
            exchange_endpoint,
            client_id,
            client_secret,
            client_auth: file.client_auth.unwrap_or_default(),
            scopes: file
                .scopes
                .clone()
                .unwrap_or_else(|| preset.scopes.iter().map(|s| s.to_string()).collect()),
            refresh_body: file.refresh_body.unwrap_or(preset.refresh_body),
            allowed_hosts,
            default_login: file.login_method.unwrap_or(preset.default_login),
            redirect_port: file.redirect_port.or(preset.redirect_port),
            config_source: source,
            login,
            refresh_kind: preset.refresh_kind,
            no_api_access_on_403: preset.no_api_access_on_403,
        })
    }

    /// Public endpoint list for `status`.
    pub fn endpoint_info(&self) -> EndpointInfo {
        let s = |u: &Option<Url>| u.as_ref().map(|u| u.to_string());
        EndpointInfo {
            issuer: s(&self.issuer),
            token_endpoint: s(&self.token_endpoint),
            authorization_endpoint: s(&self.authorization_endpoint),
            device_authorization_endpoint: s(&self.device_authorization_endpoint),
            revocation_endpoint: s(&self.revocation_endpoint),
            exchange_endpoint: s(&self.exchange_endpoint),
        }
    }
}

/// Merges the preset's login facts with the config file's overrides. The
/// redirect URI must be loopback `http`/`https` (a listener waits there) or
/// `https` elsewhere (the provider shows the code and the user pastes it).
fn login_config(
    file: &crate::config::ConfigFile,
    preset: &Preset,
    source: &str,
) -> anyhow::Result<LoginConfig> {
    let redirect_uri = file
        .redirect_uri
        .clone()
        .unwrap_or_else(|| preset.login.redirect_uri.to_string());
    let probe = Url::parse(&redirect_uri.replace("{port}", "1")).map_err(|e| {
        anyhow::anyhow!(
            "redirect_uri = {redirect_uri:?} in {source} is not a URL ({e}); write e.g. \"http://127.0.0.1:{{port}}/callback\""
        )
    })?;
    check_endpoint(&probe, &[])
        .map_err(|why| anyhow::anyhow!("redirect_uri = {redirect_uri:?} in {source}: {why}"))?;
    let mut authorize_params: Vec<(String, String)> = preset
        .login
        .authorize_params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Some(extra) = &file.authorize_params {
        for (key, value) in extra {
            authorize_params.retain(|(k, _)| k != key);
            authorize_params.push((key.clone(), value.clone()));
        }
    }
    // The pinned port's fallbacks only make sense while the pinned port is used.
    let fallback_ports = if file.redirect_port.is_some() {
        Vec::new()
    } else {
        preset.login.fallback_ports.to_vec()
    };
    Ok(LoginConfig {
        device_scheme: preset.login.device_scheme,
        redirect_uri,
        redirect_port: file.redirect_port.or(preset.redirect_port).unwrap_or(0),
        fallback_ports,
        authorize_params,
        prompt_consent_for_offline_access: preset.login.prompt_consent_for_offline_access,
        code_body: preset.login.code_body,
        echo_challenge: preset.login.echo_challenge,
        state_in_exchange: preset.login.state_in_exchange,
    })
}

fn parse_endpoint(key: &str, value: &str, allowed: &[String], source: &str) -> anyhow::Result<Url> {
    let url = Url::parse(value).map_err(|e| {
        anyhow::anyhow!(
            "{key} = {value:?} in {source} is not a URL ({e}); write a full https:// URL"
        )
    })?;
    check_endpoint(&url, allowed)
        .map_err(|why| anyhow::anyhow!("{key} = {value:?} in {source}: {why}"))?;
    Ok(url)
}

/// A client secret is a short string; anything larger is the wrong file.
const MAX_SECRET_BYTES: u64 = 64 << 10;

/// Reads `client_secret_file`: private (0600), at most [`MAX_SECRET_BYTES`], and
/// not writable by another user through a directory above it (whoever could
/// swap the secret could make the broker authenticate with theirs).
fn read_secret_file(path: &std::path::Path, source: &str) -> anyhow::Result<SecretString> {
    use crate::capped_read::{describe_cap, read_capped};
    use std::os::unix::fs::PermissionsExt;
    let cannot_read = |e: std::io::Error| {
        anyhow::anyhow!(
            "client_secret_file {} (from {source}) cannot be read: {e}",
            path.display()
        )
    };
    let file = crate::capped_read::open_nonblocking(path).map_err(cannot_read)?;
    let meta = file.metadata().map_err(cannot_read)?;
    if meta.permissions().mode() & 0o077 != 0 {
        anyhow::bail!(
            "client_secret_file {} is readable by group or others; run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    use crate::trusted_path::{check_file_meta, check_parents, home_from_env};
    check_file_meta(&meta, path)
        .and_then(|()| check_parents(path, home_from_env().as_deref()))
        .map_err(|why| {
            anyhow::anyhow!(
                "{}",
                why.refusal(
                    "client_secret_file",
                    path,
                    "another user could replace the client secret"
                )
            )
        })?;
    let bytes = read_capped(&file, MAX_SECRET_BYTES)
        .map_err(cannot_read)?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "client_secret_file {} is larger than {} (the limit for a secret); check that it is the right file",
                path.display(),
                describe_cap(MAX_SECRET_BYTES)
            )
        })?;
    let text = String::from_utf8(bytes).map_err(|_| {
        anyhow::anyhow!(
            "client_secret_file {} (from {source}) is not UTF-8 text",
            path.display()
        )
    })?;
    Ok(SecretString::from(text.trim().to_string()))
}

/// The provider account id carried in the tokens, if any (not secret; shown in
/// `status`). Today only OpenAI puts one there.
pub fn derive_account_id(creds: &crate::credentials::Credentials) -> Option<String> {
    openai_codex::account_id(creds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn spec(text: &str) -> anyhow::Result<ProviderSpec> {
        ProviderSpec::from_config(&Config {
            file: parse(text, "t.toml")?,
            source: Some("t.toml".into()),
        })
    }

    #[test]
    fn generic_discovery_is_pinned_to_the_configured_hosts() {
        let s =
            spec("preset='generic'\nclient_id='c'\nissuer='https://login.example.com'\n").unwrap();
        let ok = |u: &str| check_endpoint(&Url::parse(u).unwrap(), &s.allowed_hosts);
        assert!(ok("https://login.example.com/token").is_ok());
        assert!(ok("https://evil.example.net/token").is_err());
        let s = spec("preset='generic'\nclient_id='c'\nissuer='https://login.example.com'\nallowed_hosts=['tokens.example.org']\n").unwrap();
        assert!(check_endpoint(
            &Url::parse("https://tokens.example.org/t").unwrap(),
            &s.allowed_hosts
        )
        .is_ok());
    }

    #[test]
    fn non_loopback_http_is_refused() {
        let err = spec(
            "preset='generic'\nclient_id='c'\ntoken_endpoint='http://login.example.com/token'\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("https"), "{err}");
        assert!(err.to_string().contains("token_endpoint"), "{err}");
    }

    #[test]
    fn loopback_http_is_allowed() {
        for host in ["127.0.0.1:9", "127.1.2.3", "[::1]:8080", "localhost:1"] {
            spec(&format!(
                "preset='generic'\nclient_id='c'\ntoken_endpoint='http://{host}/t'\n"
            ))
            .unwrap();
        }
    }

    #[test]
    fn openai_default_resolves() {
        let s = spec("preset='openai-codex'\n").unwrap();
        assert_eq!(s.refresh_body, BodyEncoding::Json);
        assert!(s
            .token_endpoint
            .unwrap()
            .as_str()
            .starts_with("https://auth.openai.com/"));
    }

    #[test]
    fn every_preset_resolves_from_its_name_alone() {
        for name in PRESET_NAMES
            .iter()
            .filter(|n| **n != "generic" && **n != "github")
        {
            let s = spec(&format!("preset='{name}'\n")).unwrap();
            assert_eq!(s.preset, *name);
            assert!(!s.client_id.is_empty());
            assert!(s.token_endpoint.is_some() || s.issuer.is_some(), "{name}");
        }
        // github: the user's own GitHub App, so no client id of its own.
        let err = spec("preset='github'\n").unwrap_err().to_string();
        assert!(
            err.contains("client_id") && err.contains("GitHub App"),
            "{err}"
        );
        let github = spec("preset='github'\nclient_id='Iv23abc'\n").unwrap();
        assert_eq!(github.refresh_kind, RefreshKind::OAuth);
        assert_eq!(github.default_login, LoginMethod::Device);
        assert!(github.exchange_endpoint.is_none());
        let copilot = spec("preset='github-copilot'\n").unwrap();
        assert_eq!(copilot.refresh_kind, RefreshKind::CopilotExchange);
        assert!(copilot.exchange_endpoint.is_some());
        assert_eq!(copilot.default_login, LoginMethod::Device);
        let xai = spec("preset='xai'\n").unwrap();
        assert!(xai.no_api_access_on_403 && xai.login.echo_challenge);
        assert_eq!(xai.login.redirect_port, 56121);
        let anthropic = spec("preset='anthropic'\n").unwrap();
        assert_eq!(anthropic.refresh_body, BodyEncoding::Json);
        assert_eq!(anthropic.login.device_scheme, DeviceScheme::Unsupported);
        let openai = spec("preset='openai-codex'\n").unwrap();
        assert_eq!(
            (
                openai.login.redirect_port,
                openai.login.fallback_ports.clone()
            ),
            (1455, vec![1457])
        );
    }

    #[test]
    fn preset_values_can_be_overridden() {
        let s = spec(
            "preset='openai-codex'\nclient_id='mine'\nscopes=['openid']\nrefresh_body='form'\n\
             redirect_port=0\nlogin_method='device'\nredirect_uri='http://127.0.0.1:{port}/cb'\n",
        )
        .unwrap();
        assert_eq!(s.client_id, "mine");
        assert_eq!(s.scopes, vec!["openid".to_string()]);
        assert_eq!(s.refresh_body, BodyEncoding::Form);
        assert_eq!(s.default_login, LoginMethod::Device);
        assert_eq!(s.login.redirect_port, 0);
        assert!(s.login.fallback_ports.is_empty());
        assert_eq!(s.login.redirect_uri, "http://127.0.0.1:{port}/cb");
        let err = spec("preset='generic'\nclient_id='c'\ntoken_endpoint='https://a.example/t'\nredirect_uri='http://evil.example/cb'\n")
            .unwrap_err();
        assert!(err.to_string().contains("redirect_uri"), "{err}");
    }

    #[test]
    fn xai_endpoints_must_stay_on_x_ai() {
        let explicit =
            spec("preset='xai'\ndevice_authorization_endpoint='https://evil.example/d'\n");
        // An explicitly configured endpoint is trusted (the user wrote it)...
        assert!(explicit.is_ok());
        // ...but a discovered one is checked against the pinned hosts.
        let s = spec("preset='xai'\n").unwrap();
        assert!(check_endpoint(
            &Url::parse("https://evil.example/token").unwrap(),
            &s.allowed_hosts
        )
        .is_err());
        assert!(check_endpoint(
            &Url::parse("https://auth.x.ai/oauth2/token").unwrap(),
            &s.allowed_hosts
        )
        .is_ok());
    }

    #[test]
    fn generic_needs_an_endpoint_and_a_client_id() {
        assert!(spec("preset='generic'\nclient_id='c'\n").is_err());
        assert!(spec("preset='generic'\ntoken_endpoint='https://a.example/t'\n").is_err());
        assert!(spec("preset='nope'\n")
            .unwrap_err()
            .to_string()
            .contains("openai-codex"));
    }
}
