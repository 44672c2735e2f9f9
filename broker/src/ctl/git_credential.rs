//! `brokerctl git-credential get|store|erase`: a git credential helper.
//!
//! git runs the helper with the operation as its last argument and writes
//! `key=value` lines (ended by a blank line or EOF) to its stdin, see
//! gitcredentials(7) and git-credential(1):
//!
//! * `get`: answer `username`, `password` (the access token) and
//!   `password_expiry_utc` (git ≥ 2.41 then never reuses the token after it
//!   expires, e.g. from `credential-cache`);
//! * `store`: git tells us a credential worked. Nothing to do: the broker owns
//!   the token and brokerctl never caches;
//! * `erase`: git tells us the server *rejected* the credential. That is what
//!   `Unauthorized` means to the broker, so if the rejected password is the
//!   broker's current token, brokerctl reports it and the broker refreshes once.
//!   It never deletes the login: a 401 from one git server is no reason to
//!   throw away the refresh token.
//!
//! Unknown operations are ignored, as the protocol asks of helpers. The token is
//! only given out over `https` (never to an `http` remote, where it would travel
//! in clear text), and with `--host` only to the hosts named.

use super::{exit, output, Global};
use clap::Args;
use oauth_broker_client::proto::{token_fingerprint, TokenGrant};
use oauth_broker_client::{AccessToken, ExposeSecret, SecretString};
use std::collections::BTreeMap;
use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

/// Username sent with the token when git has none: what GitLab requires for
/// OAuth tokens; GitHub and most others ignore the username for tokens.
pub const DEFAULT_USERNAME: &str = "oauth2";

/// Largest request accepted from git (a request is a few hundred bytes).
const MAX_INPUT: u64 = 64 * 1024;

/// Act as a git credential helper (git passes get, store or erase).
#[derive(Debug, Args)]
#[command(after_help = "\
Configure it for the host whose tokens the broker holds (the token is sent to
every host the helper answers for):
  git config --global credential.https://gitlab.example.com.helper '!brokerctl git-credential'
For another account: '!brokerctl --account work git-credential'.
`get` prints username, password and password_expiry_utc; `store` does nothing;
`erase` (git's \"this password was rejected\") makes the broker refresh once if the
rejected password is its current token, and never deletes the login.")]
pub struct GitCredentialArgs {
    /// Username to answer with when git does not already have one.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_USERNAME)]
    pub username: String,
    /// Only answer for this host (repeat for several; `host:port` as git sends
    /// it). Without it the helper answers for every https host git asks about.
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// The token must stay valid at least this many more seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub min_valid: u64,
    /// The operation git passes: get, store or erase.
    #[arg(value_name = "OPERATION")]
    pub operation: String,
}

/// What git sent: attribute name → values (`key[]` attributes repeat).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CredentialRequest {
    attributes: BTreeMap<String, Vec<String>>,
}

impl CredentialRequest {
    /// Parses git's `key=value` lines up to a blank line or the end. Lines
    /// without `=` are skipped (the protocol has none).
    pub fn parse(text: &str) -> CredentialRequest {
        let mut attributes: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in text.lines() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.is_empty() {
                break;
            }
            if let Some((key, value)) = line.split_once('=') {
                attributes
                    .entry(key.to_string())
                    .or_default()
                    .push(value.to_string());
            }
        }
        CredentialRequest { attributes }
    }

    /// The last value of a single-valued attribute.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.attributes.get(key)?.last().map(String::as_str)
    }
}

/// Whether the helper answers this request (https, and an allowed host).
pub fn answers_for(request: &CredentialRequest, hosts: &[String]) -> Result<(), String> {
    match request.get("protocol") {
        Some(p) if p.eq_ignore_ascii_case("https") => {}
        Some(other) => {
            return Err(format!(
                "not answering for protocol {other:?}: the token is only sent over https"
            ))
        }
        None => return Err("git sent no protocol; not answering".into()),
    }
    let host = request.get("host").unwrap_or_default();
    if !hosts.is_empty() && !hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
        return Err(format!("not answering for host {host:?} (not in --host)"));
    }
    Ok(())
}

/// The answer to `get`.
pub fn get_answer(
    request: &CredentialRequest,
    default_username: &str,
    token: &AccessToken,
) -> String {
    let username = request
        .get("username")
        .filter(|u| !u.is_empty())
        .unwrap_or(default_username);
    format!(
        "username={username}\npassword={}\npassword_expiry_utc={}\n",
        token.expose_secret(),
        output::unix_secs(token.expires_at())
    )
}

