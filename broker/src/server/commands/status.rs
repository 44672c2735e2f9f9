//! `Status`: never waits behind a refresh.
//!
//! Composed here from the manager's status, the projection targets' and the
//! proxies' (none knows the others).

use super::super::app::App;
use oauth_broker_proto::Response;

/// The broker's status.
pub fn handle(app: &App) -> Response {
    let mut report = app.manager.status();
    report.projections = app.projections.status();
    report.proxies = app.proxies.status();
    report.proxy_keys = app.proxies.key_status();
    report.config_file = app
        .files
        .config_file
        .as_ref()
        .map(|p| p.display().to_string());
    report.state_dir = app
        .files
        .state_dir
        .as_ref()
        .map(|p| p.display().to_string());
    Response::Status(Box::new(report))
}
