//! `ProjectRestore`: stop writing a projection target and give its file back
//! to the tool. Done by the daemon, not by brokerctl: only the daemon can
//! stop its own writes to the file, and only it can check that the backup does
//! not hold the refresh token it now spends (brokerctl never sees that token).

use crate::manager::TokenManager;
use oauth_broker_proto::{ErrorCode, ErrorFrame, Response};

/// Restores `target` (a kind such as `codex`, or a path).
pub async fn restore(manager: &TokenManager, target: String) -> Response {
    let Some(projections) = manager.projections() else {
        return Response::Error(
            ErrorFrame::new(
                ErrorCode::BadRequest,
                "this broker has no projection targets",
            )
            .with_hint("projection targets are [[project]] entries in the broker's config"),
        );
    };
    let refresh_token = manager.current_credentials().map(|c| c.refresh_token);
    let restored =
        tokio::task::spawn_blocking(move || projections.restore(&target, refresh_token.as_ref()))
            .await;
    match restored {
        Ok(Ok(restored)) => Response::ProjectRestored(restored),
        Ok(Err(frame)) => Response::Error(frame),
        Err(e) => Response::Error(ErrorFrame::new(
            ErrorCode::Internal,
            format!("the restore failed: {e}"),
        )),
    }
}