/// Runs the subcommand.
pub fn run(global: &Global, args: &GitCredentialArgs) -> ExitCode {
    if args.username.contains(['\n', '\0', '\r']) || args.username.is_empty() {
        return exit::fail_with(exit::USAGE, "--username must be one non-empty line");
    }
    let mut input = String::new();
    if let Err(err) = std::io::stdin()
        .lock()
        .take(MAX_INPUT)
        .read_to_string(&mut input)
    {
        return exit::fail_with(
            exit::OTHER,
            format_args!("cannot read git's request from standard input: {err}"),
        );
    }
    let request = CredentialRequest::parse(&input);
    match args.operation.as_str() {
        "get" => get(global, args, &request),
        "erase" => erase(global, args, &request),
        // `store`, and operations a future git may add: nothing to do.
        _ => ExitCode::SUCCESS,
    }
}

fn get(global: &Global, args: &GitCredentialArgs, request: &CredentialRequest) -> ExitCode {
    if let Err(why) = answers_for(request, &args.hosts) {
        // Printing nothing lets git try its other helpers or prompt.
        if request.get("protocol") != Some("https") {
            exit::report(why);
        }
        return ExitCode::SUCCESS;
    }
    let token = match global
        .connect()
        .and_then(|mut client| client.token(Duration::from_secs(args.min_valid)))
    {
        Ok(token) => token,
        Err(err) => return exit::fail(&err),
    };
    exit::print(&get_answer(request, &args.username, &token))
}

fn erase(global: &Global, args: &GitCredentialArgs, request: &CredentialRequest) -> ExitCode {
    if answers_for(request, &args.hosts).is_err() {
        return ExitCode::SUCCESS;
    }
    let Some(password) = request.get("password").filter(|p| !p.is_empty()) else {
        return ExitCode::SUCCESS;
    };
    let rejected = SecretString::from(password.to_string());
    let token_id = token_fingerprint(&rejected);
    let mut client = match global.connect() {
        Ok(client) => client,
        Err(err) => return exit::fail(&err),
    };
    // Only the broker's current token concerns it; a password from another
    // helper or an older token needs no refresh.
    match client.status() {
        Ok(status) if status.token_id.as_deref() == Some(token_id.as_str()) => {}
        Ok(_) => return ExitCode::SUCCESS,
        Err(err) => return exit::fail(&err),
    }
    let rejected = AccessToken::from(TokenGrant {
        access_token: rejected,
        token_type: "Bearer".into(),
        expires_at: 0,
        token_id,
        scopes: Vec::new(),
        metadata: BTreeMap::new(),
        id_token: None,
        obtained_at: None,
        refresh_token_id: None,
    });
    match client.unauthorized(&rejected) {
        // The replacement is not printed: git reads nothing after erase.
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => exit::fail(&err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What git 2.39 writes for `git fetch https://alice@git.example.com/x.git`.
    const GIT_GET: &str = "protocol=https\nhost=git.example.com\nusername=alice\n\n";

    fn token() -> AccessToken {
        AccessToken::from(TokenGrant {
            access_token: SecretString::from("at-1"),
            token_type: "Bearer".into(),
            expires_at: 1_700_000_000,
            token_id: "x".into(),
            scopes: vec![],
            metadata: BTreeMap::new(),
            id_token: None,
            obtained_at: None,
            refresh_token_id: None,
        })
    }

    #[test]
    fn parses_git_requests_including_new_attributes() {
        let r = CredentialRequest::parse(
            "capability[]=authtype\ncapability[]=state\nprotocol=https\nhost=h:8443\npath=a/b.git\nwwwauth[]=Bearer realm=\"x=y\"\n\nignored=after-blank\n",
        );
        assert_eq!(r.get("protocol"), Some("https"));
        assert_eq!(r.get("host"), Some("h:8443"));
        assert_eq!(r.get("wwwauth[]"), Some("Bearer realm=\"x=y\""));
        assert_eq!(r.attributes["capability[]"].len(), 2);
        assert_eq!(r.get("ignored"), None);
        assert_eq!(CredentialRequest::parse(""), CredentialRequest::default());
    }

    #[test]
    fn get_answers_with_gits_username_or_the_default() {
        let with_user = CredentialRequest::parse(GIT_GET);
        assert_eq!(
            get_answer(&with_user, DEFAULT_USERNAME, &token()),
            "username=alice\npassword=at-1\npassword_expiry_utc=1700000000\n"
        );
        let without = CredentialRequest::parse("protocol=https\nhost=git.example.com\n");
        assert!(get_answer(&without, "x-access-token", &token())
            .starts_with("username=x-access-token\n"));
    }

    #[test]
    fn only_https_and_only_the_named_hosts() {
        let req = |text: &str| CredentialRequest::parse(text);
        assert!(answers_for(&req(GIT_GET), &[]).is_ok());
        assert!(answers_for(&req("protocol=http\nhost=h\n"), &[])
            .unwrap_err()
            .contains("only sent over https"));
        assert!(answers_for(&req("host=h\n"), &[]).is_err());
        let hosts = vec!["Git.Example.com".to_string()];
        assert!(answers_for(&req(GIT_GET), &hosts).is_ok());
        assert!(answers_for(&req("protocol=https\nhost=evil.example\n"), &hosts).is_err());
    }
}
