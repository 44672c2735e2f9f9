//! `ProxyRevoke { name }`: the proxy refuses the key from now on.

use super::super::app::App;
use oauth_broker_proto::{ErrorFrame, Response};

/// Revokes the key named `name`.
pub async fn handle(app: &App, name: String) -> Response {
    let proxies = app.proxies.clone();
    let revoked =
        tokio::task::spawn_blocking(move || proxies.keys().revoke(&name).map(|()| name)).await;
    match revoked {
        Ok(Ok(name)) => {
            tracing::info!(name = %name, "revoked a proxy key");
            Response::ProxyRevoked { name }
        }
        Ok(Err(e)) => Response::Error(ErrorFrame::from(e)),
        Err(e) => Response::Error(crate::server::wire_error::internal(format!(
            "revoking a proxy key failed: {e}"
        ))),
    }
}
