//! `brokerctl exec-credential`: a Kubernetes client-go credential plugin.
//!
//! kubectl (and everything built on client-go) runs the `exec` command named in
//! the kubeconfig and reads an `ExecCredential` object from its stdout. It caches
//! the token until `expirationTimestamp` and runs the plugin again after that or
//! when the API server answers 401, so this subcommand only ever asks the broker,
//! never caches anything itself.
//!
//! client-go passes `KUBERNETES_EXEC_INFO` (an `ExecCredential` with the
//! `apiVersion` from the kubeconfig and `spec.interactive`). The answer must use
//! the same `apiVersion`, so `v1beta1` is echoed when asked for; anything else
//! gets `v1`. The plugin never prompts, so `interactive` does not matter.

use super::{exit, output, Global};
use clap::Args;
use oauth_broker_client::{AccessToken, ExposeSecret};
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::Duration;

/// The current API version of client-go credential plugins.
pub const API_VERSION_V1: &str = "client.authentication.k8s.io/v1";
/// The previous one, still accepted by client-go.
pub const API_VERSION_V1BETA1: &str = "client.authentication.k8s.io/v1beta1";

/// Print a Kubernetes ExecCredential (for kubeconfig `users[].user.exec`).
#[derive(Debug, Args)]
#[command(after_help = "\
kubeconfig:
  users:
  - name: oidc
    user:
      exec:
        apiVersion: client.authentication.k8s.io/v1
        command: brokerctl
        args: [\"--account\", \"k8s\", \"exec-credential\"]
        interactiveMode: Never
        provideClusterInfo: false")]
pub struct ExecCredentialArgs {
    /// The token must stay valid at least this many more seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub min_valid: u64,
}

/// Runs the subcommand.
pub fn run(global: &Global, args: &ExecCredentialArgs) -> ExitCode {
    let api_version = api_version(std::env::var("KUBERNETES_EXEC_INFO").ok().as_deref());
    let token = match global
        .connect()
        .and_then(|mut client| client.token(Duration::from_secs(args.min_valid)))
    {
        Ok(token) => token,
        Err(err) => return exit::fail(&err),
    };
    exit::print(&format!("{}\n", exec_credential(&token, api_version)))
}

/// The `apiVersion` to answer with, from `KUBERNETES_EXEC_INFO` if present.
pub fn api_version(exec_info: Option<&str>) -> &'static str {
    let asked = exec_info
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
        .and_then(|info| info.get("apiVersion")?.as_str().map(str::to_owned));
    match asked.as_deref() {
        Some(API_VERSION_V1BETA1) => API_VERSION_V1BETA1,
        _ => API_VERSION_V1,
    }
}

/// The ExecCredential object.
pub fn exec_credential(token: &AccessToken, api_version: &str) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": "ExecCredential",
        "spec": {},
        "status": {
            "token": token.expose_secret(),
            "expirationTimestamp": output::rfc3339(output::unix_secs(token.expires_at())),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oauth_broker_client::proto::TokenGrant;
    use oauth_broker_client::SecretString;

    #[test]
    fn answers_in_the_api_version_asked_for() {
        let info = |v: &str| {
            format!(
                r#"{{"kind":"ExecCredential","apiVersion":"{v}","spec":{{"interactive":false}}}}"#
            )
        };
        assert_eq!(api_version(None), API_VERSION_V1);
        assert_eq!(api_version(Some(&info(API_VERSION_V1))), API_VERSION_V1);
        assert_eq!(
            api_version(Some(&info(API_VERSION_V1BETA1))),
            API_VERSION_V1BETA1
        );
        assert_eq!(api_version(Some("not json")), API_VERSION_V1);
    }

    #[test]
    fn object_has_token_and_rfc3339_expiry() {
        let token = AccessToken::from(TokenGrant {
            access_token: SecretString::from("at-1"),
            token_type: "Bearer".into(),
            expires_at: 1_700_000_000,
            token_id: "0123456789ab".into(),
            scopes: vec![],
            metadata: Default::default(),
            id_token: None,
            obtained_at: None,
            refresh_token_id: None,
        });
        assert_eq!(
            exec_credential(&token, API_VERSION_V1),
            json!({
                "apiVersion": "client.authentication.k8s.io/v1",
                "kind": "ExecCredential",
                "spec": {},
                "status": {"token": "at-1", "expirationTimestamp": "2023-11-14T22:13:20Z"}
            })
        );
        assert_eq!(output::rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
