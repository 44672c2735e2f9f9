//! `Status`: never waits behind a refresh.
//!
//! Composed here from the manager's status and the projection targets'
//! (neither knows the other).

use super::super::app::App;
use oauth_broker_proto::Response;

/// The broker's status.
pub fn handle(app: &App) -> Response {
    let mut report = app.manager.status();
    report.projections = app.projections.status();
    Response::Status(Box::new(report))
}
