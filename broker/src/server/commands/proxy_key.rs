//! `ProxyKey { name }`: issues a capability key for the header-injecting
//! proxy. The key travels once, in this answer; the broker keeps its hash.

use super::super::app::App;
use oauth_broker_proto::{ErrorFrame, ProxyKeyIssued, Response};

/// The new key, or why none was issued.
pub async fn handle(app: &App, name: Option<String>) -> Response {
    let proxies = app.proxies.clone();
    // A durable write (fsync): off the runtime's threads.
    let issued = tokio::task::spawn_blocking(move || proxies.keys().issue(name.as_deref())).await;
    match issued {
        Ok(Ok((name, key))) => {
            tracing::info!(name = %name, "issued a proxy key");
            Response::ProxyKey(ProxyKeyIssued { name, key })
        }
        Ok(Err(e)) => Response::Error(ErrorFrame::from(e)),
        Err(e) => Response::Error(crate::server::wire_error::internal(format!(
            "issuing a proxy key failed: {e}"
        ))),
    }
}
