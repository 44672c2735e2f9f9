//! `ProjectRestore`: stop writing a projection target and give its file back
//! to the tool. Done by the daemon, not by brokerctl: only the daemon can
//! stop its own writes to the file, and only it can check that the backup does
//! not hold the refresh token it now spends. The check compares fingerprints:
//! the manager's snapshot carries the refresh token's, never the token.

use super::super::app::App;
use super::super::wire_error;
use oauth_broker_proto::{ErrorFrame, Response};

/// Restores `target` (a kind such as `codex`, or a path).
pub async fn restore(app: &App, target: String) -> Response {
    let projections = app.projections.clone();
    let refresh_token_id = app.manager.snapshot().refresh_token_id.clone();
    let restored = tokio::task::spawn_blocking(move || {
        projections.restore(&target, refresh_token_id.as_deref())
    })
    .await;
    match restored {
        Ok(Ok(restored)) => Response::ProjectRestored(restored),
        Ok(Err(e)) => Response::Error(ErrorFrame::from(e)),
        Err(e) => Response::Error(wire_error::internal(format!("the restore failed: {e}"))),
    }
}
